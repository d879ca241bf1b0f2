"""Named grids: method x dataset x sparsity x temperature x seed, expanded into RunConfigs."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from bench.catalog import GRIDS, METHODS
from bench.config import CONFIG_FIELDS, RunConfig
from bench.method import parse_method_spec
from bench.registry import UsageError

GRID_KEYS = ("name", "description", "methods", "datasets", "sparsities", "seeds", "temperatures",
             "base", "per_dataset", "extra_points")


@dataclass(frozen=True)
class Grid:
    name: str
    methods: tuple[str, ...]  # method specs: "name" or "name:key=value,..."
    datasets: tuple[str, ...]
    sparsities: tuple[float, ...]
    seeds: tuple[int, ...] = (0,)
    temperatures: tuple[float | None, ...] = (None,)  # swept only for methods that use one
    base: Mapping[str, Any] = field(default_factory=dict)  # RunConfig fields for every cell
    per_dataset: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # (method spec, sparsity) pairs added to every dataset and seed, e.g. the COLT point 0.977
    extra_points: tuple[tuple[str, float], ...] = ()
    description: str = ""

    def cells(self) -> list[RunConfig]:
        cells: list[RunConfig] = []
        seen: set[str] = set()
        points = [(m, s) for m in self.methods for s in self.sparsities] + list(self.extra_points)
        for dataset, seed, (spec, sparsity) in itertools.product(self.datasets, self.seeds, points):
            name, options = parse_method_spec(spec)
            temps = self.temperatures if METHODS.get(name).uses_temperature else (None,)
            for temperature in temps:
                fields = {**self.base, **self.per_dataset.get(dataset, {})}
                if temperature is not None:
                    fields["temperature"] = temperature
                cfg = make_config(method=name, dataset=dataset, sparsity=sparsity, seed=seed,
                                  options=options, **fields)
                if cfg.id not in seen:
                    seen.add(cfg.id)
                    cells.append(cfg)
        return cells


def make_config(**fields: Any) -> RunConfig:
    unknown = sorted(set(fields) - set(CONFIG_FIELDS))
    if unknown:
        raise UsageError(f"unknown config field(s) {', '.join(map(repr, unknown))}; "
                         f"valid: {', '.join(CONFIG_FIELDS)}")
    options = fields.pop("options", {}) or {}
    return RunConfig(**fields, options=tuple(sorted(dict(options).items())))


def register_grid(grid: Grid) -> Grid:
    return GRIDS.register(grid.name)(grid)


# Budgets that finish the quick grid in well under 3 minutes on 2 CPU cores.
QUICK_BASE = {"model": "resnet20", "teacher": "resnet32", "teacher_epochs": 15,
              "dense_epochs": 15, "sparse_epochs": 10, "round_epochs": 4, "batch_size": 128,
              "lr": 0.1}

register_grid(Grid(
    name="quick",
    description="digits, the CPU default: a few minutes on 2 cores, no download",
    methods=("magnitude", "random", "tg-oneshot:retrain=ft", "tg-oneshot:retrain=kd"),
    datasets=("digits",),
    sparsities=(0.5, 0.9, 0.98),
    base=QUICK_BASE,
))


def grid_from_mapping(data: Mapping[str, Any], source: str) -> Grid:
    """Build a grid from a parsed YAML/JSON mapping; errors name the bad key."""
    if not isinstance(data, Mapping):
        raise UsageError(f"{source}: a grid file must hold a mapping of {', '.join(GRID_KEYS)}")
    unknown = sorted(set(data) - set(GRID_KEYS))
    if unknown:
        raise UsageError(f"{source}: unknown key {unknown[0]!r}; valid: {', '.join(GRID_KEYS)}")
    for key in ("methods", "datasets", "sparsities"):
        if key not in data:
            raise UsageError(f"{source}: missing key {key!r}")

    def seq(key: str, kind: type, default: Sequence = ()) -> tuple:
        value = data.get(key, default)
        if not isinstance(value, (list, tuple)) or not value:
            raise UsageError(f"{source}: key {key!r} must be a non-empty list")
        out = []
        for v in value:
            if kind is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if v is not None and (not isinstance(v, kind) or isinstance(v, bool)):
                raise UsageError(f"{source}: key {key!r} holds {v!r}; expected {kind.__name__}s")
            out.append(v)
        return tuple(out)

    for key in ("base", "per_dataset"):
        if key in data and not isinstance(data[key], Mapping):
            raise UsageError(f"{source}: key {key!r} must be a mapping")
    extra = data.get("extra_points", [])
    if not isinstance(extra, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2
                                              for p in extra):
        raise UsageError(f"{source}: key 'extra_points' must be a list of [method, sparsity] pairs")
    grid = Grid(name=str(data.get("name", source)), methods=seq("methods", str),
                datasets=seq("datasets", str), sparsities=seq("sparsities", float),
                seeds=seq("seeds", int, (0,)), temperatures=seq("temperatures", float, (None,)),
                base=dict(data.get("base", {})),
                per_dataset={k: dict(v) for k, v in dict(data.get("per_dataset", {})).items()},
                extra_points=tuple((str(m), float(s)) for m, s in extra),
                description=str(data.get("description", "")))
    try:
        grid.cells()  # validates every field with the same errors as the command line
    except UsageError as exc:
        raise UsageError(f"{source}: {exc}") from None
    except TypeError as exc:
        raise UsageError(f"{source}: {exc}") from None
    return grid


def load_grid(name_or_path: str) -> Grid:
    if name_or_path.endswith((".yaml", ".yml", ".json")):
        from pathlib import Path

        import yaml

        path = Path(name_or_path)
        if not path.is_file():
            raise UsageError(f"grid file {name_or_path!r} does not exist")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise UsageError(f"{name_or_path}: not valid YAML ({str(exc).splitlines()[0]})") from None
        return grid_from_mapping(data, name_or_path)
    return GRIDS.get(name_or_path)
