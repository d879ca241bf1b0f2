"""The controls of issue 23 (docs/methods.md, Controls) and the metrics beyond top-1.

Pure parts (allocations, ERK, shuffling, metrics) on small tensors with numbers computed here
independently; the methods end to end on the synthetic dataset and smallcnn (about a second per
cell); the report on hand-written records.
"""
from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from bench import catalog
from bench.exec.cell import RunOptions, run_cell
from bench.config import RunConfig
from bench.plan.estimate import cell_phases, estimate_gpu_hours
from bench.exec.locked import pending
from bench.masks import get_mask, keep_count, magnitude_scores, prunable_weights, prune_model
from bench.masks.allocation import (erk_counts, erk_densities, largest_remainder,
                                    per_layer_topk_mask, shuffle_within_layers, uniform_counts)
from bench.method import method_for_label
from bench.train.metrics import (evaluation_metrics, expected_calibration_error,
                           negative_log_likelihood, topk_accuracy)
from bench.train.models import build_model
from bench.registry import UsageError
from bench.store import ResultStore
from methods import controls
from methods.small_dense import check_width, choose_width

OPTS = RunOptions(progress=False)


def cfg(tiny, method="magnitude", **kw):
    return RunConfig(method=method, **{**tiny, **kw})


# --- labels and options -----------------------------------------------------------------------


def test_labels_and_ids_of_existing_cells_do_not_change():
    assert RunConfig(method="magnitude").label == "magnitude"
    assert RunConfig(method="magnitude", options=(("retrain", "ft"),)).id == \
        RunConfig(method="magnitude").id  # the default is left out of the id
    assert RunConfig(method="magnitude", options=(("retrain", "kd"),)).label == "magnitude-kd"
    assert RunConfig(method="random", options=(("retrain", "kd"),)).label == "random-kd"
    assert RunConfig(method="tg-oneshot").label == "tg-oneshot-kd"
    assert method_for_label("tg-oneshot-ft") == ("tg-oneshot", {"retrain": "ft"})
    assert method_for_label("tg-oneshot") == ("tg-oneshot", {})
    assert method_for_label("magnitude-kd") == ("magnitude", {"retrain": "kd"})
    with pytest.raises(UsageError, match="'nope' is neither a method nor a row label"):
        RunConfig(method="random", options=(("match", "nope"),))
    with pytest.raises(UsageError, match="allocation='erdos'.*valid: global, uniform, erk"):
        RunConfig(method="magnitude", options=(("allocation", "erdos"),))


# --- allocations --------------------------------------------------------------------------------


def test_largest_remainder_is_exact_and_capped():
    counts = largest_remainder({"a": 2.5, "b": 2.5, "c": 0.9}, {"a": 10, "b": 10, "c": 1}, 6)
    assert counts == {"a": 3, "b": 2, "c": 1}  # remainders .5, .5, .9: c first, then a (earlier)
    assert sum(uniform_counts({"a": 7, "b": 13, "c": 101}, 0.9).values()) == keep_count(121, 0.9)
    capped = largest_remainder({"a": 5.0, "b": 0.2}, {"a": 3, "b": 10}, 5)
    assert capped == {"a": 3, "b": 2}


def test_erk_densities_follow_the_formula():
    shapes = {"conv1": (16, 3, 3, 3), "conv2": (32, 16, 3, 3), "fc": (10, 32)}
    sizes = {n: math.prod(s) for n, s in shapes.items()}  # 432, 4608, 320
    s = 0.9
    # by hand: raw factors (16+3+3+3)/432, (32+16+3+3)/4608, (10+32)/320; ε from the budget
    raw = {"conv1": 25 / 432, "conv2": 54 / 4608, "fc": 42 / 320}
    eps = 0.1 * 5360 / (25 + 54 + 42)
    expected = {n: eps * raw[n] for n in shapes}
    assert all(v <= 1 for v in expected.values())
    got = erk_densities(shapes, s)
    assert got == pytest.approx(expected)
    counts = erk_counts(shapes, s)
    assert sum(counts.values()) == keep_count(5360, s)
    assert all(abs(counts[n] - expected[n] * sizes[n]) < 1 for n in shapes)


