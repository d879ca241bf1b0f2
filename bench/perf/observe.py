"""bench.perf's observe row: what watching a run costs (issue 24). An epoch of a masked model
trained with the cell's observer (the metrics file and TensorBoard event files) against the same
epochs without it, interleaved in this process; and, more precisely than a difference of two
noisy timings, the seconds spent inside the observer's hooks as a share of the epoch."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.data import load_dataset
from bench.masks import attach_mask, global_topk_mask, magnitude_scores
from bench.perf.timing import alternate, timed
from bench.train.metrics_log import MetricsLog
from bench.train.models import build_model
from bench.train.trainer import Hook, Phase, PhaseResult, TrainState, Trainer


class Clocked(Hook):
    """Runs the callbacks MetricsLog implements of another hook and adds up the time spent in
    them (the others are Hook's no-ops on both sides)."""

    def __init__(self, inner: Hook):
        self.inner, self.seconds, self.start_seconds = inner, 0.0, 0.0

    def _call(self, name: str, *args: Any) -> None:
        t0 = time.perf_counter()
        getattr(self.inner, name)(*args)
        spent = time.perf_counter() - t0
        self.seconds += spent
        if name == "on_phase_start":  # once per phase: a writer, the mask's counts
            self.start_seconds += spent

    def on_phase_start(self, state: TrainState) -> None:
        self._call("on_phase_start", state)

    def on_epoch_start(self, state: TrainState) -> None:
        self._call("on_epoch_start", state)

    def after_step(self, state: TrainState) -> None:
        self._call("after_step", state)

    def on_epoch_done(self, state: TrainState, result: PhaseResult) -> None:
        self._call("on_epoch_done", state, result)


def observer_cost(device: str, repeats: int, model_name: str = "smallcnn",
                  dataset: str = "digits", epochs: int = 4) -> dict[str, float]:
    """Seconds per epoch with and without the observer (medians); the observer's own seconds
    per epoch (`hooks`, its phase start excluded) and per phase start (`phase_start`), for a
    model at 90 % sparsity (so the sparsity figures are computed too)."""
    try:
        import torch.utils.tensorboard  # noqa: F401  (deferred: optional, the [tb] extra)
        with_tb = True
    except ImportError:
        with_tb = False
    data = load_dataset(dataset)
    spec = data.spec
    with tempfile.TemporaryDirectory() as tmp:
        log = MetricsLog(Path(tmp) / "metrics.jsonl", {"id": "perf"},
                         Path(tmp) / "tb" if with_tb else None)
        clocked = Clocked(log)
        plain = Trainer(data, device, progress=False)
        observed = Trainer(data, device, progress=False, observers=[clocked])
        torch.manual_seed(0)
        model = plain.prepare(build_model(model_name, spec.num_classes, spec.channels,
                                          spec.image_size))
        attach_mask(model, global_topk_mask(magnitude_scores(model), 0.9)[0])
        phase = Phase("bench", epochs, batch_size=128)
        runs = {"n": 0}

        def watched() -> None:
            runs["n"] += 1
            observed.fit(model, phase)

        t_obs, t_plain = alternate(timed(watched, plain.sync),
                                   timed(lambda: plain.fit(model, phase), plain.sync), repeats)
        log.close()
    n = runs["n"]
    return {"with": t_obs / epochs, "without": t_plain / epochs,
            "hooks": (clocked.seconds - clocked.start_seconds) / (n * epochs),
            "phase_start": clocked.start_seconds / n, "tensorboard": float(with_tb)}
