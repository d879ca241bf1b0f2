"""Cluster profiles: the YAML files in slurm/ (`local.yaml`, the commented `example-gpu.yaml`),
validated key by key, and the sbatch parameters a profile makes."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from bench.registry import UsageError
from bench.store.files import read_yaml

PROFILE_DIR = Path(__file__).resolve().parents[2] / "slurm"


@dataclass(frozen=True)
class ClusterProfile:
    """A YAML file in slurm/: what each cell's job asks Slurm for."""

    name: str
    partition: str | None = None  # None: the cluster's default partition
    cpus_per_task: int = 1
    gpus_per_task: int = 0
    mem_gb: float | None = None  # None: the partition's default
    time_min: int = 60
    array_parallelism: int = 256  # running tasks per array at most
    max_array_size: int | None = None  # used only when `scontrol show config` cannot tell
    signal_delay_s: int = 90  # USR2 this long before the time limit: checkpoint and requeue
    max_requeues: int = 3  # requeues after a time limit (preemptions do not count)
    job_name: str = "prunebench"
    sbatch: Mapping[str, Any] = field(default_factory=dict)  # extra #SBATCH options
    setup: tuple[str, ...] = ()  # shell lines run before the job (module load, conda activate)
    python: str | None = None  # the job's python command; None: this interpreter
    tensorboard: str | None = None  # event files per cell and phase there (as bench.run's flag)
    source: str = ""  # the file it came from


PROFILE_KEYS = tuple(f.name for f in dataclasses.fields(ClusterProfile)
                     if f.name not in ("name", "source"))
# sbatch options the profile sets through its own keys (or that the harness owns).
_OWNED_SBATCH = {"partition": "partition", "p": "partition", "time": "time_min",
                 "t": "time_min", "cpus-per-task": "cpus_per_task", "c": "cpus_per_task",
                 "gpus-per-task": "gpus_per_task", "mem": "mem_gb", "job-name": "job_name",
                 "J": "job_name", "signal": "signal_delay_s", "array": None, "a": None,
                 "output": None, "o": None, "error": None, "e": None}


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(spec: str) -> ClusterProfile:
    """`spec` is a profile name (slurm/<name>.yaml) or a path to a YAML file."""
    path = Path(spec)
    if not (spec.endswith((".yaml", ".yml")) or os.sep in spec):
        path = PROFILE_DIR / f"{spec}.yaml"
        if not path.is_file():
            raise UsageError(f"unknown cluster profile {spec!r}; valid: "
                             f"{', '.join(profile_names()) or '(none in slurm/)'}, or a YAML path")
    elif not path.is_file():
        raise UsageError(f"cluster profile file {spec!r} does not exist")
    return profile_from_mapping(read_yaml(path) or {}, str(path), name=path.stem)


def profile_from_mapping(data: Any, source: str, name: str = "profile") -> ClusterProfile:
    """Validate a parsed profile; every error names the bad key."""
    if not isinstance(data, Mapping):
        raise UsageError(f"{source}: a cluster profile must be a mapping of "
                         f"{', '.join(PROFILE_KEYS)}")
    for key in data:
        if key not in PROFILE_KEYS:
            raise UsageError(f"{source}: unknown key {key!r}; valid: {', '.join(PROFILE_KEYS)}")

    def bad(key: str, what: str) -> UsageError:
        return UsageError(f"{source}: key {key!r} must be {what} (got {data[key]!r})")

    def integer(key: str, minimum: int) -> None:
        v = data.get(key)
        if key in data and (isinstance(v, bool) or not isinstance(v, int) or v < minimum):
            raise bad(key, f"an integer >= {minimum}")

    for key, minimum in (("cpus_per_task", 1), ("gpus_per_task", 0), ("time_min", 1),
                         ("array_parallelism", 1), ("max_array_size", 1),
                         ("signal_delay_s", 0), ("max_requeues", 0)):
        integer(key, minimum)
    mem = data.get("mem_gb")
    if mem is not None and (isinstance(mem, bool) or not isinstance(mem, (int, float)) or mem <= 0):
        raise bad("mem_gb", "a number of GB > 0")
    for key in ("partition", "job_name", "python", "tensorboard"):
        if data.get(key) is not None and (not isinstance(data[key], str) or not data[key].strip()):
            raise bad(key, "a non-empty string")
    setup = data.get("setup") or []
    if isinstance(setup, str):
        setup = [setup]
    if not isinstance(setup, list) or not all(isinstance(s, str) for s in setup):
        raise bad("setup", "a list of shell lines")
    extra = data.get("sbatch") or {}
    if not isinstance(extra, Mapping):
        raise bad("sbatch", "a mapping of sbatch option -> value, e.g. {account: myproject}")
    sbatch: dict[str, Any] = {}
    for opt, value in extra.items():
        flag = str(opt).lstrip("-")
        if flag in _OWNED_SBATCH:
            own = _OWNED_SBATCH[flag]
            raise UsageError(f"{source}: key 'sbatch' sets {opt!r}, which "
                             + (f"the profile key {own!r} sets" if own else "the harness sets"))
        if isinstance(value, bool):
            if value:
                sbatch[flag] = True
            continue
        if not isinstance(value, (str, int, float)):
            raise UsageError(f"{source}: key 'sbatch': option {opt!r} must have a string or "
                             f"number value (got {value!r})")
        sbatch[flag] = value
    profile = ClusterProfile(
        name=name, source=source, sbatch=sbatch, setup=tuple(setup),
        **{k: data[k] for k in PROFILE_KEYS if k in data and k not in ("sbatch", "setup")
           and data[k] is not None})
    if profile.signal_delay_s >= profile.time_min * 60:
        raise UsageError(f"{source}: key 'signal_delay_s' ({profile.signal_delay_s}) must be "
                         f"shorter than time_min ({profile.time_min} min)")
    return profile


def slurm_parameters(profile: ClusterProfile) -> dict[str, Any]:
    """submitit.SlurmExecutor.update_parameters arguments for a profile (sbatch names)."""
    params: dict[str, Any] = {
        "job_name": profile.job_name,
        "time": profile.time_min,
        "cpus_per_task": profile.cpus_per_task,
        "array_parallelism": profile.array_parallelism,
        "signal_delay_s": profile.signal_delay_s,
    }
    if profile.partition:
        params["partition"] = profile.partition
    if profile.gpus_per_task:
        params["gpus_per_task"] = profile.gpus_per_task
    if profile.mem_gb is not None:
        mem = float(profile.mem_gb)
        params["mem"] = f"{int(mem)}GB" if mem == int(mem) else f"{int(mem * 1024)}MB"
    if profile.setup:
        params["setup"] = list(profile.setup)
    if profile.sbatch:
        params["additional_parameters"] = dict(profile.sbatch)
    return params


def sbatch_text(profile: ClusterProfile, n_tasks: int, folder: Path,
                command: str = "python -u -m submitit.core._submit FOLDER") -> str:
    """The sbatch file submitit writes for an array of `n_tasks` cells (no submission)."""
    from submitit.slurm.slurm import _make_sbatch_string  # deferred: bench.status loads profiles

    return _make_sbatch_string(command=command, folder=folder,
                               map_count=n_tasks if n_tasks > 1 else None,
                               **slurm_parameters(profile))
