"""`python -m bench.perf`: speed and cost ratios, each measured side by side in this one process.

Every row compares the harness with a baseline on the same data, model and device, alternating
the two and taking the median of several repeats, so the ratio survives a noisy machine better
than either number alone. Use `--device cuda` (and `--compile`) to read the same table on a GPU.
About 390 lines, kept as one file: one function per row plus the table, each row read alone; the shared timers are in bench/perf/timing.py and the
precision row's helpers in bench/perf/precision.py.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch
from torch import nn

from bench.data.loader import DeviceLoader
from bench.masks import attach_mask, global_topk_mask, magnitude_scores
from bench.train.models import build_model
from bench.perf.timing import alternate, cifar_like, interleave, timed  # noqa: F401 (re-exported)
from bench.train.trainer import Phase, Trainer

if TYPE_CHECKING:
    from bench.config import RunConfig

TARGETS = {
    "throughput": ("harness / bare loop (images/s)", ">= 0.95x"),
    "pipeline": ("device pipeline / torchvision DataLoader (images/s)", ">= 10x"),
    "mask": ("step with mask / without (seconds)", "<= 1.03x"),
    "importance": ("epoch with scoring / without (seconds)", "<= 1.15x"),
    "cache": ("5-sparsity tg-oneshot grid, paper budget proportions: recompute / cached", ">= 3x"),
    "colt": ("tg-oneshot vs COLT to 0.977, matched per-round budgets: colt / tg-oneshot (s)",
             ">= 10x"),
    "memory": ("peak RSS of the quick grid (GiB)", "< 2 GiB"),
    "precision": ("training at a precision / memory format vs fp32 contiguous (images/s)",
                  "auto: resnet20 >= 1.8x, resnet18 >= 2x"),
    "lean-loader": ("training, per-batch crops / whole-split crop windows (images/s)", ">= 0.95x"),
    "sharing": ("COLT / EGP on digits, 5 sparsities: --no-share / shared round prefixes (s)",
                "colt >= 2x, egp >= 1.4x; estimate within 25 %"),
    "observe": ("epoch with the metrics file and TensorBoard / without (seconds; the observer's "
                "own share)", "< 1 % of an epoch"),
}


# --- rows ---------------------------------------------------------------------------------------


def throughput(model_name: str, device: str, steps: int, repeats: int, batch: int = 128,
               compile: bool = False) -> tuple[float, float]:
    """Images/s of Trainer.fit against a bare loop (same model, SGD, batch; pre-made tensors)."""
    data = cifar_like(batch * steps)
    trainer = Trainer(data, device, progress=False, compile=compile)
    torch.manual_seed(0)
    model = trainer.prepare(build_model(model_name, 10, 3, 32))
    phase = Phase("bench", 1, batch_size=batch)

    def harness():
        trainer.fit(model, phase)

    x = torch.randn(batch, 3, 32, 32, device=device)
    if trainer.channels_last:  # the same layout as the harness's batches
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    step_model = torch.compile(model) if compile else model

    def bare():
        model.train()
        for _ in range(steps):
            with trainer.autocast():
                loss = nn.functional.cross_entropy(step_model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    th, tb = alternate(timed(harness, trainer.sync), timed(bare, trainer.sync), repeats)
    images = batch * steps
    return images / th, images / tb


def pipeline(device: str, n: int, repeats: int, batch: int = 128) -> tuple[float, float, int]:
    """Images/s of the device loader (crop+flip+normalise) against torchvision's DataLoader."""
    import torchvision.transforms as T
    from torch.utils.data import DataLoader, Dataset

    data = cifar_like(n)
    loader = DeviceLoader(data.train, data, batch, train=True, device=device)

    def ours():
        for b in loader:
            pass
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    class Images(Dataset):
        def __init__(self):
            self.images = data.train.images.permute(0, 2, 3, 1).numpy()
            self.labels = data.train.labels.numpy()
            self.tf = T.Compose([T.ToPILImage(), T.RandomCrop(32, 4), T.RandomHorizontalFlip(),
                                 T.ToTensor(), T.Normalize(data.mean, data.std)])

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return self.tf(self.images[i]), int(self.labels[i])

    best = None
    for workers in (0, 1, 2):
        tv = DataLoader(Images(), batch_size=batch, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0, pin_memory=device.startswith("cuda"))

        def theirs(tv=tv):
            for xb, yb in tv:
                xb.to(device, non_blocking=True)

        t_ours, t_tv = alternate(timed(ours, lambda: None), timed(theirs, lambda: None), repeats)
        if best is None or t_tv < best[1]:
            best = (t_ours, t_tv, workers)
    t_ours, t_tv, workers = best
    return n / t_ours, n / t_tv, workers


