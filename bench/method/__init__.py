"""The method interface: what a pruning method receives and what it must return.

A method is a function `run(ctx: MethodContext) -> nn.Module` registered with `register_method`.
It gets everything through `ctx` (the protocol below; bench/exec/context.py's CellContext
implements it): the config, the data, a model factory, the one trainer, the phase cache and the
clock. It returns the final masked model; the harness evaluates it on the test split, checks the
mask contract, saves it and writes the record.

    @register_method("magnitude", options={"finetune_lr": Option(0.01)})
    def magnitude(ctx):
        model = ctx.dense_model()                  # cached: shared by every sparsity
        with ctx.clock("prune"):
            ctx.prune(model, magnitude_scores(model))
        ctx.train(model, ctx.phase("finetune", ctx.config.sparse_epochs))
        return model
"""
from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Protocol

from bench.catalog import METHODS
from bench.registry import UsageError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from bench.store.cache import CacheEntry
    from bench.config import RunConfig
    from bench.masks import Accounting
    from bench.data import DataBundle
    from bench.data.loader import IndexSampler
    from bench.train.trainer import Hook, Objective, Phase, PhaseResult, Trainer


class MethodContext(Protocol):
    """What a method (and bench/method/rounds.py) may use of the cell it runs in. Typed here so that
    methods depend on this interface, not on the module that runs cells."""

    config: "RunConfig"
    data: "DataBundle"
    trainer: "Trainer"
    work_dir: Path
    phases: dict[str, dict[str, Any]]  # phase name -> its record (epochs, seconds, ...)
    extra: dict[str, Any]  # method-specific record fields
    expected_sparsity: float | None  # None: the method reports what it reached
    accounting: "Accounting"  # the weights the target counts over (default: every prunable one)
    # another cell's ok record (same store, run first if missing): random:match=... reads masks
    other_cell: "Callable[[RunConfig], dict] | None"
    dense_reference: int | None  # a dense stand-in's full-width weight count (small-dense)
    # epoch -> the dense network's weights then (snapshot_epochs): weight-rewind's rewind points
    rewind_points: "dict[int, dict[str, torch.Tensor]]"

    @property
    def options(self) -> dict[str, Any]: ...

    @property
    def temperature(self) -> float: ...

    def make_model(self, name: str | None = None, *, seed_offset: int = 0,
                   num_classes: int | None = None) -> "nn.Module": ...

    def phase(self, name: str, epochs: int, **overrides: Any) -> "Phase": ...

    def train(self, model: "nn.Module", phase: "Phase", objective: "Objective" = ...,
              hooks: Iterable["Hook"] = (), *, sampler: "IndexSampler | None" = None,
              record_as: str | None = None) -> "PhaseResult": ...

    def clock(self, name: str, shared: bool = False
              ) -> contextlib.AbstractContextManager[dict[str, Any]]: ...

    def cached_phase(self, kind: str, key: dict[str, Any],
                     compute: Callable[[Path], tuple[dict[str, Any], dict[str, Any]]]
                     ) -> "CacheEntry": ...

    def teacher(self) -> "nn.Module": ...

    def dense_model(self) -> "nn.Module": ...

    def prune(self, model: "nn.Module", scores: "dict[str, torch.Tensor]",
              sparsity: float | None = None) -> None: ...


class UnreachableTarget(ValueError):
    """A method cannot reach the cell's target by its own rule; raised before it trains."""


@dataclass(frozen=True)
class Option:
    """A method-specific option: its default, and optionally the valid choices or a check."""

    default: Any
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], bool] | None = None
    valid: str = ""  # how to describe valid values when `check` fails
    help: str = ""

    def coerce(self, name: str, value: Any) -> Any:
        kind = type(self.default)
        if isinstance(value, str) and kind is not str:
            try:
                value = {"true": True, "false": False}[value.lower()] if kind is bool \
                    else kind(value)
            except (ValueError, KeyError):
                raise UsageError(f"option {name}={value!r} is invalid; expected a {kind.__name__}") \
                    from None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise UsageError(f"option {name}={value!r} is invalid; expected a {kind.__name__}")
        if self.choices is not None and value not in self.choices:
            raise UsageError(f"option {name}={value!r} is invalid; valid: "
                             f"{', '.join(map(str, self.choices))}")
        if self.check is not None and not self.check(value):
            raise UsageError(f"option {name}={value!r} is invalid; {self.valid or 'see the docs'}")
        return value


# How a one-shot method trains after pruning: the harness's restart (a fresh schedule of
# sparse_epochs), or one of the field's baselines (Renda et al. 2020). Every method registered with
# one_shot=True has this option; bench/method/retraining.py defines each mode once.
RETRAININGS = ("restart", "finetune", "lr-rewind", "weight-rewind", "reinit")
RETRAINING = Option("restart", choices=RETRAININGS,
                    help="after pruning: restart (a fresh schedule), finetune (the dense "
                         "schedule's final lr), lr-rewind, weight-rewind, reinit")