def test_erk_makes_a_layer_dense_when_its_density_would_pass_one():
    shapes = {"tiny": (2, 1, 1, 1), "big": (64, 64, 3, 3)}
    got = erk_densities(shapes, 0.5)
    assert got["tiny"] == 1.0  # ε·(2+1+1+1)/2 > 1 at this budget
    assert got["big"] == pytest.approx((0.5 * (2 + 36864) - 2) / 36864)
    assert sum(erk_counts(shapes, 0.5).values()) == keep_count(36866, 0.5)


# --- masks of the controls -----------------------------------------------------------------------


def _model():
    torch.manual_seed(0)
    return build_model("smallcnn", 4, 3, 8)


def test_per_layer_topk_and_shuffle_keep_counts_and_move_positions():
    model = _model()
    scores = magnitude_scores(model)
    counts = {n: max(1, w.numel() // (3 + i)) for i, (n, w) in enumerate(scores.items())}
    mask = per_layer_topk_mask(scores, counts)
    assert mask.layer_counts() == {n: (counts[n], scores[n].numel()) for n in scores}
    for n in scores:  # the kept ones are the layer's largest |w|
        assert scores[n][mask[n]].min() >= scores[n][~mask[n]].max()
    shuffled = shuffle_within_layers(mask, torch.Generator().manual_seed(0))
    assert shuffled.layer_counts() == mask.layer_counts()
    assert all(not torch.equal(shuffled[n], mask[n]) for n in mask)


class FakeContext(SimpleNamespace):
    """What methods.controls.prune uses of a cell: the config, a model factory, ctx.prune."""

    def make_model(self, seed_offset=0):
        torch.manual_seed(100 + seed_offset)
        return build_model("smallcnn", 4, 3, 8)

    def prune(self, model, scores):
        prune_model(model, scores, self.config.sparsity)


def _ctx(sparsity=0.9):
    return FakeContext(config=SimpleNamespace(sparsity=sparsity, seed=0), extra={})


def test_reinit_keeps_the_mask_and_changes_the_weights():
    ctx, reference, model = _ctx(), _model(), _model()
    ctx.prune(reference, magnitude_scores(reference))
    out = controls.prune(ctx, model, magnitude_scores(model), mask_control="reinit")
    assert get_mask(out) == get_mask(reference)
    for n, w in prunable_weights(out).items():
        kept = get_mask(out)[n]
        assert not torch.equal(w[kept], prunable_weights(reference)[n][kept])
        assert int((w != 0).sum()) == int(kept.sum())


def test_shuffle_keeps_counts_moves_positions_and_keeps_the_dense_weights():
    ctx, reference, model = _ctx(), _model(), _model()
    dense = {n: w.detach().clone() for n, w in prunable_weights(model).items()}
    ctx.prune(reference, magnitude_scores(reference))
    out = controls.prune(ctx, model, magnitude_scores(model), mask_control="shuffle")
    mask, ref = get_mask(out), get_mask(reference)
    assert mask.layer_counts() == ref.layer_counts()
    assert mask.kept == keep_count(mask.total, 0.9)
    assert any(not torch.equal(mask[n], ref[n]) for n in mask)
    for n, w in prunable_weights(out).items():  # the survivors carry their trained values
        assert torch.equal(w[mask[n]], dense[n][mask[n]])


@pytest.mark.parametrize("allocation", ["uniform", "erk"])
def test_allocations_keep_the_exact_count(allocation):
    ctx, model = _ctx(0.95), _model()
    out = controls.prune(ctx, model, magnitude_scores(model), allocation=allocation)
    mask = get_mask(out)
    assert mask.kept == keep_count(mask.total, 0.95)
    if allocation == "uniform":
        for n, (kept, total) in mask.layer_counts().items():
            assert abs(kept - 0.05 * total) <= 1


def _erk_reference(shapes, sparsity):
    """ERK kept counts worked out here from the shapes alone (Evci et al. 2020): density_l =
    ε·Σ(shape_l)/Π(shape_l), ε set so that (1 − s)·N weights are kept; a layer whose density would
    pass 1 is kept dense and ε is solved again over the rest. Counts: floors of density·size, then
    one more each for the largest fractional parts (ties: the earlier layer) up to the exact total."""
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    factor = {n: sum(s) / sizes[n] for n, s in shapes.items()}
    dense = set()
    while True:
        budget = (1 - sparsity) * sum(sizes.values()) - sum(sizes[n] for n in dense)
        eps = budget / sum(factor[n] * sizes[n] for n in shapes if n not in dense)
        newly = {n for n in shapes if n not in dense and eps * factor[n] > 1}
        if not newly:
            break
        dense |= newly
    ideal = {n: sizes[n] if n in dense else eps * factor[n] * sizes[n] for n in shapes}
    counts = {n: math.floor(ideal[n]) for n in shapes}
    names = list(shapes)
    by_remainder = sorted(names, key=lambda n: (-(ideal[n] - counts[n]), names.index(n)))
    for n in by_remainder[:keep_count(sum(sizes.values()), sparsity) - sum(counts.values())]:
        counts[n] += 1
    return counts, dense


@pytest.mark.parametrize("sparsity", [0.95, 0.8])  # the linear layer dense; it and conv1 dense
def test_erk_allocation_gives_each_layer_its_erk_count(sparsity):
    """The counts the allocation=erk control prunes to, layer by layer (not only their total)."""
    ctx, model = _ctx(sparsity), _model()
    shapes = {n: tuple(w.shape) for n, w in prunable_weights(model).items()}
    expected, dense = _erk_reference(shapes, sparsity)
    assert dense == ({"15"} if sparsity == 0.95 else {"0", "15"})  # the capping is exercised
    out = controls.prune(ctx, model, magnitude_scores(model), allocation="erk")
    layers = get_mask(out).layer_counts()
    assert {n: kept for n, (kept, _) in layers.items()} == expected
    # ERK's shape: a smaller layer is kept denser than a larger one (capped layers tie at 1)
    density = {n: kept / total for n, (kept, total) in layers.items()}
    by_size = sorted(layers, key=lambda n: layers[n][1])
    for small, large in zip(by_size, by_size[1:]):
        assert density[small] > density[large] or density[small] == density[large] == 1.0, \
            (small, large, density)
    assert density[by_size[0]] == 1.0 and density[by_size[-1]] < 1 - sparsity  # not uniform


# --- the methods end to end ---------------------------------------------------------------------


@pytest.mark.e2e
def test_layer_matched_random_copies_the_counts_running_the_matched_cell_first(tiny, tmp_path):
    store = ResultStore(tmp_path)
    matched = cfg(tiny, "random", sparsity=0.9, options=(("match", "tg-oneshot-ft"),))
    target = cfg(tiny, "tg-oneshot", sparsity=0.9, options=(("retrain", "ft"),))
    assert not store.is_done(target.id)
    rec = run_cell(matched, store, OPTS)
    assert rec["status"] == "ok", rec.get("error")
    assert store.is_done(target.id)  # computed first, and kept for the grid
    theirs = store.read(target.id)["sparsity"]["layers"]
    assert rec["sparsity"]["layers"] == theirs
    assert rec["label"] == "random[match=tg-oneshot-ft]"
    # a plain random mask of the same count spreads differently
    plain = run_cell(cfg(tiny, "random", sparsity=0.9), store, OPTS)
    assert plain["sparsity"]["prunable_kept"] == rec["sparsity"]["prunable_kept"]
    assert plain["sparsity"]["layers"] != theirs


def test_matched_cells_run_after_the_others(tiny, tmp_path):
    cells = [cfg(tiny, "random", options=(("match", "magnitude"),)), cfg(tiny, "magnitude"),
             cfg(tiny, "random")]
    order = pending(cells, ResultStore(tmp_path), force=False)
    assert [c.label for c in order] == ["magnitude", "random", "random[match=magnitude]"]


@pytest.mark.e2e
def test_magnitude_kd_retrains_with_the_shared_teacher(tiny, tmp_path):
    store = ResultStore(tmp_path)
    tg = run_cell(cfg(tiny, "tg-oneshot", sparsity=0.9), store, OPTS)
    rec = run_cell(cfg(tiny, "magnitude", sparsity=0.9, options=(("retrain", "kd"),)), store,
                   OPTS)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["label"] == "magnitude-kd"
    assert rec["phases"]["teacher"]["cached"] and rec["phases"]["teacher"]["shared"]
    assert rec["phases"]["teacher"]["cache_key"] == tg["phases"]["teacher"]["cache_key"]
    assert rec["extra"]["teacher"]["test_acc"] == tg["extra"]["teacher"]["test_acc"]
    plain = run_cell(cfg(tiny, "magnitude", sparsity=0.9), store, OPTS)
    assert "teacher" not in plain["phases"]
    for r in (rec, plain):  # the metrics come with every record
        assert {"top5", "ece", "nll"} <= set(r["accuracy"])


@pytest.mark.e2e
def test_small_dense_width_and_where_none_exists(tiny, tmp_path):
    width, why = choose_width("resnet20", 0.9, 10, 3, 32)
    assert width is not None and not why
    net = build_model(f"resnet20/w{width}", 10, 3, 32)
    full = sum(w.numel() for w in prunable_weights(build_model("resnet20", 10, 3, 32)).values())
    got = sum(w.numel() for w in prunable_weights(net).values())
    assert abs(got - keep_count(full, 0.9)) <= 0.1 * keep_count(full, 0.9)
    assert "no width multiplier" in check_width(RunConfig(method="small-dense", model="smallcnn"))
    assert "no width of resnet20" in check_width(RunConfig(method="small-dense", sparsity=0.995))
    rec = run_cell(cfg(tiny, "small-dense", model="resnet20", sparsity=0.9), ResultStore(tmp_path),
                   OPTS)
    assert rec["status"] == "ok", rec.get("error")
    assert rec["sparsity"]["over"] == "width"
    spec = catalog.DATASETS.get("synthetic")
    width, _ = choose_width("resnet20", 0.9, spec.num_classes, spec.channels, spec.image_size)
    args = (spec.num_classes, spec.channels, spec.image_size)
    full = sum(w.numel() for w in prunable_weights(build_model("resnet20", *args)).values())
    got = sum(w.numel() for w in prunable_weights(build_model(f"resnet20/w{width}", *args)).values())
    assert rec["extra"]["small_dense"]["weights"] == got == rec["sparsity"]["prunable_kept"]
    assert rec["sparsity"]["prunable"] == pytest.approx(1 - got / full)
    assert rec["phases"]["train"]["epochs"] == tiny["dense_epochs"] + tiny["sparse_epochs"]


def test_estimate_costs_the_teacher_and_the_matched_cell_once():
    base = RunConfig(method="magnitude", dataset="cifar10", model="resnet18", teacher="resnet50")
    kd = base.replace(options={"retrain": "kd"})
    assert {p.name for p in cell_phases(kd)} == {"dense", "teacher", "finetune"}
    assert estimate_gpu_hours([kd]) > estimate_gpu_hours([base])
    tg = base.replace(method="tg-oneshot")
    matched = base.replace(method="random", options={"match": "tg-oneshot"})
    assert estimate_gpu_hours([tg, matched]) == pytest.approx(
        estimate_gpu_hours([matched]))  # the matched cell's phases are in it, counted once
    assert estimate_gpu_hours([matched]) > estimate_gpu_hours([tg])


# --- metrics ----------------------------------------------------------------------------------------


def test_metrics_match_a_hand_computation():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.5, 0.3, 0.2], [0.9, 0.05, 0.05],
                          [0.45, 0.3, 0.25], [0.72, 0.18, 0.1]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 2, 1])
    logits = probs.log()  # softmax gives the probabilities back
    # confidences .7 (right), .5 (wrong), .9 (right), .45 (wrong), .72 (wrong); .7 and .72 share
    # bin 10 of 15: accuracy 1/2, confidence .71
    ece = (2 * abs(0.5 - 0.71) + abs(0 - 0.5) + abs(1 - 0.9) + abs(0 - 0.45)) / 5
    assert expected_calibration_error(logits, labels) == pytest.approx(ece)
    nll = -(math.log(0.7) + math.log(0.3) + math.log(0.9) + math.log(0.25) + math.log(0.18)) / 5
    assert negative_log_likelihood(logits, labels) == pytest.approx(nll)
    assert topk_accuracy(logits, labels, 1) == pytest.approx(2 / 5)
    assert topk_accuracy(logits, labels, 2) == pytest.approx(4 / 5)  # only sample 4 misses
    assert topk_accuracy(logits, labels, 5) == 1.0  # k capped at the 3 classes
    wide = torch.zeros(3, 7)
    wide[0, :6] = torch.arange(6, 0, -1).float()  # label 5 is 6th best: outside the top 5
    wide[1, 3] = 1.0
    wide[2, 0] = 1.0
    assert topk_accuracy(wide, torch.tensor([5, 3, 0]), 5) == pytest.approx(2 / 3)
    m = evaluation_metrics(logits.float(), labels)
    assert m.top1 == pytest.approx(0.4) and m.ece == pytest.approx(ece, abs=1e-6)