def mask_cost(device: str, steps: int, repeats: int, batch: int = 128,
              model_name: str = "resnet18") -> tuple[float, float]:
    """Seconds of training steps of ResNet-18 at 98% sparsity with mask enforcement vs the same
    sparse weights trained without a mask (so both do the same arithmetic on the same values)."""
    data = cifar_like(batch * steps)
    trainer = Trainer(data, device, progress=False)
    torch.manual_seed(0)
    masked = trainer.prepare(build_model(model_name, 10, 3, 32))
    attach_mask(masked, global_topk_mask(magnitude_scores(masked), 0.98)[0])
    unmasked = trainer.prepare(build_model(model_name, 10, 3, 32))
    unmasked.load_state_dict({k: v for k, v in masked.state_dict().items()
                              if not k.endswith("weight_mask")})
    phase = Phase("bench", 1, batch_size=batch)
    return alternate(timed(lambda: trainer.fit(masked, phase), trainer.sync),
                     timed(lambda: trainer.fit(unmasked, phase), trainer.sync), repeats)


def importance_cost(device: str, steps: int, repeats: int, batch: int = 128,
                    model_name: str = "resnet20") -> tuple[float, float]:
    """An epoch with the teacher-guided loss, with and without importance accumulation."""
    from bench.train.importance import ImportanceEMA
    from methods.teacher_guided import TeacherGuidedObjective

    data = cifar_like(batch * steps)
    trainer = Trainer(data, device, progress=False)
    torch.manual_seed(0)
    teacher = trainer.prepare(build_model("resnet32", 10, 3, 32)).eval()
    student = trainer.prepare(build_model(model_name, 10, 3, 32))
    objective = TeacherGuidedObjective(teacher, 0.9, 3.0, "sample")
    phase = Phase("bench", 1, batch_size=batch)
    scoring = ImportanceEMA(student)
    return alternate(timed(lambda: trainer.fit(student, phase, objective, [scoring]), trainer.sync),
                     timed(lambda: trainer.fit(student, phase, objective), trainer.sync), repeats)


# The paper grid's budgets (teacher 200, dense 160, retrain 50 epochs) divided by 10: the saving
# depends on how much of a cell's cost is sparsity-independent, so keep the paper's proportions.
CACHE_BUDGETS = {"teacher_epochs": 20, "dense_epochs": 16, "sparse_epochs": 5}


@contextlib.contextmanager
def _fresh_cells(device: str, warm_up: RunConfig) -> Iterator[Callable[[RunConfig, str], dict]]:
    """Yields run(config, store) -> record: runs a cell in a scratch results store of that name
    (so a new name means a cold phase cache), after `warm_up` has run once, so that the first
    timed cell does not pay for the first data load and kernel set-up. A failed cell raises:
    the seconds of a crash are no measurement."""
    from bench.exec.cell import RunOptions, run_cell
    from bench.store import ResultStore

    options = RunOptions(device=device, progress=False, save_checkpoints=False)
    with tempfile.TemporaryDirectory() as tmp:
        def run(config: RunConfig, store: str) -> dict:
            record = run_cell(config, ResultStore(Path(tmp) / store), options)
            if record["status"] != "ok":
                raise RuntimeError(f"{record['label']} failed: {record['error']['message']}")
            return record

        run(warm_up, "warm-up")
        yield run


def cache_saving(device: str, retrains: Sequence[str] = ("kd",),
                 sparsities: Sequence[float] = (0.5, 0.75, 0.9, 0.95, 0.98)) -> tuple[float, float]:
    """A five-sparsity tg-oneshot grid on digits (one cell per sparsity and retraining row):
    one shared cache against a fresh cache per cell, both after the same warm-up."""
    from bench.config import RunConfig
    from bench.plan.grids import QUICK_BASE

    budgets = {**QUICK_BASE, **CACHE_BUDGETS}
    cells = [RunConfig(method="tg-oneshot", sparsity=s, options=(("retrain", r),), **budgets)
             for r in retrains for s in sparsities]
    warm = RunConfig(method="tg-oneshot", sparsity=0.5, **{**budgets, "teacher_epochs": 1,
                                                            "dense_epochs": 1, "sparse_epochs": 1})
    with _fresh_cells(device, warm) as run:
        t0 = time.perf_counter()
        for c in cells:
            run(c, "shared")
        cached = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i, c in enumerate(cells):
            run(c, f"alone{i}")
        recompute = time.perf_counter() - t0
    return recompute, cached


