"""methods/colt.py: class halves, the intersection of the two halves' masks, rewinding, targets."""
from __future__ import annotations

import pytest
import torch

from bench.exec.cell import RunOptions, run_cell
from bench.config import RunConfig
from bench.data import Split
from bench.masks import get_mask, intersect
from bench.train.models import build_model
from bench.store import ResultStore
from methods.colt import (class_halves, class_subset, colt_round_mask, conv_names, count_kept,
                          half_state, prune_smallest, rewind)


@pytest.mark.parametrize("num_classes", [2, 4, 5, 10, 100, 200])
def test_class_halves_are_disjoint_and_cover_all_classes(num_classes):
    a, b = class_halves(num_classes)
    assert set(a).isdisjoint(b)
    assert sorted(a + b) == list(range(num_classes))
    assert abs(len(a) - len(b)) <= 1


def test_class_halves_follow_the_original_split():
    assert class_halves(10) == ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])
    assert class_halves(200)[1][0] == 100


def test_class_subset_keeps_only_its_classes_with_labels_remapped():
    labels = torch.tensor([0, 5, 3, 7, 9, 5, 1])
    split = Split(torch.arange(7, dtype=torch.uint8).view(7, 1, 1, 1), labels)
    half = class_subset(split, [5, 6, 7, 8, 9])
    assert half.labels.tolist() == [0, 2, 4, 0]
    assert half.images.flatten().tolist() == [1, 3, 4, 5]  # which samples survive, in order


def _scores(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(s, generator=g) for n, s in shapes.items()}


SHAPES = {"conv1": (4, 3, 3, 3), "conv2": (8, 4, 3, 3), "conv3": (8, 8, 1, 1)}


def test_intersection_mask_is_the_elementwise_and_of_the_two_masks():
    a, b = _scores(SHAPES, 0), _scores(SHAPES, 1)
    alive = {n: torch.rand(s, generator=torch.Generator().manual_seed(2)) > 0.3
             for n, s in SHAPES.items()}
    total_alive = count_kept(alive)
    ticket, mask_a, mask_b = colt_round_mask(a, b, alive, 0.15)
    for n in SHAPES:
        assert torch.equal(ticket[n], mask_a[n] & mask_b[n])
        assert not (ticket[n] & ~alive[n]).any()  # nothing pruned comes back
    removed = round(0.15 * total_alive)
    assert count_kept(mask_a) == count_kept(mask_b) == total_alive - removed
    assert count_kept(ticket) < count_kept(mask_a)  # different scores: the union is larger
    assert torch.equal(torch.cat([t.flatten() for t in intersect([mask_a, mask_b]).values()]),
                       torch.cat([t.flatten() for t in ticket.values()]))


def test_each_half_prunes_its_smallest_remaining_weights_globally():
    scores = {"x": torch.tensor([5.0, -1.0, 3.0, 0.5]), "y": torch.tensor([-0.1, 4.0, 2.0, 9.0])}
    alive = {"x": torch.tensor([True, True, True, False]), "y": torch.ones(4, dtype=torch.bool)}
    mask = prune_smallest(scores, alive, 2)  # the alive |w| 0.1 (y) and 1.0 (x) go; 0.5 is dead
    assert mask["x"].tolist() == [True, False, True, False]
    assert mask["y"].tolist() == [False, True, True, True]


def test_last_round_removes_exactly_what_the_target_needs():
    a, b = _scores(SHAPES, 3), _scores(SHAPES, 4)
    alive = {n: torch.ones(s, dtype=torch.bool) for n, s in SHAPES.items()}
    plain, _, _ = colt_round_mask(a, b, alive, 0.5)
    floor = count_kept(plain) + 7  # the intersection would overshoot by 7 weights
    ticket, _, _ = colt_round_mask(a, b, alive, 0.5, keep_at_least=floor)
    assert count_kept(ticket) == floor
    for n in SHAPES:  # only weights the intersection removes are removed
        assert not (plain[n] & ~ticket[n]).any()
    same, _, _ = colt_round_mask(a, b, alive, 0.5, keep_at_least=count_kept(plain))
    assert all(torch.equal(same[n], plain[n]) for n in SHAPES)


def test_rewinding_restores_the_initial_weights_under_the_mask():
    torch.manual_seed(0)
    model = build_model("smallcnn", 4, 3, 8)
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    names = conv_names(model)
    mask = {n: torch.rand_like(model.get_submodule(n).weight) > 0.5 for n in names}
    rewind(model, theta0, mask)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)  # "training" moves everything
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 3, 8, 8)).logsumexp(1).sum().backward()
        opt.step()
    assert not torch.equal(model.get_submodule(names[0]).weight, theta0[names[0] + ".weight"])
    rewind(model, theta0, mask)
    for key, value in model.state_dict().items():
        if key.endswith("weight_mask"):
            continue
        module = key.rpartition(".")[0]
        if module in mask and key.endswith(".weight"):
            assert torch.equal(value, theta0[key] * mask[module])
        else:  # everything else, BatchNorm statistics and the dense head included
            assert torch.equal(value, theta0[key]), key
    assert all(torch.equal(m, mask.get(n, m)) for n, m in get_mask(model).items())


