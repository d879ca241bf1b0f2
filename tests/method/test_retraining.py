"""The field's retraining baselines (bench/method/retraining.py): each tested on what makes it that
method — the replayed schedule is the dense schedule's tail, the rewound weights are the dense
weights after epoch T - t, reinit shares no weight with the trained network — and the conv-only
prunable set."""
import math

import pytest
import torch

from bench.catalog import METHODS
from bench.exec.cell import RunOptions, make_context, run_cell
from bench.masks import (MASK_BUFFER, by_module_name, get_mask, global_topk_mask,
                         magnitude_scores, prunable_modules, prunable_weights)
from bench.method.retraining import (Snapshots, final_lr, retraining_phase, rewind_epoch)
from bench.plan.grid import make_config
from bench.registry import UsageError
from bench.store import ResultStore
from bench.train.trainer import Hook, Phase

RENDA = dict(dataset="digits", dense_epochs=182, schedule="step", milestones=(91, 136), lr=0.1)


def lrs(phase: Phase, steps_per_epoch: int) -> list[float]:
    return [phase.lr * phase.lr_factor(s, steps_per_epoch)
            for s in range(phase.epochs * steps_per_epoch)]


@pytest.mark.parametrize("schedule", ["step", "cosine"])
@pytest.mark.parametrize("t", [10, 50, 90, 182])
def test_lr_rewind_replays_exactly_the_dense_schedules_last_t_epochs(schedule, t):
    extra = {"milestones": (91, 136)} if schedule == "step" else {"milestones": ()}
    cfg = make_config(method="magnitude", **{**RENDA, "schedule": schedule, **extra},
                      sparse_epochs=t, options={"retraining": "lr-rewind"})
    dense = Phase.from_config("dense", 182, cfg)
    for mode in ("lr-rewind", "weight-rewind"):
        phase = retraining_phase(cfg, "finetune", mode)
        assert phase.epochs == t
        assert lrs(phase, 3) == lrs(dense, 3)[(182 - t) * 3:]


def test_the_182_epoch_step_schedule_drops_at_epochs_91_and_136():
    cfg = make_config(method="magnitude", **RENDA)
    per_epoch = lrs(Phase.from_config("dense", 182, cfg), 1)
    assert per_epoch[90] == pytest.approx(0.1) and per_epoch[91] == pytest.approx(0.01)
    assert per_epoch[135] == pytest.approx(0.01) and per_epoch[136] == pytest.approx(0.001)


def test_finetune_holds_the_dense_schedules_final_lr():
    cfg = make_config(method="magnitude", **RENDA, sparse_epochs=50,
                      options={"retraining": "finetune"})
    phase = retraining_phase(cfg, "finetune", "finetune")
    assert final_lr(cfg) == pytest.approx(0.001)
    assert len(set(lrs(phase, 4))) == 1 and lrs(phase, 4)[0] == pytest.approx(0.001)
    cosine = cfg.replace(schedule="cosine", milestones=())
    assert final_lr(cosine) == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 181 / 182)))


def test_restart_and_reinit_train_a_fresh_schedule_of_t_epochs():
    cfg = make_config(method="magnitude", **RENDA, sparse_epochs=50)
    for mode in ("restart", "reinit"):
        phase = retraining_phase(cfg, "finetune", mode)
        assert phase.start_epoch == 0 and phase.schedule_epochs == 0 and phase.epochs == 50
        assert lrs(phase, 1)[0] == pytest.approx(0.1) and lrs(phase, 1)[-1] == pytest.approx(0.001)


def test_snapshots_are_the_weights_after_that_epoch_and_survive_a_resume(tmp_path):
    cfg = make_config(method="magnitude", dataset="digits", model="smallcnn", dense_epochs=4)
    store = ResultStore(tmp_path)
    ctx = make_context(cfg, store, RunOptions(progress=False), torch.device("cpu"))
    start = ctx.make_model().state_dict()
    a, b = ctx.make_model(), ctx.make_model()
    snaps = Snapshots([0, 2])
    ctx.trainer.fit(a, Phase("dense", 4, schedule="cosine"), hooks=[snaps])
    # the first two epochs of the same schedule, run on their own
    ctx.trainer.fit(b, Phase("dense", 2, schedule="cosine", schedule_epochs=4))
    assert set(snaps.saved) == {0, 2}
    for k, v in b.state_dict().items():
        assert torch.equal(snaps.saved[2][k], v), k
        assert torch.equal(snaps.saved[0][k], start[k]), k
    # killed after epoch 3: the resumed phase still hands out the snapshot of epoch 2
    c, resumed = ctx.make_model(), Snapshots([0, 2])
    ckpt = tmp_path / "dense.pt"

    class Kill(Hook):
        def on_epoch_done(self, state, result):
            if state.epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ctx.trainer.fit(c, Phase("dense", 4, schedule="cosine"), hooks=[Snapshots([0, 2]), Kill()],
                        checkpoint=ckpt)
    ctx.trainer.fit(c, Phase("dense", 4, schedule="cosine"), hooks=[resumed, Hook()],
                    checkpoint=ckpt)
    assert set(resumed.saved) == {0, 2}
    for k, v in snaps.saved[2].items():
        assert torch.equal(resumed.saved[2][k], v), k


