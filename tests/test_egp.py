"""methods/egp.py: ReLU entropy against hand computations, budgets, skipped layers, the run."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bench.cell import RunOptions, run_cell
from bench.config import RunConfig
from bench.models import BasicBlock, build_model
from bench.store import ResultStore
from methods.egp import (ReluEntropy, binary_entropy, egp_budgets, prune_smallest_in_layer,
                         relu_entropy)


def h(p: float) -> float:
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def test_binary_entropy():
    assert binary_entropy(torch.tensor([0.0, 0.5, 1.0, 0.25])).tolist() == \
        pytest.approx([0.0, 1.0, 0.0, h(0.25)])


def test_relu_entropy_of_known_signs_matches_a_hand_computation():
    # 4 samples x 3 channels x 1 x 2 pixels: 8 values per channel
    x = -torch.ones(4, 3, 1, 2)
    x[0, 0, 0, 0] = x[1, 0, 0, 1] = 2.0  # channel 0: 2 of 8 positive -> p = 1/4
    x[:, 1] = 1.0                        # channel 1: always on -> left out
    x[:2, 2] = 3.0                       # channel 2: 4 of 8 positive -> p = 1/2
    assert relu_entropy(x) == pytest.approx((h(0.25) + 1.0) / 2)
    assert relu_entropy(-torch.ones(4, 3, 2, 2)) == 0.0  # all off: nothing ambiguous
    assert relu_entropy(torch.zeros(4, 3)) == 0.0  # zero is "off", as in the original


def _probe_net() -> nn.Module:
    """conv (1 -> 2 channels, 1x1, weights +1 and -1) -> in-place ReLU: channel 0 is on where the
    input is positive, channel 1 where it is negative."""
    net = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.ReLU(inplace=True))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
    return net


def test_layer_entropy_averages_the_batches_and_sees_inputs_of_inplace_relus():
    net = _probe_net()
    batch1 = torch.tensor([1.0, 1.0, 1.0, -1.0]).view(1, 1, 2, 2)  # p = 3/4 and 1/4
    batch2 = torch.ones(1, 1, 2, 2)  # p = 1 and 0: no ambiguous channel, the batch counts 0
    with ReluEntropy(net) as probe:
        net(batch1)
        net(batch2)
    assert probe.batches == 2
    assert probe.entropies() == {"0": pytest.approx((h(0.75) + 0.0) / 2)}


def test_relu_after_a_residual_sum_is_attributed_to_conv2_not_the_shortcut():
    block = BasicBlock(4, 8, stride=2)  # has a projection shortcut conv
    with ReluEntropy(block) as probe:
        block(torch.randn(2, 4, 6, 6))
    assert set(probe.entropies()) == {"conv1", "conv2"}


def test_resnet_mapping_matches_the_original_name_rule():
    model = build_model("resnet20", 10, 3, 8).eval()
    with ReluEntropy(model) as probe, torch.no_grad():
        model(torch.randn(4, 3, 8, 8))
    relus = [n for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    by_name = {("conv1" if n == "relu" else n.replace("relu", "conv")) for n in relus}
    assert set(probe.entropies()) == by_name


def test_zero_entropy_layers_are_skipped():
    model = build_model("smallcnn", 4, 3, 8).eval()
    with torch.no_grad():
        model[11].bias.fill_(-1e4)  # the BN after the last conv, "10": its ReLU never fires
    with ReluEntropy(model) as probe, torch.no_grad():
        model(torch.randn(16, 3, 8, 8))
    entropy = probe.entropies()
    assert entropy["10"] == 0.0 and min(entropy["0"], entropy["3"], entropy["7"]) > 0
    remaining = {n: 100 for n in entropy}
    budgets = egp_budgets(entropy, {n: 1.0 for n in entropy}, remaining, 120)
    assert budgets["10"] == 0
    assert sum(budgets.values()) == 120


def test_budgets_follow_the_softmax_of_total_over_layer_score():
    entropy = {"a": 0.5, "b": 1.0, "c": 0.8}
    mean_abs = {"a": 0.2, "b": 0.05, "c": 0.1}
    a = {n: entropy[n] * mean_abs[n] for n in entropy}  # 0.1, 0.05, 0.08
    logits = {n: sum(a.values()) / a[n] for n in a}
    z = sum(math.exp(v) for v in logits.values())
    n_remove = 1000
    expected = {n: n_remove * math.exp(v) / z for n, v in logits.items()}
    budgets = egp_budgets(entropy, mean_abs, {n: 10_000 for n in a}, n_remove)
    assert sum(budgets.values()) == n_remove
    for n in a:
        assert abs(budgets[n] - expected[n]) < 1.0
    assert budgets["b"] > budgets["c"] > budgets["a"]  # the lowest entropy x magnitude goes first


def test_budgets_are_capped_and_the_excess_redistributed():
    entropy = {"a": 1.0, "b": 1.0, "c": 1.0, "z": 0.0}
    mean_abs = {"a": 0.01, "b": 1.0, "c": 1.0, "z": 1.0}  # "a" would take almost everything
    remaining = {"a": 30, "b": 500, "c": 400, "z": 999}
    budgets = egp_budgets(entropy, mean_abs, remaining, 300)
    assert budgets["a"] == 30 and budgets["z"] == 0
    assert budgets["b"] + budgets["c"] == 270
    assert abs(budgets["b"] - budgets["c"]) <= 1  # equal scores share the rest equally
    for n_remove in (0, 1, 7, 931):  # always the round's count, up to what the layers hold
        b = egp_budgets(entropy, mean_abs, remaining, n_remove)
        assert sum(b.values()) == min(n_remove, 930)
        assert all(b[n] <= remaining[n] for n in b)


def test_prune_smallest_in_layer():
    w = torch.tensor([[0.3, -0.1], [2.0, -0.05]])
    mask = torch.tensor([[True, True], [True, False]])
    assert prune_smallest_in_layer(w, mask, 2).tolist() == [[False, False], [True, False]]


def test_egp_rounds_halve_the_pruned_layers_and_hit_the_target(tmp_path):
    cfg = RunConfig(method="egp", dataset="synthetic", model="smallcnn", sparsity=0.8,
                    dense_epochs=1, round_epochs=1)
    record = run_cell(cfg, ResultStore(tmp_path), RunOptions(progress=False))
    assert record["status"] == "ok", record.get("error", {}).get("traceback")
    sp, rounds = record["sparsity"], record["extra"]["rounds"]
    assert sp["prunable_kept"] == round(0.2 * sp["prunable_total"])
    assert len(rounds) == 3  # 50 % and 75 % of the convs, then just what 80 % needs
    assert sp["layers"]["15"][0] == sp["layers"]["15"][1]  # the Linear head is not pruned
    kept = sp["prunable_total"]
    for r in rounds:
        assert sum(r["budgets"].values()) == r["removed"]
        assert not set(r["budgets"]) & set(r["skipped"])  # zero-entropy layers are left alone
        kept -= r["removed"]
    assert kept == sp["prunable_kept"]
    conv_total = sp["prunable_total"] - sp["layers"]["15"][1]
    assert rounds[0]["removed"] == round(0.5 * conv_total)
    assert {"round1", "round1-prune", "round3"} <= set(record["phases"])
    assert record["phases"]["dense"]["shared"] is True