@dataclass(frozen=True)
class Method:
    name: str
    run: Callable[[MethodContext], "nn.Module"]
    options: Mapping[str, Option] = field(default_factory=dict)
    uses_temperature: bool = False  # grids sweep temperatures only for methods that use one
    label_options: tuple[str, ...] = ()  # options always shown in the row label
    requires_epochs: tuple[str, ...] = ()  # budget fields that must be >= 1 for this method
    description: str = ""
    # precheck(config) -> None, or one line saying why the method cannot reach the config's
    # target: `bench.run --dry-run` lists it, and the cell fails with it before training
    precheck: Callable[[Any], str | None] | None = None
    # cost(config) -> [bench.plan.estimate.PhaseCost]: the phases a cell runs, the cache key of each
    # shared one and its work, for `bench.run --dry-run`'s GPU-hour estimate. None: a dense
    # training plus a sparse one (bench.plan.estimate.default_cost).
    cost: Callable[[Any], list] | None = None
    # options shown as "-value" only when not at their default, so that adding a variant does not
    # rename the existing row (magnitude stays "magnitude"; retrain=kd reads "magnitude-kd")
    label_variants: tuple[str, ...] = ()
    # prunes once and retrains (bench.method.retraining.retrain): it takes the retraining option
    one_shot: bool = False

    def normalize_options(self, given: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
        out = {}
        for key, value in given.items():
            if key == "retraining" and key not in self.options:
                raise UsageError(f"option retraining is for one-shot methods (magnitude, random, "
                                 f"tg-oneshot, ...); {self.name!r} is not one")
            if key not in self.options:
                valid = ", ".join(sorted(self.options)) or "none"
                raise UsageError(f"unknown option {key!r} for method {self.name!r}; valid: {valid}")
            value = self.options[key].coerce(key, value)
            if value != self.options[key].default:
                out[key] = value
        return tuple(sorted(out.items()))

    def resolve_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        return {k: given.get(k, opt.default) for k, opt in self.options.items()}

    def label(self, given: Mapping[str, Any]) -> str:
        resolved = self.resolve_options(given)
        shown = [k for k in self.label_variants if k in given]
        parts = [f"{resolved[k]}" for k in self.label_options] + [f"{given[k]}" for k in shown]
        named = len(parts)
        parts += [f"{k}={v}" for k, v in sorted(given.items())
                  if k not in self.label_options and k not in shown]
        if not parts:
            return self.name
        first = "-".join([self.name] + parts[:named])
        rest = parts[named:]
        return first + (f"[{','.join(rest)}]" if rest else "")

    def options_for_label(self, label: str) -> dict[str, Any] | None:
        """The options whose row label is `label` (None if no combination of the label options'
        choices gives it): 'tg-oneshot-ft' -> {'retrain': 'ft'}, 'magnitude' -> {}."""
        keys = [k for k in (*self.label_options, *self.label_variants)
                if self.options[k].choices is not None]
        for values in itertools.product(*(self.options[k].choices for k in keys)):
            given = {k: v for k, v in zip(keys, values) if v != self.options[k].default}
            if self.label(given) == label:
                return given
        return None


def register_method(name: str, *, options: Mapping[str, Option] | None = None,
                    uses_temperature: bool = False, label_options: tuple[str, ...] = (),
                    label_variants: tuple[str, ...] = (), requires_epochs: tuple[str, ...] = (),
                    description: str = "", replace: bool = False,
                    precheck: Callable[[Any], str | None] | None = None,
                    cost: Callable[[Any], list] | None = None, one_shot: bool = False):
    """Register `run(ctx) -> model` under `name`. A clash with an existing name is an error.
    `one_shot`: the method prunes once and retrains through bench.method.retraining.retrain, so
    it takes the `retraining` option (shown in its row label when not the default)."""
    options = dict(options or {})
    if one_shot:
        options.setdefault("retraining", RETRAINING)
        label_variants = (*label_variants, "retraining")

    def decorator(run: Callable[[MethodContext], "nn.Module"]):
        method = Method(name, run, options, uses_temperature, label_options,
                        label_variants=label_variants, requires_epochs=requires_epochs,
                        description=description or (run.__doc__ or "").strip().split("\n")[0],
                        precheck=precheck, cost=cost, one_shot=one_shot)
        METHODS.register(name, replace=replace)(method)
        return run
    return decorator


def method_for_label(label: str) -> tuple[str, dict[str, Any]]:
    """A row label or a method name ('tg-oneshot', 'tg-oneshot-ft', 'magnitude-kd') -> (method,
    options); anything else is a usage error listing the methods."""
    if label in METHODS:
        return METHODS.canonical(label), {}
    for name in METHODS.names():
        method = METHODS.get(name)
        if label.startswith(name + "-"):
            options = method.options_for_label(label)
            if options is not None:
                return name, options
    raise UsageError(f"{label!r} is neither a method nor a row label such as tg-oneshot-kd; "
                     f"methods: {', '.join(METHODS.names())}")


def parse_method_spec(spec: str) -> tuple[str, dict[str, str]]:
    """'tg-oneshot:retrain=ft,score=grad' -> ('tg-oneshot', {'retrain': 'ft', 'score': 'grad'})."""
    name, _, rest = spec.partition(":")
    options = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"method spec {spec!r}: {part!r} is not key=value "
                             f"(form: name[:key=value,...])")
        options[key.strip()] = value.strip()
    return name.strip(), options
