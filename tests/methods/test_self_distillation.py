"""The EPSD family (methods/self_distillation.py) and its pruning-at-init scorer
(bench/train/saliency.py)."""
import itertools
import math

import pytest
import torch
from torch import nn

import methods.sd_objectives as sd_objectives
import methods.self_distillation as sd
from bench.store.cache import PhaseCache
from bench.exec.cell import cached_dataset, run_cell
from bench.exec.context import CellContext
from bench.config import RunConfig
from bench.data.loader import Batch
from bench.masks import MASK_BUFFER, global_topk_mask, keep_count, prunable_modules
from bench.train.models import build_model
from bench.registry import UsageError
from bench.train.saliency import meta_gradient_scores, normalize_by_sum
from bench.store import ResultStore
from bench.train.trainer import Hook, Phase, Trainer, ce_objective

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
    sampler = sd.ClassPairSampler(labels, 16)  # 16 anchors + 16 partners per step
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
    sampler = sd.ClassPairSampler(labels, 2)
    for seed in range(5):
        for b in sampler(0, torch.Generator().manual_seed(seed)):
            a, p = b[:2], b[2:]
            assert torch.equal(labels[a], labels[p])
            assert all(x == y for x, y in zip(a.tolist(), p.tolist()) if x == 3)  # alone: itself
            assert all(x != y for x, y in zip(a.tolist(), p.tolist()) if x != 3)


def test_cskd_batches_from_the_device_loader_pair_labels(data):
    sampler = sd.ClassPairSampler(data.train.labels, 16)
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


PSKD_BATCH = 40  # 288 synthetic training samples: a ragged last batch of 8


def every_sample(data, batch_size=PSKD_BATCH):
    return sd.EverySampleSampler(len(data.train), batch_size)


@pytest.mark.slow
def test_pskd_table_updates_once_per_epoch_with_last_epoch_predictions(data, precision):
    trainer = Trainer(data, progress=False, precision=precision)
    model = build_model("smallcnn", 4, 3, 8)
    objective = sd.ProgressiveSelfKD(trainer.data.train.labels, 4, alpha_T=0.8)
    watch, spy = TableWatch(objective), Spy()
    assert len(data.train) % PSKD_BATCH != 0  # so a plain loader would drop a ragged last batch
    trainer.fit(model, Phase("p", 3, batch_size=PSKD_BATCH), objective, [watch, spy],
                sampler=every_sample(data))
    assert watch.unchanged_within_epoch
    assert torch.equal(watch.at_start[0], torch.nn.functional.one_hot(data.train.labels, 4).float())
    assert objective.alpha_history == pytest.approx([0.8 / 3, 0.8 * 2 / 3, 0.8])
    assert len(spy.steps) == 3 * math.ceil(len(data.train) / PSKD_BATCH)
    # the table outlives the step: fp32 whatever the training precision
    assert all(t.dtype == torch.float32 for t in (*watch.at_start, objective.table))
    for epoch in range(3):  # the table after epoch e holds epoch e's last softmax of every sample
        after = watch.at_start[epoch + 1] if epoch < 2 else objective.table
        latest = {}
        for e, idx, _, logits in spy.steps:
            if e == epoch:
                latest.update(zip(idx.tolist(), torch.softmax(logits.float(), 1)))
        assert sorted(latest) == list(range(len(data.train)))  # no sample skipped
        assert torch.allclose(after, torch.stack([latest[i] for i in range(len(after))]))
        assert not torch.equal(after, watch.at_start[epoch])


def test_pskd_refuses_an_epoch_that_skipped_samples(data):
    trainer = Trainer(data, progress=False)
    objective = sd.ProgressiveSelfKD(trainer.data.train.labels, 4)
    missed = len(data.train) % PSKD_BATCH  # the plain loader drops the ragged last batch
    with pytest.raises(RuntimeError, match=f"left {missed} of {len(data.train)} samples out"):
        trainer.fit(build_model("smallcnn", 4, 3, 8), Phase("p", 1, batch_size=PSKD_BATCH),
                    objective)


