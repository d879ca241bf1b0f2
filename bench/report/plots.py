"""Figures of the report, one per dataset: accuracy against sparsity, against compression and
multiply-accumulates, radar plots and per-layer sparsity; and one critical-difference diagram over
all settings.

Each takes the summary frame of bench.report.tables.summarize (one row per dataset x row x
sparsity, with `n`, `mean`, `std` in %) and returns a matplotlib Figure with exactly one Line2D per
method row (per panel), so a caller (or a test) can count them. Groups without an ok seed are NaN:
a gap in the line, never a 0.

matplotlib (Agg backend), seaborn and scikit-posthocs are imported inside the functions that draw,
not at the top: about 4 s of start-up that `bench.report --help` and the report's tests of tables
and numbers need not pay.
"""
from __future__ import annotations

import io
import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from bench.report.phase_times import phase_group
from bench.store import atomic_write_bytes

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

RADAR_LEVELS = (0.5, 0.75, 0.9, 0.94, 0.98)  # the paper's radar figure (docs/methods.md, tg-oneshot)


def _pyplot():
    import matplotlib  # deferred, with the Agg backend: see the module's docstring

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _palette(n: int) -> list:
    import seaborn as sns  # deferred: see the module's docstring

    return sns.color_palette("tab10" if n <= 10 else "husl", n)


CI_FROM_N = 3  # as the tables: a 95 % t interval of two seeds spans ±9 std and hides the rest


def _series(df: "pd.DataFrame", row: str, sparsities: Sequence[float]) -> tuple[list, list]:
    """Mean (%) of `row` at each sparsity and its 95 % interval (lo, hi) where n >= CI_FROM_N;
    NaN where no seed is ok or the interval is not drawn."""
    means, intervals = [], []
    for s in sparsities:
        hit = df[(df["row"] == row) & (df["sparsity"] == s)]
        ok = hit[hit["n"] > 0]
        means.append(float(ok["mean"].iloc[0]) if len(ok) else math.nan)
        intervals.append(_interval(ok.iloc[0]) if len(ok) else (math.nan, math.nan))
    return means, intervals


def _interval(group) -> tuple[float, float]:
    if group["n"] < CI_FROM_N or "ci_low" not in group or group["ci_low"] is None:
        return math.nan, math.nan
    return float(group["ci_low"]), float(group["ci_high"])


def _forward(x):
    return -np.log10(np.clip(1.0 - np.asarray(x, dtype=float) / 100.0, 1e-6, None))


def _inverse(y):
    return 100.0 * (1.0 - np.power(10.0, -np.asarray(y, dtype=float)))


