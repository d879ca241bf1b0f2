"""A grid: method x dataset x sparsity x temperature x seed, expanded into RunConfigs; the grid
registry's entries, grid files (YAML/JSON) and the lookup by name or path. The named grids
themselves are in bench/plan/grids.py."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from bench.catalog import GRIDS, METHODS
from bench.config import CONFIG_FIELDS, RunConfig
from bench.method import parse_method_spec
from bench.registry import UsageError
from bench.plan.thresholds import thresholds_from
from bench.store.files import read_yaml

RETRAINING_BUDGETS = ("sparse_epochs", "round_epochs")
GRID_KEYS = ("name", "description", "methods", "datasets", "sparsities", "seeds", "temperatures",
             "base", "per_dataset", "extra_points", "gates", "sweep")


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
    # thresholds of the claims' validity gates, declared with the grid before it runs
    # (bench/plan/thresholds.py; unset names keep their defaults)
    gates: Mapping[str, float] = field(default_factory=dict)
    # other RunConfig fields swept for every (method, sparsity) point, e.g. {"sparse_epochs":
    # (10, 50, 90)}: their product multiplies those cells. The extra points (a dense reference)
    # are swept too, except over the retraining budgets, which they do not have. Report rows name
    # the swept values (bench/report/tables.py: row_labels).
    sweep: Mapping[str, tuple] = field(default_factory=dict)

    def __post_init__(self) -> None:
        thresholds_from(self.gates, f"grid {self.name}: gates")
        for key, values in self.sweep.items():
            if key not in CONFIG_FIELDS or key in ("method", "sparsity", "seed", "temperature"):
                raise UsageError(f"grid {self.name}: sweep field {key!r} is invalid; sweep a "
                                 f"RunConfig field other than method, sparsity, seed, temperature")
            if not isinstance(values, (list, tuple)) or not values:
                raise UsageError(f"grid {self.name}: sweep {key!r} must be a non-empty list")

    def _sweeps(self, extra: bool) -> list[dict[str, Any]]:
        keys = [k for k in self.sweep if not (extra and k in RETRAINING_BUDGETS)]
        if not keys:
            return [{}]
        return [dict(zip(keys, v)) for v in itertools.product(*(self.sweep[k] for k in keys))]

    def cells(self) -> list[RunConfig]:
        cells: list[RunConfig] = []
        seen: set[str] = set()
        points = [(m, s, False) for m in self.methods for s in self.sparsities] + \
            [(m, s, True) for m, s in self.extra_points]
        for dataset, seed, (spec, sparsity, extra) in itertools.product(self.datasets, self.seeds,
                                                                         points):
            name, options = parse_method_spec(spec)
            temps = self.temperatures if METHODS.get(name).uses_temperature else (None,)
            for temperature, swept in itertools.product(temps, self._sweeps(extra)):
                fields = {**self.base, **self.per_dataset.get(dataset, {}), **swept}
                if temperature is not None:
                    fields["temperature"] = temperature
                cfg = make_config(method=name, dataset=dataset, sparsity=sparsity, seed=seed,
                                  options=options, **fields)
                if cfg.id not in seen:
                    seen.add(cfg.id)
                    cells.append(cfg)
        return cells


# The fields each cell takes from the grid's axes (the key of a grid file, the bench.run flag);
# base, sweep, per_dataset and --set cannot also give them. (A base temperature is allowed: the
# temperatures axis, when given, overrides it.)
GRID_AXES = {"method": "methods", "dataset": "datasets", "sparsity": "sparsities",
             "seed": "seeds", "options": "methods"}


def make_config(**fields: Any) -> RunConfig:
    unknown = sorted(set(fields) - set(CONFIG_FIELDS))
    if unknown:
        raise UsageError(f"unknown config field(s) {', '.join(map(repr, unknown))}; "
                         f"valid: {', '.join(CONFIG_FIELDS)}")
    options = fields.pop("options", {}) or {}
    return RunConfig(**fields, options=tuple(sorted(dict(options).items())))


def register_grid(grid: Grid) -> Grid:
    return GRIDS.register(grid.name)(grid)


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

    for key in ("base", "per_dataset", "gates", "sweep"):
        if key in data and not isinstance(data[key], Mapping):
            raise UsageError(f"{source}: key {key!r} must be a mapping")
    fields = [*data.get("base", {}), *data.get("sweep", {}),
              *(k for o in dict(data.get("per_dataset", {})).values() if isinstance(o, Mapping)
                for k in o)]
    for field in fields:
        if field in GRID_AXES:
            raise UsageError(f"{source}: {field!r} is a grid axis, not a field of base, sweep or "
                             f"per_dataset; list it under {GRID_AXES[field]!r}")
    extra = data.get("extra_points", [])
    if not isinstance(extra, list) or not all(isinstance(p, (list, tuple)) and len(p) == 2
                                              for p in extra):
        raise UsageError(f"{source}: key 'extra_points' must be a list of [method, sparsity] pairs")
    thresholds_from(data.get("gates"), f"{source}: gates")
    grid = Grid(name=str(data.get("name", source)), methods=seq("methods", str),
                datasets=seq("datasets", str), sparsities=seq("sparsities", float),
                seeds=seq("seeds", int, (0,)), temperatures=seq("temperatures", float, (None,)),
                base=dict(data.get("base", {})),
                per_dataset={k: dict(v) for k, v in dict(data.get("per_dataset", {})).items()},
                extra_points=tuple((str(m), float(s)) for m, s in extra),
                description=str(data.get("description", "")),
                gates=dict(data.get("gates", {})),
                sweep={k: tuple(v) if isinstance(v, list) else v
                       for k, v in dict(data.get("sweep", {})).items()})
    try:
        grid.cells()  # validates every field with the same errors as the command line
    except UsageError as exc:
        raise UsageError(f"{source}: {exc}") from None
    except TypeError as exc:
        raise UsageError(f"{source}: {exc}") from None
    return grid


def load_grid(name_or_path: str) -> Grid:
    if name_or_path.endswith((".yaml", ".yml", ".json")):
        path = Path(name_or_path)
        if not path.is_file():
            raise UsageError(f"grid file {name_or_path!r} does not exist")
        return grid_from_mapping(read_yaml(path), name_or_path)
    return GRIDS.get(name_or_path)


# The paper grids name methods that other modules (or --plugin files) register. bench.plan.grids
# is imported by plugins.load_builtins *before* the methods package, so filtering the list there at
# import time (`[m for m in PAPER_METHODS if m.split(':')[0] in METHODS]`) would see an empty
# registry. MethodAwareGrid keeps the full list and leaves out the unregistered names when its
# cells are built (after every method module has been imported); `bench.run --dry-run` prints
# what it left out, so a missing method is visible rather than a silently smaller grid.


@dataclass(frozen=True)
class MethodAwareGrid(Grid):
    """A Grid whose cells (1) skip methods that are not registered, and (2) take per-method
    budgets: per_method[name] fills only fields that neither base nor per_dataset sets, so a
    command line `--set FIELD=VALUE` (which writes into base) still wins everywhere."""

    per_method: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def _registered(self, spec: str) -> bool:
        return parse_method_spec(spec)[0] in METHODS

    def unregistered_methods(self) -> list[str]:
        names = [parse_method_spec(m)[0] for m in self.methods]
        names += [parse_method_spec(m)[0] for m, _ in self.extra_points]
        return [n for n in dict.fromkeys(names) if n not in METHODS]

    def cells(self) -> list[RunConfig]:
        cells: list[RunConfig] = []
        for spec in dict.fromkeys([m for m in self.methods] + [m for m, _ in self.extra_points]):
            if not self._registered(spec):
                continue
            name = METHODS.canonical(parse_method_spec(spec)[0])
            own = {k: v for k, v in self.per_method.get(name, {}).items() if k not in self.base}
            sub = Grid(name=self.name, methods=(spec,) if spec in self.methods else (),
                       datasets=self.datasets, sparsities=self.sparsities, seeds=self.seeds,
                       temperatures=self.temperatures, base={**own, **self.base},
                       per_dataset=self.per_dataset, sweep=self.sweep,
                       extra_points=tuple(p for p in self.extra_points if p[0] == spec))
            cells += sub.cells()
        # dataset-major order, as Grid.cells: the first dataset's table fills in first
        order = {d: i for i, d in enumerate(self.datasets)}
        seeds = {s: i for i, s in enumerate(self.seeds)}
        unique = list({c.id: c for c in cells}.values())
        return sorted(unique, key=lambda c: (order.get(c.dataset, len(order)),
                                             seeds.get(c.seed, len(seeds))))