def test_every_sample_sampler_covers_each_sample_in_full_batches():
    batches = sd.EverySampleSampler(70, 16)(0, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [16] * 5  # ⌈70/16⌉ steps, the last filled up
    assert set(torch.cat(batches).tolist()) == set(range(70))


@pytest.mark.slow
def test_pskd_targets_read_the_previous_epoch(data, monkeypatch, precision):
    used = []
    real = sd_objectives.pskd_loss
    monkeypatch.setattr(sd_objectives, "pskd_loss",
                        lambda z, y, prev, a: used.append((prev.clone(), a)) or real(z, y, prev, a))
    trainer = Trainer(data, progress=False, precision=precision)
    objective = sd.ProgressiveSelfKD(trainer.data.train.labels, 4, alpha_T=0.5)
    spy = Spy()
    trainer.fit(build_model("smallcnn", 4, 3, 8), Phase("p", 2, batch_size=PSKD_BATCH), objective,
                [spy], sampler=every_sample(data))
    assert len(spy.steps) == 2 * math.ceil(len(data.train) / PSKD_BATCH)
    assert len(used) == len(spy.steps)  # every step went through PS-KD's loss
    last = {}
    for e, idx, _, logits in spy.steps:
        if e == 0:
            last.update(zip(idx.tolist(), torch.softmax(logits.float(), 1)))
    for (e, idx, y, _), (prev, alpha) in zip(spy.steps, used):
        assert prev.dtype == torch.float32
        if e == 0:
            assert torch.equal(prev, torch.nn.functional.one_hot(y, 4).float())
            assert alpha == pytest.approx(0.25)
        else:
            assert alpha == pytest.approx(0.5)
            for i, row in zip(idx.tolist(), prev):
                assert torch.allclose(row, last[i])


@pytest.mark.slow
def test_pskd_table_survives_a_resumed_phase(data, tmp_path, precision):
    class StopAt(Hook):
        def on_epoch_start(self, state):
            if state.epoch == 1:
                raise KeyboardInterrupt

    trainer, ckpt = Trainer(data, progress=False, precision=precision), tmp_path / "p.pt"
    first = sd.ProgressiveSelfKD(trainer.data.train.labels, 4)
    model = build_model("smallcnn", 4, 3, 8)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(model, Phase("p", 2, batch_size=PSKD_BATCH), first, [StopAt()], checkpoint=ckpt,
                    sampler=every_sample(data))
    second = sd.ProgressiveSelfKD(trainer.data.train.labels, 4)
    watch = TableWatch(second)
    trainer.fit(build_model("smallcnn", 4, 3, 8), Phase("p", 2, batch_size=PSKD_BATCH), second,
                [watch], checkpoint=ckpt, sampler=every_sample(data))
    assert torch.equal(watch.at_start[0], first.table)
    assert watch.at_start[0].dtype == torch.float32
    # the record's α_t per epoch survives the resume: both epochs, not only the one run after
    assert second.alpha_history == pytest.approx([0.4, 0.8])


# --- DLB -----------------------------------------------------------------------------------


def test_dlb_sampler_repeats_the_previous_fresh_half():
    batches = sd.LastBatchSampler(100, 16)(0, torch.Generator().manual_seed(0))
    assert len(batches) == math.ceil(100 / 16) and len(batches[0]) == 16
    for prev, cur in zip(batches, batches[1:]):
        assert len(cur) == 32 and torch.equal(cur[16:], prev[:16])
    assert set(torch.cat([b[:16] for b in batches]).tolist()) == set(range(100))


@pytest.mark.slow
def test_dlb_soft_targets_are_the_previous_steps_logits(data, monkeypatch, precision):
    targets = []
    real = sd_objectives.dlb_loss
    monkeypatch.setattr(sd_objectives, "dlb_loss", lambda z, y, prev, **kw:
                        targets.append(prev.clone()) or real(z, y, prev, **kw))
    trainer = Trainer(data, progress=False, precision=precision)
    sampler = sd.LastBatchSampler(len(data.train), 16)
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
        target = next(used)
        assert target.dtype == torch.float32  # soft targets outlive the step: fp32
        assert torch.equal(target, z0[:16].float())


@pytest.mark.parametrize("family", ["cskd", "dlb"])
@pytest.mark.parametrize("counts,new,size", [("new", 16, 32), ("total", 8, 16)])
def test_batch_size_counts_new_samples_per_step_by_default(data, tmp_path, family, counts, new,
                                                           size):
    options = () if counts == "new" else (("batch_counts", counts),)
    ctx = make_ctx(data, tmp_path, f"{family}-simple", batch_size=16, options=options)
    recipe = RECIPES[family](ctx)
    batches = recipe.sampler(0, torch.Generator().manual_seed(0))
    assert recipe.new_samples_per_step == new
    assert len(batches) == math.ceil(len(data.train) / new)
    assert {len(b) for b in batches[1:]} == {size}


def test_batch_counts_total_needs_two_samples(data, tmp_path):
    ctx = make_ctx(data, tmp_path, "dlb-simple", batch_size=1, options=(("batch_counts", "total"),))
    with pytest.raises(UsageError, match="batch_size=1 is too small for batch_counts=total"):
        sd.dlb_recipe(ctx)


# --- the objectives on fixed logits, against the formulas in plain Python ------------------


def _softmax(row, t=1.0):
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def _ce(row, y):
    return -math.log(_softmax(row)[y])


def fixed_batch(rows, labels):
    """A batch whose 'images' are the logits themselves (the model is the identity)."""
    return Batch(torch.tensor(rows), torch.tensor(labels), torch.arange(len(rows)))


def test_cskd_objective_golden():
    anchors, partners = [[1.0, 0.0, 2.0], [0.5, 1.5, -1.0]], [[0.0, 1.0, 1.0], [2.0, 2.0, 0.0]]
    labels = [2, 1]
    loss, logits = sd.ClassWiseSelfKD(temperature=4.0, lam=1.0)(
        lambda x: x, fixed_batch(anchors + partners, labels + labels))
    want = sum(_ce(a, y) for a, y in zip(anchors, labels)) / 2 + 16 * sum(
        _kl(_softmax(p, 4.0), _softmax(a, 4.0)) for a, p in zip(anchors, partners)) / 2
    assert loss.item() == pytest.approx(want, rel=1e-6)


def test_dlb_objective_golden_over_a_chain_of_two_steps():
    objective = sd.LastBatchSelfKD(fresh=2, tau=3.0, alpha=1.0)
    first = [[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]]
    loss0, _ = objective(lambda x: x, fixed_batch(first, [0, 1]))
    assert loss0.item() == pytest.approx((_ce(first[0], 0) + _ce(first[1], 1)) / 2, rel=1e-6)
    fresh, repeat = [[0.5, 0.5, 2.0], [1.0, -1.0, 0.0]], [[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]]
    loss1, _ = objective(lambda x: x, fixed_batch(fresh + repeat, [2, 0, 0, 1]))
    want = sum(_ce(z, y) for z, y in zip(fresh + repeat, [2, 0, 0, 1])) / 4 + 9 * sum(
        _kl(_softmax(p, 3.0), _softmax(z, 3.0)) for z, p in zip(repeat, first)) / 2
    assert loss1.item() == pytest.approx(want, rel=1e-6)


def test_pskd_objective_golden_reads_the_table():
    objective = sd.ProgressiveSelfKD(torch.tensor([0, 1]), 3, alpha_T=0.6)
    objective.table = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    objective.alpha = 0.6
    rows = [[1.0, 2.0, 0.0], [0.0, 0.5, 0.5]]
    loss, _ = objective(lambda x: x, fixed_batch(rows, [0, 1]))
    want = 0.0
    for z, y, p in zip(rows, [0, 1], objective.table.tolist()):
        target = [0.4 * (c == y) + 0.6 * p[c] for c in range(3)]
        want -= sum(t * math.log(q) for t, q in zip(target, _softmax(z))) / 2
    assert loss.item() == pytest.approx(want, rel=1e-6)


def test_options_reach_the_objectives_and_the_scorer(data, tmp_path):
    """Non-default options change what a method computes, not only its label: each family's
    objective, built from the cell as the method builds it, gives the loss of the formula at the
    options' values, and k = 0 inner steps makes the score |θ ⊙ ∇CE| at θ0."""
    from types import SimpleNamespace

    # CS-KD, T = 2 and λ = 0.5: CE(anchors) + λ T² KL(p_T(partner) ‖ p_T(anchor))
    ctx = make_ctx(data, tmp_path, "cskd-simple", options=(("T", 2.0), ("lam", 0.5)))
    anchors, partners, labels = [[1.0, 0.0, 2.0], [0.5, 1.5, -1.0]], \
        [[0.0, 1.0, 1.0], [2.0, 2.0, 0.0]], [2, 1]
    loss, _ = sd.cskd_recipe(ctx).objective(lambda x: x,
                                            fixed_batch(anchors + partners, labels + labels))
    want = sum(_ce(a, y) for a, y in zip(anchors, labels)) / 2 + 0.5 * 4 * sum(
        _kl(_softmax(p, 2.0), _softmax(a, 2.0)) for a, p in zip(anchors, partners)) / 2
    assert loss.item() == pytest.approx(want, rel=1e-6)

    # DLB, τ = 2 and α = 0.5, two new samples a step: the second step distils from the first
    ctx = make_ctx(data, tmp_path, "dlb-simple", batch_size=2,
                   options=(("tau", 2.0), ("alpha", 0.5)))
    objective = sd.dlb_recipe(ctx).objective
    first, fresh, repeat = [[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]], [[0.5, 0.5, 2.0], [1.0, -1.0, 0.0]], \
        [[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]]
    objective(lambda x: x, fixed_batch(first, [0, 1]))
    loss, _ = objective(lambda x: x, fixed_batch(fresh + repeat, [2, 0, 0, 1]))
    want = sum(_ce(z, y) for z, y in zip(fresh + repeat, [2, 0, 0, 1])) / 4 + 0.5 * 4 * sum(
        _kl(_softmax(p, 2.0), _softmax(z, 2.0)) for z, p in zip(repeat, first)) / 2
    assert loss.item() == pytest.approx(want, rel=1e-6)

    # PS-KD, α_T = 0.4 over 2 epochs: α_t = 0.2, then 0.4 against the previous predictions
    ctx = make_ctx(data, tmp_path, "pskd-simple", options=(("alpha_T", 0.4),))
    objective = sd.pskd_recipe(ctx).objective
    for epoch in (0, 1):
        objective.on_epoch_start(SimpleNamespace(epoch=epoch, phase=SimpleNamespace(epochs=2)))
    assert objective.alpha_history == pytest.approx([0.2, 0.4])
    previous = [[0.5, 0.3, 0.1, 0.1], [0.1, 0.1, 0.2, 0.6]]
    objective.table = objective.table.clone()
    objective.table[:2] = torch.tensor(previous)
    rows, ys = [[1.0, 2.0, 0.0, -1.0], [0.0, 0.5, 0.5, 1.0]], [0, 1]
    loss, _ = objective(lambda x: x, fixed_batch(rows, ys))
    want = -sum(sum((0.6 * (c == y) + 0.4 * p[c]) * math.log(q) for c, q in enumerate(_softmax(z)))
                for z, y, p in zip(rows, ys, previous)) / 2
    assert loss.item() == pytest.approx(want, rel=1e-6)

    # k = 0: no inner step, the score of every weight is |θ ⊙ ∂CE/∂θ| on the first scoring batch
    ctx = make_ctx(data, tmp_path, "dlb-simple", batch_size=32, options=(("k", 0),))
    model = ctx.make_model()
    scores = sd.pai_scores(ctx, model, "simple", sd.dlb_recipe)
    (batch,) = sd.scoring_batches(ctx, 1)
    loss, _ = ce_objective(model.train(), batch)
    loss.backward()
    for name, module in prunable_modules(model).items():
        want = (module.weight * module.weight.grad).abs()
        assert torch.allclose(scores[name], want, atol=1e-7), f"layer {name}: not |θ ⊙ ∇CE|"


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


@pytest.mark.parametrize("meta_grad", ["official", "paper"])
def test_meta_gradient_matches_finite_differences_through_the_inner_steps(meta_grad):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    batches = [Batch(torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64),
                     torch.arange(5)) for _ in range(3)]

    def mse(forward, batch):
        out = forward(batch.x)
        return ((out - batch.y) ** 2).mean(), out

    lr, mom = 0.3, 0.9
    scores = meta_gradient_scores(model, mse, batches, lr=lr, momentum=mom, meta_grad=meta_grad)

    def trajectory(mask, first_grad=None):  # the same steps written out, without any graph to m
        params = {k: p.detach().clone() for k, p in model.named_parameters()}
        params["0.weight"] = params["0.weight"] * mask
        vel, grads0 = {}, None
        for step, batch in enumerate(batches[:-1]):
            ps = {k: v.requires_grad_(True) for k, v in params.items()}
            loss, _ = mse(lambda x: torch.func.functional_call(model, ps, (x,)), batch)
            grads = dict(zip(ps, torch.autograd.grad(loss, list(ps.values()))))
            if step == 0:
                grads0 = grads
                if first_grad is not None:  # official: g_0 is the constant taken at m = 1
                    grads = first_grad
            for k in params:
                vel[k] = grads[k] if k not in vel else mom * vel[k] + grads[k]
                params[k] = (ps[k] - lr * vel[k]).detach()
        loss, _ = mse(lambda x: torch.func.functional_call(model, params, (x,)), batches[-1])
        return loss.item(), grads0

    ones = torch.ones(4, 3, dtype=torch.float64)
    first = trajectory(ones)[1] if meta_grad == "official" else None
    eps = 1e-6
    fds = []
    for i, j in [(0, 0), (1, 2), (3, 1)]:
        plus, minus = ones.clone(), ones.clone()
        plus[i, j] += eps
        minus[i, j] -= eps
        fd = (trajectory(plus, first)[0] - trajectory(minus, first)[0]) / (2 * eps)
        fds.append(fd)
        assert scores["0"][i, j].item() == pytest.approx(abs(fd), rel=1e-5, abs=1e-9)
    other = meta_gradient_scores(model, mse, batches, lr=lr, momentum=mom,
                                 meta_grad="paper" if meta_grad == "official" else "official")
    assert not torch.allclose(scores["0"], other["0"], rtol=1e-3)  # the two forms differ here