def accuracy_curves(summary: "pd.DataFrame", dataset: str, title: str | None = None) -> "Figure":
    """Test accuracy (%) against sparsity (%) of `dataset`: one line per method row (markers at
    the means), a band and bars of the 95 % t interval over seeds where there are three or more.
    The x axis is spaced by -log10(1 - sparsity), so 90 %, 98 % and 99 % stay apart."""
    import seaborn as sns  # deferred: see the module's docstring

    plt = _pyplot()
    df = summary[summary["dataset"] == dataset]
    rows = list(dict.fromkeys(df["row"]))
    sparsities = sorted(df["sparsity"].unique())
    xs = [100.0 * s for s in sparsities]
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
        for row, color in zip(rows, _palette(len(rows))):
            means, intervals = _series(df, row, sparsities)
            ax.plot(xs, means, marker="o", markersize=4, linewidth=1.6, color=color, label=row)
            lo = [i[0] for i in intervals]
            hi = [i[1] for i in intervals]
            if any(not math.isnan(v) for v in lo):
                ax.fill_between(xs, lo, hi, color=color, alpha=0.15, linewidth=0)
                # a band needs two neighbours; a bar shows the spread at every point as well
                ax.vlines(xs, lo, hi, color=color, alpha=0.6, linewidth=1.2)
        ax.set_xscale("function", functions=(_forward, _inverse))
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{x:g}" for x in xs], rotation=45 if len(xs) > 6 else 0)
        ax.set_xlabel("sparsity of prunable weights (%)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(title or f"{dataset}: accuracy vs sparsity (mean, 95 % CI where n ≥ 3)")
        if rows:
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        fig.tight_layout()
    return fig


def cost_curves(summary: "pd.DataFrame", dataset: str) -> "Figure | None":
    """Test accuracy (%) against the compression ratio (dense size / non-zero parameters) and
    against the sparse multiply-accumulates per image, both on log axes: one line per method row
    in each panel, ordered by sparsity, with bars of the 95 % t interval of the accuracy where
    n >= 3. None when no record carries the cost accounting."""
    import seaborn as sns  # deferred: see the module's docstring

    df = summary[summary["dataset"] == dataset]
    if "compression_ratio" not in df or df["compression_ratio"].notna().sum() == 0:
        return None
    plt = _pyplot()
    rows = list(dict.fromkeys(df["row"]))
    with sns.axes_style("whitegrid"):
        fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.2), dpi=120, sharey=True)
        for row, color in zip(rows, _palette(len(rows))):
            points = df[(df["row"] == row) & (df["n"] > 0)].sort_values("sparsity")
            left.plot(points["compression_ratio"], points["mean"], marker="o", markersize=4,
                      linewidth=1.6, color=color, label=row)
            right.plot(points["macs_sparse"] / 1e6, points["mean"], marker="o", markersize=4,
                       linewidth=1.6, color=color, label=row)
            bars = [(x, m, _interval(p)) for x, m, p in zip(
                points["compression_ratio"], points["macs_sparse"] / 1e6,
                (points.iloc[i] for i in range(len(points))))]
            shown = [(c, m, lo, hi) for c, m, (lo, hi) in bars if not math.isnan(lo)]
            if shown:  # bars, not caps: caps would be extra Line2D per panel
                left.vlines([b[0] for b in shown], [b[2] for b in shown], [b[3] for b in shown],
                            color=color, alpha=0.6, linewidth=1.2)
                right.vlines([b[1] for b in shown], [b[2] for b in shown], [b[3] for b in shown],
                             color=color, alpha=0.6, linewidth=1.2)
        for ax in (left, right):
            _plain_log_axis(ax)
        left.set_xlabel("compression ratio (all parameters / non-zero), log")
        left.set_ylabel("test accuracy (%)")
        right.invert_xaxis()  # fewer operations to the right, like the compression panel
        dense = df["macs_dense"].dropna()
        note = f" (dense {dense.iloc[0] / 1e6:,.1f})" if len(dense) else ""
        right.set_xlabel(f"sparse multiply-accumulates per image, millions{note}, log")
        fig.suptitle(f"{dataset}: accuracy against compression and compute "
                     "(mean over seeds, 95 % CI where n ≥ 3)")
        if rows:
            right.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        fig.tight_layout()
    return fig