class FirstWeights(Hook):
    """The weights each phase starts from, by phase name (a trainer observer)."""

    def __init__(self):
        self.at_start = {}

    def on_phase_start(self, state):
        self.at_start.setdefault(state.phase.name, {
            k: v.detach().clone() for k, v in state.model.state_dict().items()})


def _run(tmp_path, retraining, **fields):
    cfg = make_config(method="magnitude", dataset="digits", model="smallcnn", dense_epochs=4,
                      sparse_epochs=2, snapshot_epochs=(2,), sparsity=0.8,
                      options={"retraining": retraining}, **fields)
    store = ResultStore(tmp_path)
    seen = FirstWeights()
    ctx = make_context(cfg, store, RunOptions(progress=False), torch.device("cpu"),
                       observers=(seen,))
    model = METHODS.get("magnitude").run(ctx)
    return cfg, ctx, model, seen


def _dense_and_point(ctx):
    dense = ctx.dense_model()
    return dense.state_dict(), ctx.rewind_points


@pytest.mark.slow
def test_weight_rewind_starts_from_the_dense_weights_after_epoch_T_minus_t(tmp_path):
    cfg, ctx, model, seen = _run(tmp_path, "weight-rewind")
    assert rewind_epoch(cfg) == 2
    dense, points = _dense_and_point(ctx)
    start, mask = seen.at_start["finetune"], get_mask(model)
    assert ctx.extra["retraining"]["rewind_epoch"] == 2
    for name, keep in mask.items():
        w = start[f"{name}.weight"]
        assert torch.equal(w[keep], points[2][f"{name}.weight"][keep]), name
        assert not w[~keep].any(), name
        assert not torch.equal(w[keep], dense[f"{name}.weight"][keep]), name  # not the final
    for k, v in points[2].items():  # biases and batch-norm buffers rewound too
        if not k.endswith(".weight") or k.replace(".weight", "") not in mask:
            assert torch.equal(start[k], v), k
    # the mask is the one pruning the *final* dense weights chose
    want, _ = global_topk_mask(magnitude_scores_of(ctx, dense), cfg.sparsity)
    for name in mask:
        assert torch.equal(mask[name], want[name]), name


def magnitude_scores_of(ctx, state):
    net = ctx.make_model()
    net.load_state_dict(state)
    return by_module_name(magnitude_scores(net), prunable_modules(net), "scores")


@pytest.mark.slow
def test_reinit_keeps_the_mask_and_shares_no_weight_with_the_trained_network(tmp_path):
    cfg, ctx, model, seen = _run(tmp_path, "reinit")
    dense, _ = _dense_and_point(ctx)
    start, mask = seen.at_start["finetune"], get_mask(model)
    fresh = ctx.make_model(seed_offset=2).state_dict()
    kept_total = 0
    for name, keep in mask.items():
        w = start[f"{name}.weight"]
        trained = dense[f"{name}.weight"]
        assert not (w[keep] == trained[keep]).any(), name  # no kept weight carried over
        assert torch.equal(w[keep], fresh[f"{name}.weight"][keep]), name  # re-drawn
        assert not w[~keep].any(), name
        kept_total += int(keep.sum())
    assert kept_total == sum(int(m.sum()) for m in get_mask(model).values())
    assert ctx.extra["retraining"]["mode"] == "reinit"


@pytest.mark.slow
def test_lr_rewind_and_finetune_start_from_the_pruned_trained_weights(tmp_path):
    for mode in ("lr-rewind", "finetune"):
        _, ctx, model, seen = _run(tmp_path / mode, mode)
        dense, _ = _dense_and_point(ctx)
        start, mask = seen.at_start["finetune"], get_mask(model)
        for name, keep in mask.items():
            assert torch.equal(start[f"{name}.weight"][keep], dense[f"{name}.weight"][keep])


