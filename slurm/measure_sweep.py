"""Allocation time against compute time of a Slurm sweep (docs/performance.md, issue 21).

    python slurm/measure_sweep.py RESULTS -- [bench.run arguments]

Runs `python -m bench.run --executor slurm --wait --results RESULTS <arguments>` (a fresh
RESULTS folder), then prints: the makespan; the sum of `sacct` elapsed seconds over every job
of the sweep (phase jobs and cells); the seconds spent computing (each cell's own phases plus
each shared phase once, from the records); their ratio; and the seconds the cells' jobs sat
blocked on phase locks (records' cost.seconds_lock_wait, absent from records written before it
existed).
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def sacct_elapsed(job_ids: list[str]) -> dict[str, int]:
    bases = sorted({j.split("_")[0] for j in job_ids})
    out = subprocess.run(["sacct", "-n", "-X", "-P", "-o", "JobID,ElapsedRaw", "-j", ",".join(bases)],
                         capture_output=True, text=True, check=True).stdout
    return {line.split("|")[0]: int(line.split("|")[1]) for line in out.splitlines() if "|" in line}


def main(argv: list[str]) -> int:
    if len(argv) < 1 or (len(argv) > 1 and argv[1] != "--"):
        print(__doc__, file=sys.stderr)
        return 2
    results = Path(argv[0])
    t0 = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "bench.run", "--executor", "slurm", "--wait",
                          "--no-progress", "--results", str(results), *argv[2:]])
    makespan = time.monotonic() - t0
    subs = json.loads((results / "submissions.json").read_text())["cells"]
    jobs = [e["job_id"] for e in subs.values()]
    jobs += [json.loads(p.read_text()).get("slurm_job_id") for p in (results / "phases").glob("*.json")] \
        if (results / "phases").is_dir() else []
    jobs = [str(j) for j in jobs if j]
    elapsed = sacct_elapsed(jobs)
    allocated = sum(elapsed.get(j, 0) for j in jobs)
    own, shared, waits = 0.0, {}, []
    for path in (results / "records").glob("*.json"):
        record = json.loads(path.read_text())
        for phase in record.get("phases", {}).values():
            if phase.get("shared"):
                shared.setdefault(phase.get("cache_key"), float(phase.get("seconds", 0.0)))
            else:
                own += float(phase.get("seconds", 0.0))
        if "seconds_lock_wait" in record.get("cost", {}):
            waits.append(record["cost"]["seconds_lock_wait"])
    compute = own + sum(shared.values())
    print(f"bench.run exit code {run.returncode}; {len(jobs)} jobs ({len(subs)} cells)")
    print(f"makespan: {makespan:.0f} s")
    print(f"sacct elapsed, all jobs: {allocated} s; computing: {compute:.0f} s (cells' own "
          f"{own:.0f} s + shared phases once {sum(shared.values()):.0f} s); ratio "
          f"{allocated / max(compute, 1e-9):.2f}x")
    if waits:
        print(f"lock wait in the cells' jobs: {sum(waits):.1f} s over {len(waits)} records "
              f"(max {max(waits):.1f} s)")
    else:
        print("lock wait: not recorded (records from before cost.seconds_lock_wait)")
    return run.returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