def colt_against_oneshot(device: str, sparsity: float = 0.977,
                         base: dict | None = None) -> dict[str, float]:
    """Seconds of COLT and of tg-oneshot (kd, the paper's full method) to `sparsity` on digits at
    the quick budgets, with every COLT round training as long as tg-oneshot's one retraining
    (round_epochs = sparse_epochs: matched per-round budgets, as the paper grid sets them).
    Returns COLT's total, tg-oneshot's total (teacher and dense student included), the same without
    the teacher (trained once per dataset and reported separately, docs/methods.md's fair-comparison
    rule), and tg-oneshot's own per-cell cost (what one more sparsity adds to a grid that shares
    the teacher and the dense student)."""
    from bench.config import RunConfig
    from bench.plan.grids import QUICK_BASE

    base = QUICK_BASE if base is None else base
    budgets = {**base, "round_epochs": base["sparse_epochs"]}
    warm = RunConfig(method="magnitude", sparsity=0.5, **{**budgets, "dense_epochs": 1,
                                                           "sparse_epochs": 1})
    with _fresh_cells(device, warm) as run:
        colt = run(RunConfig(method="colt", sparsity=sparsity, **budgets), "colt")
        tg = run(RunConfig(method="tg-oneshot", sparsity=sparsity, **budgets), "tg")
    teacher = tg["phases"]["teacher"]["seconds"]
    return {"colt": colt["cost"]["seconds_total"], "tg_total": tg["cost"]["seconds_total"],
            "tg_without_teacher": tg["cost"]["seconds_total"] - teacher,
            "tg_cell": tg["cost"]["seconds_cell"],
            "colt_rounds": len(colt["extra"]["rounds"]),  # bench/method/rounds.py's per-round records
            "round_epochs": colt["config"]["round_epochs"],
            "sparse_epochs": tg["config"]["sparse_epochs"]}


def quick_grid_memory() -> float:
    """Peak RSS (GiB) of the quick grid run by `bench.run` in a fresh process, read by that
    process itself (RUSAGE_CHILDREN here would also count this process's DataLoader workers, and
    the child's own ru_maxrss would include this process's size at fork: see peak_rss_mb)."""
    import subprocess

    code = ("import runpy, sys\n"
            "sys.argv = ['bench.run', '--results', sys.argv[1], '--no-progress']\n"
            "try:\n    runpy.run_module('bench.run', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "from bench.exec.provenance import peak_rss_mb\n"
            "print('peak_rss_mb', peak_rss_mb())")
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run([sys.executable, "-c", code, tmp], check=True, capture_output=True,
                             text=True).stdout
    return float(out.rsplit("peak_rss_mb", 1)[1].split()[0]) / 1024.0


# --- the table ----------------------------------------------------------------------------------


class _WindowedLoader(DeviceLoader):
    """The loader before issue 17, kept as the baseline of the lean-loader row: every shifted
    crop of the zero-padded split and of its mirror as one strided view, built once per split
    (2.5x the split's memory for 64x64 images with pad 4)."""

    windows: dict[int, torch.Tensor] = {}

    def _crops(self, idx, shifts, flips):
        images, pad = self.split.images, self.pad
        key = id(images)
        if key not in self.windows:
            self.windows.clear()
            _, _, h, w = images.shape
            padded = nn.functional.pad(images, (pad, pad, pad, pad)) if pad else images
            stack = torch.stack([padded, padded.flip(3)]) if self.flip else padded.unsqueeze(0)
            self.windows[key] = stack.unfold(3, h, 1).unfold(4, w, 1)
        win = self.windows[key]
        rows = shifts[0] if shifts is not None else idx.new_zeros(len(idx))
        cols = shifts[1] if shifts is not None else idx.new_zeros(len(idx))
        if flips is None:
            return win[0, idx, :, rows, cols]
        cols = torch.where(flips, 2 * pad - cols, cols)
        return win[flips.long(), idx, :, rows, cols]


