"""The EPSD family (methods/self_distillation.py) and its pruning-at-init scorer
(bench/saliency.py)."""
import math

import pytest
import torch
from torch import nn

import methods.self_distillation as sd
from bench.cache import PhaseCache
from bench.cell import CellContext, cached_dataset, run_cell
from bench.config import RunConfig
from bench.data import Batch
from bench.masks import MASK_BUFFER, global_topk_mask, keep_count, prunable_modules
from bench.models import build_model
from bench.saliency import meta_gradient_scores, normalize_by_sum
from bench.store import ResultStore
from bench.trainer import Hook, Phase, Trainer, ce_objective

SIX = ("cskd-simple", "cskd-epsd", "pskd-simple", "pskd-epsd", "dlb-simple", "dlb-epsd")
RECIPES = {"cskd": sd.cskd_recipe, "pskd": sd.pskd_recipe, "dlb": sd.dlb_recipe}


@pytest.fixture(scope="module")
def data():
    return cached_dataset("synthetic", None, False)


def make_ctx(data, tmp_path, method, **fields):
    cfg = RunConfig(method=method, dataset="synthetic", model="smallcnn", **fields)
    trainer = Trainer(data, seed=cfg.seed, progress=False)
    return CellContext(cfg, data, trainer, PhaseCache(tmp_path / "cache"), tmp_path / "work")


class Spy(Hook):
    """Records what the trainer saw at every step."""

    def __init__(self):
        self.steps = []  # (epoch, idx, labels, logits)

    def after_step(self, state):
        self.steps.append((state.epoch, state.batch.idx.clone(), state.batch.y.clone(),
                           state.logits.detach().clone()))


# --- CS-KD ---------------------------------------------------------------------------------


def test_cskd_pairs_share_labels_and_cover_every_anchor(data):
    labels = data.train.labels
    sampler = sd.ClassPairSampler(labels, 32)
    batches = sampler(0, torch.Generator().manual_seed(0))
    assert len(batches) == math.ceil(len(labels) / 16)
    anchors = []
    for b in batches:
        assert len(b) == 32
        a, p = b[:16], b[16:]
        assert torch.equal(labels[a], labels[p])
        assert (a != p).all()  # every synthetic class has many members: never the anchor itself
        anchors.append(a)
    assert set(torch.cat(anchors).tolist()) == set(range(len(labels)))


def test_cskd_pairs_through_the_loader_and_a_class_of_one():
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    sampler = sd.ClassPairSampler(labels, 4)
    for seed in range(5):
        for b in sampler(0, torch.Generator().manual_seed(seed)):
            a, p = b[:2], b[2:]
            assert torch.equal(labels[a], labels[p])
            assert all(x == y for x, y in zip(a.tolist(), p.tolist()) if x == 3)  # alone: itself
            assert all(x != y for x, y in zip(a.tolist(), p.tolist()) if x != 3)


def test_cskd_batches_from_the_device_loader_pair_labels(data):
    sampler = sd.ClassPairSampler(data.train.labels, 32)
    loader = Trainer(data, progress=False).loader(data.train, 16, train=True, sampler=sampler)
    batches = list(loader)
    assert len(batches) == len(loader)  # the schedule's steps per epoch match the sampler
    for batch in batches:
        assert torch.equal(batch.y[:16], batch.y[16:])


# --- PS-KD ---------------------------------------------------------------------------------


class TableWatch(Hook):
    def __init__(self, objective):
        self.objective, self.at_start, self.unchanged_within_epoch = objective, [], True

    def on_epoch_start(self, state):
        self.at_start.append(self.objective.table.clone())

    def after_step(self, state):
        self.unchanged_within_epoch &= torch.equal(self.objective.table, self.at_start[-1])


def test_pskd_table_updates_once_per_epoch_with_last_epoch_predictions(data):
    trainer = Trainer(data, progress=False)
    model = build_model("smallcnn", 4, 3, 8)
    objective = sd.ProgressiveSelfKD(trainer.data.train.labels, 4, alpha_T=0.8)
    watch, spy = TableWatch(objective), Spy()
    trainer.fit(model, Phase("p", 3, batch_size=32), objective, [watch, spy])
    assert watch.unchanged_within_epoch
    assert torch.equal(watch.at_start[0], torch.nn.functional.one_hot(data.train.labels, 4).float())
    assert objective.alpha_history == pytest.approx([0.8 / 3, 0.8 * 2 / 3, 0.8])
    for epoch in range(3):  # the table after epoch e holds epoch e's softmax for the samples seen
        after = watch.at_start[epoch + 1] if epoch < 2 else objective.table
        for e, idx, _, logits in spy.steps:
            if e == epoch:
                assert torch.allclose(after[idx], torch.softmax(logits, 1))
        seen = torch.cat([idx for e, idx, _, _ in spy.steps if e == epoch])
        unseen = torch.ones(len(after), dtype=torch.bool)
        unseen[seen] = False  # the loader drops a ragged last batch: those keep the old entry
        before = watch.at_start[epoch]
        assert torch.equal(after[unseen], before[unseen])