def test_meta_gradient_golden_one_step_by_hand():
    """k = 1 on a bias-free linear model with MSE, written out in plain Python: w1 = w0 − η g0,
    g(w; X, t) = 2/n Σ (w·x − t) x, H = 2/n Σ x xᵀ. official: |w0 ⊙ g(w1; B1)|;
    paper: |w0 ⊙ (I − η H0) g(w1; B1)|."""
    w0 = [0.5, -1.0, 2.0]
    x0, t0 = [[1.0, 0.0, 2.0], [0.5, -1.0, 1.0]], [1.0, -2.0]
    x1, t1 = [[2.0, 1.0, -1.0], [0.0, 1.0, 1.0]], [0.5, 1.5]
    lr = 0.1

    def grad(w, xs, ts):
        out = [0.0] * 3
        for x, t in zip(xs, ts):
            r = sum(a * b for a, b in zip(w, x)) - t
            for c in range(3):
                out[c] += 2 * r * x[c] / len(xs)
        return out

    g0 = grad(w0, x0, t0)
    w1 = [w - lr * g for w, g in zip(w0, g0)]
    g1 = grad(w1, x1, t1)
    hessian = [[sum(2 * x[a] * x[b] for x in x0) / 2 for b in range(3)] for a in range(3)]
    through = [g1[a] - lr * sum(hessian[a][b] * g1[b] for b in range(3)) for a in range(3)]
    want = {"official": [abs(w * g) for w, g in zip(w0, g1)],
            "paper": [abs(w * g) for w, g in zip(w0, through)]}

    model = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(torch.tensor([w0], dtype=torch.float64))

    def mse(forward, batch):
        out = forward(batch.x).squeeze(1)
        return ((out - batch.y) ** 2).mean(), out

    batches = [Batch(torch.tensor(x, dtype=torch.float64), torch.tensor(t, dtype=torch.float64),
                     torch.arange(2)) for x, t in ((x0, t0), (x1, t1))]
    for form, expected in want.items():
        got = meta_gradient_scores(model, mse, batches, lr=lr, momentum=0.9, meta_grad=form)
        assert got[""][0].tolist() == pytest.approx(expected, rel=1e-12)
    assert want["official"] != pytest.approx(want["paper"])
    # without momentum ProsPr's code keeps g0's graph: both forms are the paper's
    no_mom = meta_gradient_scores(model, mse, batches, lr=lr, momentum=0.0, meta_grad="official")
    assert no_mom[""][0].tolist() == pytest.approx(want["paper"], rel=1e-12)