def lean_loader(device: str, repeats: int, n: int = 4096, size: int = 64,
                model_name: str = "smallcnn") -> tuple[float, float]:
    """Images/s of a training epoch (Trainer.fit) with the per-batch crops against the windowed
    loader, TinyImageNet-shaped (64x64, pad 4, flip) by default."""
    import bench.train.trainer as trainer_module

    data = cifar_like(n, classes=200, size=size)
    trainer = Trainer(data, device, progress=False)
    torch.manual_seed(0)
    model = trainer.prepare(build_model(model_name, 200, 3, size))
    phase = Phase("bench", 1, batch_size=128)

    def with_loader(cls):
        def run():
            trainer_module.DeviceLoader = cls
            try:
                trainer.fit(model, phase)
            finally:
                trainer_module.DeviceLoader = DeviceLoader
        return run

    lean, windowed = alternate(timed(with_loader(DeviceLoader), trainer.sync),
                               timed(with_loader(_WindowedLoader), trainer.sync), repeats)
    _WindowedLoader.windows.clear()
    return n / lean, n / windowed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf", description=__doc__)
    p.add_argument("--device", default="cpu")
    p.add_argument("--compile", action="store_true", help="torch.compile in the throughput rows")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--steps", type=int, default=4, help="training steps per timed run")
    p.add_argument("--only", help=f"comma list of rows: {', '.join(TARGETS)}")
    p.add_argument("--models", help="precision row: comma list of models (default: resnet20,"
                   "resnet18; e.g. smallcnn,timm:resnet18)")
    p.add_argument("--variants", help="precision row: comma list of precision:format (default: "
                   "all four of fp32|bf16 x contiguous|channels_last; fp32:contiguous is the base)")
    args = p.parse_args(argv)
    from bench.plugins import load_builtins

    load_builtins()
    rows = set(args.only.split(",")) if args.only else set(TARGETS)
    unknown = rows - set(TARGETS)
    if unknown:
        print(f"error: unknown row(s) {sorted(unknown)}; valid: {', '.join(TARGETS)}",
              file=sys.stderr)
        return 2
    if "precision" in rows:
        from bench.perf.precision import parse_variants

        try:
            parse_variants(args.variants)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"# bench.perf on {name}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}\n")
    print("| what | harness | baseline | ratio | target |\n|---|---|---|---|---|")

    def row(key: str, ours: str, base: str, ratio: str) -> None:
        print(f"| {TARGETS[key][0]} | {ours} | {base} | {ratio} | {TARGETS[key][1]} |", flush=True)

    if "throughput" in rows:
        for model in ("resnet20", "resnet18"):
            h, b = throughput(model, args.device, args.steps, args.repeats, compile=args.compile)
            row("throughput", f"{model}: {h:,.0f} img/s", f"{b:,.0f} img/s", f"{h / b:.3f}x")
    if "pipeline" in rows:
        ours, tv, workers = pipeline(args.device, 10_000, args.repeats)
        row("pipeline", f"{ours:,.0f} img/s", f"{tv:,.0f} img/s (num_workers={workers})",
            f"{ours / tv:.1f}x")
    if "mask" in rows:
        m, d = mask_cost(args.device, args.steps, args.repeats)
        row("mask", f"{m:.3f} s", f"{d:.3f} s", f"{m / d:.3f}x")
    if "importance" in rows:
        s, n = importance_cost(args.device, args.steps * 4, args.repeats)
        row("importance", f"{s:.3f} s", f"{n:.3f} s", f"{s / n:.3f}x")
    if "cache" in rows:
        # The grid `bench.run --methods tg-oneshot:retrain=kd` runs, then the paper grid's two
        # retraining rows (ft and kd: 10 cells sharing one teacher and one dense student).
        for retrains in (("kd",), ("ft", "kd")):
            r, c = cache_saving(args.device, retrains)
            label = f"{'+'.join(retrains)}, {5 * len(retrains)} cells"
            row("cache", f"{label}: {c:.1f} s cached", f"{r:.1f} s recomputed", f"{r / c:.2f}x")
    if "colt" in rows:
        t = colt_against_oneshot(args.device)
        for what, key in (("total", "tg_total"), ("without the teacher", "tg_without_teacher"),
                          ("per cell, teacher and student shared", "tg_cell")):
            row("colt", f"tg-oneshot {what}: {t[key]:.1f} s",
                f"colt: {t['colt']:.1f} s ({t['colt_rounds']} rounds of {t['round_epochs']} "
                f"epochs)", f"{t['colt'] / t[key]:.1f}x")
    if "lean-loader" in rows:
        for size, model in ((64, "smallcnn"), (32, "resnet20")):
            lean, windowed = lean_loader(args.device, args.repeats, size=size, model_name=model)
            row("lean-loader", f"{size}x{size} {model}: {lean:,.0f} img/s",
                f"{windowed:,.0f} img/s", f"{lean / windowed:.3f}x")
    if "observe" in rows:
        from bench.perf.observe import observer_cost

        for model in ("smallcnn", "resnet20"):
            c = observer_cost(args.device, args.repeats, model)
            tb = "" if c["tensorboard"] else " (no tensorboard installed: file only)"
            row("observe", f"digits {model}: {c['with']:.3f} s/epoch{tb}",
                f"{c['without']:.3f} s/epoch",
                f"{c['with'] / c['without']:.3f}x; hooks {c['hooks'] * 1e3:.2f} ms = "
                f"{100 * c['hooks'] / c['without']:.2f} % of an epoch, + "
                f"{c['phase_start'] * 1e3:.1f} ms a phase")
    if "memory" in rows:
        gib = quick_grid_memory()
        row("memory", f"{gib:.2f} GiB", "—", "—")
    if "precision" in rows:
        from bench.perf.precision import precision_rows

        precision_rows(args, row)
    if "sharing" in rows:
        from bench.perf.sharing import sharing_rows

        sharing_rows(args, row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