def _plain_log_axis(ax) -> None:
    """A log x axis labelled 1, 2, 5, 10, 20, ... (matplotlib's default labels its minor ticks
    with overlapping 2x10^0-style text)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # deferred: docstring

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def radar(summary: "pd.DataFrame", dataset: str, levels: Sequence[float] = RADAR_LEVELS,
          title: str | None = None) -> "Figure | None":
    """Accuracy at the paper's radar levels that the grid has, one closed line per method row.
    None when fewer than three levels are present (no polygon to draw)."""
    import seaborn as sns  # deferred: see the module's docstring

    df = summary[summary["dataset"] == dataset]
    present = [s for s in levels if any(abs(s - v) < 1e-9 for v in df["sparsity"].unique())]
    if len(present) < 3:
        return None
    plt = _pyplot()
    rows = list(dict.fromkeys(df["row"]))
    angles = [2 * math.pi * i / len(present) for i in range(len(present))]
    values = {row: _series(df, row, present)[0] for row in rows}
    finite = [v for vs in values.values() for v in vs if not math.isnan(v)]
    low = max(0.0, math.floor(min(finite) - 5.0)) if finite else 0.0
    high = min(100.0, math.ceil(max(finite) + 1.0)) if finite else 100.0
    with sns.axes_style("whitegrid"):
        fig = plt.figure(figsize=(6.0, 5.0), dpi=120)
        ax = fig.add_subplot(projection="polar")
        for row, color in zip(rows, _palette(len(rows))):
            vs = values[row]
            ax.plot(angles + angles[:1], vs + vs[:1], marker="o", markersize=3, linewidth=1.5,
                    color=color, label=row)
            if all(not math.isnan(v) for v in vs):
                ax.fill(angles, vs, color=color, alpha=0.08)
        ax.set_theta_offset(math.pi / 2)  # first level at the top, then clockwise
        ax.set_theta_direction(-1)
        ax.set_xticks(angles)
        ax.set_xticklabels([f"{100 * s:g}%" for s in present])
        ax.set_ylim(low, high)
        ax.set_rlabel_position(180.0 / len(present))  # radial labels between two spokes
        ax.set_title(title or f"{dataset}: accuracy (%) at the radar sparsities", pad=18)
        if rows:
            ax.legend(loc="upper left", bbox_to_anchor=(1.08, 1.0), fontsize=8, frameon=False)
        fig.tight_layout()
    return fig


def cd_diagram(ranks: "pd.Series", nemenyi: "pd.DataFrame", cd: float,
               alpha: float = 0.05) -> "Figure":
    """Demšar's critical-difference diagram, drawn by scikit-posthocs: average ranks on the axis
    (1 = best, at the left) and a bar joining rows whose Nemenyi p >= alpha. The CD goes in the
    title: the library's own CD segment is drawn over the rank tick labels."""
    import scikit_posthocs as sp  # deferred: see the module's docstring

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.6 + 0.35 * len(ranks)), dpi=120)
    sp.critical_difference_diagram(ranks, nemenyi, ax=ax, alpha=alpha,
                                   label_fmt_left="{label} ({rank:.2f})",
                                   label_fmt_right="({rank:.2f}) {label}")
    ax.set_title(f"average rank (Nemenyi, α = {alpha:g}; CD = {cd:.2f})", fontsize=9)
    fig.tight_layout()
    return fig


MAX_ROUND_PHASES = 4  # COLT and EGP record phases per round (tens): the first few show their shape
MAX_CURVE_LEVELS = 3  # a per-sparsity phase is drawn at most at three of the grid's sparsities