def test_meta_grad_form_is_validated():
    with pytest.raises(ValueError, match="valid: official, paper"):
        meta_gradient_scores(nn.Linear(2, 2), ce_objective, tiny_batches(1), meta_grad="maml")


def test_normalize_by_sum_keeps_the_ranking():
    scores = {"a": torch.tensor([1.0, 3.0]), "b": torch.tensor([[2.0, 4.0]])}
    normed = normalize_by_sum(scores)
    assert sum(s.sum() for s in normed.values()).item() == pytest.approx(1.0)
    assert torch.equal(global_topk_mask(scores, 0.5)[0]["b"], global_topk_mask(normed, 0.5)[0]["b"])


@pytest.mark.slow
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


@pytest.mark.slow
def test_simple_scores_do_not_depend_on_the_family(data, tmp_path):
    scores = [sd.pai_scores(make_ctx(data, tmp_path, f"{f}-simple", batch_size=32),
                            make_ctx(data, tmp_path, f"{f}-simple").make_model(), "simple",
                            RECIPES[f]) for f in ("cskd", "dlb")]
    assert all(torch.equal(scores[0][n], scores[1][n]) for n in scores[0])


# --- end to end: each method through run_cell ------------------------------------------------


@pytest.mark.e2e
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
    cfg = RunConfig(method="dlb-epsd", options=(("tau", 2), ("k", 1)))
    assert cfg.label == "dlb-epsd[k=1,tau=2.0]"
    assert RunConfig(method="cskd-epsd", options=(("meta_grad", "paper"),)).label == \
        "cskd-epsd[meta_grad=paper]"
    with pytest.raises(UsageError, match="alpha_T=1.5 is invalid"):
        RunConfig(method="pskd-simple", options=(("alpha_T", 1.5),))
    with pytest.raises(UsageError, match="unknown option 'tau' for method 'cskd-simple'"):
        RunConfig(method="cskd-simple", options=(("tau", 3.0),))
    with pytest.raises(UsageError, match="batch_counts='half' is invalid; valid: new, total"):
        RunConfig(method="dlb-simple", options=(("batch_counts", "half"),))
    with pytest.raises(UsageError, match="unknown option 'batch_counts' for method 'pskd-epsd'"):
        RunConfig(method="pskd-epsd", options=(("batch_counts", "total"),))


def test_the_six_registrations_come_from_the_family_table():
    from bench.catalog import METHODS

    for family, criterion in itertools.product(("cskd", "pskd", "dlb"), ("simple", "epsd")):
        method = METHODS.get(f"{family}-{criterion}")
        assert set(sd.CRITERION_OPTIONS) <= set(method.options)
        assert set(sd.FAMILIES[family].options) <= set(method.options)
        assert sd.FAMILIES[family].title in method.description