def test_pskd_targets_read_the_previous_epoch(data, monkeypatch):
    used = []
    real = sd.pskd_loss
    monkeypatch.setattr(sd, "pskd_loss", lambda z, y, prev, a: used.append((prev.clone(), a))
                        or real(z, y, prev, a))
    trainer = Trainer(data, progress=False)
    objective = sd.ProgressiveSelfKD(trainer.data.train.labels, 4, alpha_T=0.5)
    spy = Spy()
    trainer.fit(build_model("smallcnn", 4, 3, 8), Phase("p", 2, batch_size=32), objective, [spy])
    last = {}
    for e, idx, _, logits in spy.steps:
        if e == 0:
            last.update(zip(idx.tolist(), torch.softmax(logits, 1)))
    for (e, idx, y, _), (prev, alpha) in zip(spy.steps, used):
        if e == 0:
            assert torch.equal(prev, torch.nn.functional.one_hot(y, 4).float())
            assert alpha == pytest.approx(0.25)
        else:
            assert alpha == pytest.approx(0.5)
            for i, row in zip(idx.tolist(), prev):
                assert torch.allclose(row, last[i])


def test_pskd_table_survives_a_resumed_phase(data, tmp_path):
    class StopAt(Hook):
        def on_epoch_start(self, state):
            if state.epoch == 1:
                raise KeyboardInterrupt

    trainer, ckpt = Trainer(data, progress=False), tmp_path / "p.pt"
    first = sd.ProgressiveSelfKD(trainer.data.train.labels, 4)
    model = build_model("smallcnn", 4, 3, 8)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(model, Phase("p", 2, batch_size=32), first, [StopAt()], checkpoint=ckpt)
    second = sd.ProgressiveSelfKD(trainer.data.train.labels, 4)
    watch = TableWatch(second)
    trainer.fit(build_model("smallcnn", 4, 3, 8), Phase("p", 2, batch_size=32), second, [watch],
                checkpoint=ckpt)
    assert torch.equal(watch.at_start[0], first.table)
    assert second.alpha_history == pytest.approx([0.8])


# --- DLB -----------------------------------------------------------------------------------


def test_dlb_sampler_repeats_the_previous_fresh_half():
    batches = sd.LastBatchSampler(100, 32)(0, torch.Generator().manual_seed(0))
    assert len(batches) == math.ceil(100 / 16) and len(batches[0]) == 16
    for prev, cur in zip(batches, batches[1:]):
        assert len(cur) == 32 and torch.equal(cur[16:], prev[:16])
    assert set(torch.cat([b[:16] for b in batches]).tolist()) == set(range(100))


def test_dlb_soft_targets_are_the_previous_steps_logits(data, monkeypatch):
    targets = []
    real = sd.dlb_loss
    monkeypatch.setattr(sd, "dlb_loss", lambda z, y, prev, **kw: targets.append(prev.clone())
                        or real(z, y, prev, **kw))
    trainer = Trainer(data, progress=False)
    sampler = sd.LastBatchSampler(len(data.train), 32)
    objective = sd.LastBatchSelfKD(16)
    spy = Spy()
    trainer.fit(build_model("smallcnn", 4, 3, 8), Phase("p", 2, batch_size=16), objective,
                [spy], sampler=sampler)
    steps_per_epoch = math.ceil(len(data.train) / 16)
    assert len(spy.steps) == 2 * steps_per_epoch
    assert len(targets) == 2 * (steps_per_epoch - 1)  # the first step of an epoch is plain CE
    used = iter(targets)
    for (e0, idx0, _, z0), (e1, idx1, _, z1) in zip(spy.steps, spy.steps[1:]):
        if e1 != e0:
            assert len(idx1) == 16  # a new epoch starts the chain again
            continue
        assert torch.equal(idx1[16:], idx0[:16])
        assert torch.equal(next(used), z0[:16])


# --- the pruning-at-initialisation scorer -----------------------------------------------------