def _curve_levels(sparsities: Sequence[float]) -> list[float]:
    """The sparsities a per-sparsity phase is drawn at: all of them up to MAX_CURVE_LEVELS,
    otherwise the lowest, the middle and the highest (the highest is where a short budget shows
    first; the spread keeps the rest honest)."""
    levels = sorted(set(sparsities))
    if len(levels) <= MAX_CURVE_LEVELS:
        return levels
    return [levels[0], levels[len(levels) // 2], levels[-1]]


def _merged_lines(part: "pd.DataFrame") -> list[tuple[list[str], "pd.Series"]]:
    """One (rows, mean curve) per distinct curve: rows that share a cached phase have the same
    curve, and drawn one over another only the last would show."""
    lines: list[tuple[list[str], "pd.Series"]] = []
    for row, group in part.groupby("row", sort=False):
        mean = group.groupby("epoch")["val_acc"].mean()
        for names, other in lines:
            if other.index.equals(mean.index) and np.allclose(other.values, mean.values):
                names.append(row)
                break
        else:
            lines.append(([row], mean))
    return lines


def training_curves(curves: "pd.DataFrame", dataset: str, shared: Sequence[str] = (),
                    window: int | None = None,
                    judged: "Callable[[str], bool]" = lambda phase: True) -> "Figure | None":
    """Validation accuracy (%) per epoch of each training phase of `dataset`, one line per
    method row (mean over seeds). A `shared` phase (cached and reused by every sparsity: the
    dense network, the teacher, the teacher-guided student, a shared round; named as the
    report's phases frame names them, rounds folded by phase_group) gets one panel,
    each row drawn at its highest sparsity that has it, with rows whose curves coincide merged
    into one labelled line; every other phase gets a panel per sparsity (see _curve_levels).
    Every phase that is not a round is drawn, but only the first MAX_ROUND_PHASES phases of
    iterative methods' rounds (a COLT row's tens cannot push the other rows out). Where
    `window` is given, the epochs the convergence gate compares are shaded on every `judged`
    phase: the last `window` (darker) and the `window` before."""
    import seaborn as sns  # deferred: see the module's docstring

    df = curves[curves["dataset"] == dataset] if curves is not None and len(curves) else None
    if df is None or not len(df):
        return None
    named = list(dict.fromkeys(df["phase"]))
    rounds = [p for p in named if phase_group(p) != p]  # round3, round3-a, ...
    phases = [p for p in named if phase_group(p) == p] + rounds[:MAX_ROUND_PHASES]
    once = [p for p in phases if phase_group(p) in shared]
    per_level = [p for p in phases if phase_group(p) not in shared]
    levels = _curve_levels(df.loc[df["phase"].isin(per_level), "sparsity"])
    cols = max(len(levels) if per_level else 1, min(4, len(once)), 1)
    slots: list[tuple[str, float | None] | None] = [(p, None) for p in once]
    slots += [None] * (-len(slots) % cols)  # each per-sparsity phase starts a line of panels
    for phase in per_level:
        have = set(df.loc[df["phase"] == phase, "sparsity"])
        slots += [(phase, s) if s in have else None for s in levels]
        slots += [None] * (-len(slots) % cols)
    rows = list(dict.fromkeys(df["row"]))
    colors = dict(zip(rows, _palette(len(rows))))
    plt = _pyplot()
    n_rows = math.ceil(len(slots) / cols)
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(n_rows, cols, figsize=(3.4 * cols, 2.8 * n_rows), dpi=110,
                                 squeeze=False)
        for ax, slot in zip(axes.flat, slots):
            if slot is None:
                ax.set_visible(False)
                continue
            phase, level = slot
            part = df[df["phase"] == phase]
            if level is None:  # each row at its highest sparsity: the dense row has only 0
                part = part[part["sparsity"] == part.groupby("row")["sparsity"].transform("max")]
            else:
                part = part[part["sparsity"] == level]
            lines = _merged_lines(part)
            for names, mean in lines:
                ax.plot(mean.index, mean.values, marker=".", linewidth=1.3,
                        color=colors[names[0]], label=" = ".join(names))
            last = int(part["epoch"].max())
            if window and judged(phase) and last >= 2 * window:
                ax.axvspan(last - window + 0.5, last + 0.5, color="0.5", alpha=0.18, lw=0)
                ax.axvspan(last - 2 * window + 0.5, last - window + 0.5, color="0.5",
                           alpha=0.08, lw=0)
            where = "shared by every sparsity" if level is None else f"sparsity {100 * level:g} %"
            ax.set_title(f"{phase} ({where})", fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.set_ylabel("val. accuracy (%)", fontsize=8)
            if any(len(names) > 1 for names, _ in lines):
                # four or five merged rows make one label wider than the panel: wrap it
                handles, labels = ax.get_legend_handles_labels()
                ax.legend(handles, [textwrap.fill(lab, 34) for lab in labels], fontsize=6,
                          loc="lower right", frameon=False)
        for ax in list(axes.flat)[len(slots):]:
            ax.set_visible(False)
        handles = [plt.Line2D([], [], color=colors[r], label=r) for r in rows]
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
                   frameon=False)
        fig.suptitle(f"{dataset}: validation accuracy per epoch (mean over seeds)", fontsize=10)
        fig.tight_layout()
    return fig


def layer_sparsity(frame: "pd.DataFrame", title: str) -> "Figure":
    """Sparsity (%) of each prunable layer in network order (bench.report.controls.layer_frame):
    one line per method row, so a method that empties or spares layers shows it."""
    import seaborn as sns  # deferred: see the module's docstring

    plt = _pyplot()
    rows = list(dict.fromkeys(frame["row"]))
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(8.5, 4.5), dpi=120)
        for row, color in zip(rows, _palette(len(rows))):
            part = frame[frame["row"] == row].sort_values("index")
            ax.plot(part["index"], part["sparsity_pct"], marker="o", markersize=3,
                    linewidth=1.3, color=color, label=row)
        names = frame.drop_duplicates("index").sort_values("index")
        ax.set_xticks(list(names["index"]))
        ax.set_xticklabels(list(names["layer"]), rotation=90, fontsize=6)
        ax.set_ylim(-2, 102)
        ax.set_xlabel("prunable layer")
        ax.set_ylabel("sparsity of the layer (%)")
        ax.set_title(title)
        if rows:
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
        fig.tight_layout()
    return fig


def save(fig: "Figure", path: str | Path) -> Path:
    """PNG written atomically beside the report; the figure is closed (frees its memory)."""
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(Path(path), buf.getvalue())
    return Path(path)
