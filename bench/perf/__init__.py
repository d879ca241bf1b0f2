"""`python -m bench.perf` (bench/perf/command.py): speed and cost ratios measured side by side."""