def tiny_batches(n, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [Batch(torch.randn(size, 3, 8, 8, generator=g),
                  torch.randint(0, 4, (size,), generator=g), torch.arange(size)) for _ in range(n)]


def test_scoring_leaves_the_model_untouched():
    model = build_model("smallcnn", 4, 3, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    meta_gradient_scores(model, ce_objective, tiny_batches(4))
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats included
    assert not model.training
    assert all(p.grad is None for p in model.parameters())


def test_zero_inner_steps_is_weight_times_gradient():
    torch.manual_seed(0)
    model = build_model("smallcnn", 4, 3, 8)
    (batch,) = tiny_batches(1)
    scores = meta_gradient_scores(model, ce_objective, [batch])
    loss, _ = ce_objective(model.train(), batch)
    loss.backward()
    for name, module in prunable_modules(model).items():
        assert torch.allclose(scores[name], (module.weight * module.weight.grad).abs(), atol=1e-7)


def test_meta_gradient_matches_finite_differences_through_the_inner_steps():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    batches = [Batch(torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64),
                     torch.arange(5)) for _ in range(3)]

    def mse(forward, batch):
        out = forward(batch.x)
        return ((out - batch.y) ** 2).mean(), out

    lr, mom = 0.3, 0.9
    scores = meta_gradient_scores(model, mse, batches, lr=lr, momentum=mom)

    def unrolled(mask):  # the same trajectory written out, without any graph to m
        params = {k: p.detach().clone() for k, p in model.named_parameters()}
        params["0.weight"] = params["0.weight"] * mask
        vel = {}
        for batch in batches[:-1]:
            ps = {k: v.requires_grad_(True) for k, v in params.items()}
            loss, _ = mse(lambda x: torch.func.functional_call(model, ps, (x,)), batch)
            grads = dict(zip(ps, torch.autograd.grad(loss, list(ps.values()))))
            for k in params:
                vel[k] = grads[k] if k not in vel else mom * vel[k] + grads[k]
                params[k] = (ps[k] - lr * vel[k]).detach()
        loss, _ = mse(lambda x: torch.func.functional_call(model, params, (x,)), batches[-1])
        return loss.item()

    eps = 1e-6
    for i, j in [(0, 0), (1, 2), (3, 1)]:
        plus, minus = torch.ones(4, 3, dtype=torch.float64), torch.ones(4, 3, dtype=torch.float64)
        plus[i, j] += eps
        minus[i, j] -= eps
        fd = (unrolled(plus) - unrolled(minus)) / (2 * eps)
        assert scores["0"][i, j].item() == pytest.approx(abs(fd), rel=1e-5, abs=1e-9)


def test_normalize_by_sum_keeps_the_ranking():
    scores = {"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([[2.0, 4.0]])}
    normed = normalize_by_sum(scores)
    assert sum(s.sum() for s in normed.values()).item() == pytest.approx(1.0)
    assert torch.equal(global_topk_mask(scores, 0.5)[0]["b"], global_topk_mask(normed, 0.5)[0]["b"])


@pytest.mark.parametrize("family", ["cskd", "pskd", "dlb"])
def test_epsd_and_simple_masks_differ_on_the_same_seed(data, tmp_path, family):
    masks = {}
    for criterion in sd.CRITERIA:
        ctx = make_ctx(data, tmp_path, f"{family}-{criterion}", batch_size=32, sparsity=0.9)
        model = ctx.make_model()
        scores = sd.pai_scores(ctx, model, criterion, RECIPES[family])
        assert all(torch.isfinite(s).all() for s in scores.values())
        masks[criterion], _ = global_topk_mask(scores, 0.9)
        total = sum(m.numel() for m in masks[criterion].values())
        assert sum(int(m.sum()) for m in masks[criterion].values()) == keep_count(total, 0.9)
    assert any(not torch.equal(masks["simple"][n], masks["epsd"][n]) for n in masks["simple"])


def test_simple_scores_do_not_depend_on_the_family(data, tmp_path):
    scores = [sd.pai_scores(make_ctx(data, tmp_path, f"{f}-simple", batch_size=32),
                            make_ctx(data, tmp_path, f"{f}-simple").make_model(), "simple",
                            RECIPES[f]) for f in ("cskd", "dlb")]
    assert all(torch.equal(scores[0][n], scores[1][n]) for n in scores[0])


# --- end to end: each method through run_cell ------------------------------------------------


@pytest.mark.parametrize("method", SIX)
def test_each_method_runs_a_cell_with_the_exact_count(tmp_path, tiny, method):
    store = ResultStore(tmp_path)
    config = RunConfig(method=method, sparsity=0.9, **tiny)
    record = run_cell(config, store)
    assert record["status"] == "ok", record.get("error")
    sp = record["sparsity"]
    assert sp["prunable_kept"] == keep_count(sp["prunable_total"], 0.9)
    assert {"score", "prune", "sparse"} <= set(record["phases"])
    assert all(record["phases"][p]["seconds"] > 0 for p in ("score", "prune", "sparse"))
    assert record["extra"]["epsd"]["criterion"] == method.split("-")[1]
    state = torch.load(store.checkpoint_path(config.id), weights_only=False)["state_dict"]
    kept = 0
    for key, mask in state.items():
        if key.endswith("." + MASK_BUFFER):
            weight = state[key[: -len(MASK_BUFFER)] + "weight"]
            assert (weight[~mask] == 0).all()
            kept += int(mask.sum())
    assert kept == sp["prunable_kept"]


def test_options_are_validated_and_named_in_the_label():
    from bench.registry import UsageError

    cfg = RunConfig(method="dlb-epsd", options=(("tau", 2), ("k", 1)))
    assert cfg.label == "dlb-epsd[k=1,tau=2.0]"
    with pytest.raises(UsageError):
        RunConfig(method="pskd-simple", options=(("alpha_T", 1.5),))
    with pytest.raises(UsageError):
        RunConfig(method="cskd-simple", options=(("tau", 3.0),))
