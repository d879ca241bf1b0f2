"""`python -m bench.report` (bench/report/command.py) and what a report is made of: the numbers
(`data`), the sections, the writer, tables, plots, statistics, claims and controls."""