def test_weight_rewind_needs_its_rewind_point_and_colt_takes_no_retraining():
    with pytest.raises(UsageError, match="add 5 to snapshot_epochs"):
        make_config(method="magnitude", dense_epochs=10, sparse_epochs=5,
                    options={"retraining": "weight-rewind"})
    with pytest.raises(UsageError, match="sparse_epochs=20 epochs; it must be <= dense_epochs=10"):
        make_config(method="tg-oneshot", dense_epochs=10, sparse_epochs=20,
                    options={"retraining": "lr-rewind"})
    with pytest.raises(UsageError, match="retraining is for one-shot methods.*'colt' is not one"):
        make_config(method="colt", options={"retraining": "lr-rewind"})
    with pytest.raises(UsageError, match="milestones=.*add schedule=step"):
        make_config(method="magnitude", milestones="5,8")
    assert make_config(method="magnitude", schedule="step", milestones="8,5").milestones == (5, 8)


def test_new_fields_at_their_defaults_keep_every_id():
    plain = make_config(method="magnitude", dataset="digits")
    assert plain.id == make_config(method="magnitude", dataset="digits", prunable="all",
                                   milestones=(), snapshot_epochs=(),
                                   options={"retraining": "restart"}).id
    assert plain.label == "magnitude"
    conv = make_config(method="magnitude", dataset="digits", prunable="conv")
    assert conv.id != plain.id and conv.canonical()["prunable"] == "conv"


@pytest.mark.slow
def test_conv_only_prunes_and_counts_the_convs_and_says_so(tmp_path):
    cfg = make_config(method="magnitude", dataset="digits", model="smallcnn", dense_epochs=1,
                      sparse_epochs=1, sparsity=0.9, prunable="conv")
    record = run_cell(cfg, ResultStore(tmp_path), RunOptions(progress=False))
    assert record["status"] == "ok", record.get("error")
    sp = record["sparsity"]
    assert sp["prunable_set"] == "conv"
    ctx = make_context(cfg, ResultStore(tmp_path), RunOptions(progress=False), torch.device("cpu"))
    net = ctx.make_model()
    convs = {n for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)}
    linears = {n for n, m in net.named_modules() if isinstance(m, torch.nn.Linear)}
    assert set(sp["layers"]) == convs and linears
    total = sum(t for _, t in sp["layers"].values())
    assert sp["prunable_kept"] == round(0.1 * total)
    saved = torch.load(tmp_path / "checkpoints" / f"{cfg.id}.pt", weights_only=False)["state_dict"]
    for name in linears:  # never pruned: no mask, no zeroed weight
        assert f"{name}.{MASK_BUFFER}" not in saved
        assert bool((saved[f"{name}.weight"] != 0).all())
    everything = make_config(method="magnitude", dataset="digits", model="smallcnn")
    assert set(prunable_weights(ctx.make_model())) == convs
    assert everything.prunable == "all"


@pytest.mark.e2e
def test_a_scaled_down_renda2020_run_reports_the_reference_rows_beside_ours(tmp_path, capsys):
    """The renda2020 grid's wiring on test-made CIFAR-10 files: resnet20, lr rewinding at the
    reference's 10-epoch budget and the dense network, on a 12-epoch copy of the step schedule."""
    from bench import run
    from bench.report import command as report
    from tests.conftest import write_cifar10

    write_cifar10(tmp_path / "data", n_per_batch=24, n_test=40)
    common = ["--grid", "renda2020", "--results", tmp_path / "store", "--methods", "magnitude:retraining=lr-rewind,dense",
              "--seeds", "0", "--set", "model=resnet20", "--set", "dense_epochs=12",
              "--set", "sparse_epochs=10", "--set", "milestones=6,9",
              "--set", "snapshot_epochs=2"]
    assert run.main([*map(str, common), "--data-root", str(tmp_path / "data"),
                     "--no-progress"]) == 0
    out = tmp_path / "report"
    assert report.main([*map(str, common), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    section = text[text.index("## Against published references"):]
    rows = (out / "references_vs_ours.csv").read_text()
    assert "Renda, Frankle & Carbin" in rows
    assert "84.51 ± 0.70 (n=3)" in section  # resnet20, lr rewinding, 10 epochs, density 0.1074
    assert "91.71 ± 0.23 (n=246)" in section  # the dense resnet20
    assert "dense epochs: 182 (ours: 12)" in section
    assert "8,000 of the 10,000 CIFAR-10 test images" in section
    assert "84.52" not in section  # weight rewinding's row: another retraining, not matched