def test_half_models_share_theta0_except_the_head_rows_of_their_classes():
    full = build_model("resnet20", 10, 3, 8)
    theta0 = full.state_dict()
    half = build_model("resnet20", 5, 3, 8)
    state = half_state(theta0, half, [5, 6, 7, 8, 9])
    half.load_state_dict(state)
    for key, value in half.state_dict().items():
        if key.startswith("fc."):
            assert torch.equal(value, theta0[key][5:])
        else:
            assert torch.equal(value, theta0[key])


def _run(tmp_path, **kw):
    cfg = RunConfig(method="colt", dataset="synthetic", model="smallcnn", dense_epochs=1,
                    round_epochs=1, sparse_epochs=1, **kw)
    record = run_cell(cfg, ResultStore(tmp_path), RunOptions(progress=False))
    assert record["status"] == "ok", record.get("error", {}).get("traceback")
    return record


@pytest.mark.e2e
def test_colt_hits_the_target_over_prunable_weights_with_a_dense_head(tmp_path):
    record = _run(tmp_path, sparsity=0.5)
    sp = record["sparsity"]
    assert sp["prunable_kept"] == round(0.5 * sp["prunable_total"])
    head = sp["layers"]["15"]  # smallcnn's Linear head is never pruned
    assert head[0] == head[1]
    rounds = record["extra"]["rounds"]
    assert len(rounds) >= 2
    assert [r["sparsity"] for r in rounds] == sorted(r["sparsity"] for r in rounds)
    assert rounds[-1]["sparsity"] == pytest.approx(sp["prunable"])
    assert all(r["removed"] >= max(r["removed_per_half"]) for r in rounds[:-1])
    assert {"ticket", "round1-a", "round1-b", "round1-prune"} <= set(record["phases"])
    total = record["extra"]["rounds_total"]["seconds"]
    assert total == pytest.approx(sum(p["seconds"] for n, p in record["phases"].items()
                                      if n.startswith("round")))
    # the rounds' training is shared across sparsities (bench/method/rounds.py); the cell's trajectory
    # still costs all of it, as if run alone
    assert record["phases"]["round1-a"]["shared"] and not record["phases"]["round1-prune"]["shared"]
    assert record["cost"]["seconds_total"] >= total + record["phases"]["ticket"]["seconds"] - 1e-9


@pytest.mark.e2e
def test_colt_over_conv_weights_reports_the_sparsity_it_reached(tmp_path):
    record = _run(tmp_path, sparsity=0.5,
                  options=(("sparsity_over", "conv"), ("prune_fraction", 0.3)))
    sp, info = record["sparsity"], record["extra"]["colt"]
    conv_kept = sp["prunable_kept"] - info["dense_total"]
    assert conv_kept == round(0.5 * info["conv_total"])
    assert sp["prunable"] < 0.5  # the dense head counts as kept


def test_golden_round_removal_intersection_and_last_round_trim():
    """A round on 8 fixed weights, worked by hand (numbers, not the code's own ranking)."""
    a = {"x": torch.tensor([0.9, -0.1, 0.5, 0.3]), "y": torch.tensor([0.7, 0.05, -0.4, 1.0])}
    b = {"x": torch.tensor([0.2, 0.8, -0.6, 0.05]), "y": torch.tensor([0.9, 0.3, 0.1, -0.7])}
    alive = {"x": torch.ones(4, dtype=torch.bool), "y": torch.ones(4, dtype=torch.bool)}
    # 25 % of 8 alive: each half removes round(2.0) = 2 by global |w|:
    # half a's two smallest are y1 (0.05) and x1 (0.1); half b's are x3 (0.05) and y2 (0.1)
    ticket, mask_a, mask_b = colt_round_mask(a, b, alive, 0.25)
    assert mask_a["x"].tolist() == [True, False, True, True]
    assert mask_a["y"].tolist() == [True, False, True, True]
    assert mask_b["x"].tolist() == [True, True, True, False]
    assert mask_b["y"].tolist() == [True, True, False, True]
    assert ticket["x"].tolist() == [True, False, True, False]  # the AND: 4 of 8 survive
    assert ticket["y"].tolist() == [True, False, False, True]
    # Last round: keep 5. Removal ranks (0 = first removed) by |w|:
    #   a: y1 0, x1 1, x3 2, y2 3, x2 4, y0 5, x0 6, y3 7
    #   b: x3 0, y2 1, x0 2, y1 3, x2 4, y3 5, x1 6, y0 7
    # (earlier rank, later rank): x3 (0,2), y1 (0,3), y2 (1,3), x1 (1,6), x0 (2,6), x2 (4,4),
    # y0 (5,7), y3 (5,7); the first 3 go.
    trimmed, _, _ = colt_round_mask(a, b, alive, 0.25, keep_at_least=5)
    assert trimmed["x"].tolist() == [True, True, True, False]
    assert trimmed["y"].tolist() == [True, False, False, True]
    # 90 %: each half removes round(7.2) = 7 (a keeps y3, b keeps y0), the AND keeps none; so
    # keep 1: everything up to the tie y0/y3 goes, and of the tie the later weight (y3) first
    last, _, _ = colt_round_mask(a, b, alive, 0.9, keep_at_least=1)
    assert last["x"].tolist() == [False] * 4 and last["y"].tolist() == [True, False, False, False]
    # fraction 0.3 of 8 = 2.4: still 2 per half; 0.32 -> 2.56: 3 per half
    assert count_kept(colt_round_mask(a, b, alive, 0.3)[1]) == 6
    assert count_kept(colt_round_mask(a, b, alive, 0.32)[1]) == 5