def test_top1_of_the_metrics_pass_equals_the_trainer_accuracy(tiny, tmp_path):
    from bench.exec.cell import cached_dataset
    from bench.train.trainer import Trainer

    data = cached_dataset("synthetic", None, False)
    trainer = Trainer(data, "cpu", progress=False)
    model = trainer.prepare(build_model("smallcnn", data.spec.num_classes, data.spec.channels,
                                        data.spec.image_size))
    m = evaluation_metrics(trainer.logits(model, data.test), data.test.labels)
    assert m.top1 == trainer.accuracy(model, data.test)


# --- report ---------------------------------------------------------------------------------------


@pytest.mark.e2e
def test_report_shows_metrics_missing_for_old_records_and_the_layer_figure(tiny, tmp_path):
    from bench.plan.grid import Grid
    from bench.report.command import build_report

    store = ResultStore(tmp_path / "store")
    grid = Grid(name="ctl", methods=("magnitude", "random"), datasets=("synthetic",),
                sparsities=(0.9,), base={k: v for k, v in tiny.items() if k != "dataset"})
    for c in grid.cells():
        assert run_cell(c, store, OPTS)["status"] == "ok"
    old = store.read(grid.cells()[1].id)  # as written before the metrics existed
    for key in ("top5", "ece", "nll"):
        old["accuracy"].pop(key)
    store.write({k: v for k, v in old.items() if k != "sha256"})
    report = build_report(grid, grid.cells(), store, tmp_path / "out")
    text = report.markdown.split("top-5, calibration, NLL", 1)[1]
    line = next(t for t in text.splitlines() if t.startswith("| random "))
    assert "missing / missing / missing" in line
    line = next(t for t in text.splitlines() if t.startswith("| magnitude "))
    assert "missing" not in line and line.count(" / ") == 2
    fig = report.figures["layers_synthetic"]
    assert len(fig.axes[0].get_lines()) == 2  # one line per row
    layers = (tmp_path / "out" / "layers_synthetic.csv").read_text().splitlines()
    assert layers[1].split(",")[1] == "0"  # network order: the first conv first
