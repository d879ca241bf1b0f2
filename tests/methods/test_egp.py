"""methods/egp.py and egp_entropy.py: ReLU entropy against hand computations, budgets, skipped
layers, the run."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from bench.exec.cell import RunOptions, run_cell
from bench.config import RunConfig
from bench.train.models import BasicBlock, build_model
from bench.store import ResultStore
from bench.masks import prune_per_layer
from methods.egp import egp_budgets
from methods.egp_entropy import ReluEntropy, binary_entropy, relu_entropy


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
    pruned = prune_per_layer({"w": w.abs()}, {"w": mask}, {"w": 2})
    assert pruned["w"].tolist() == [[False, False], [True, False]]


@pytest.mark.e2e
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


# --- golden numbers ------------------------------------------------------------------------------


def test_golden_relu_entropy_of_a_conv_relu_pair_over_two_batches():
    net = _probe_net()
    # batch 1: inputs 1, 2, -3, 0, 5 -> channel 0 (x > 0) on 3 of 5, channel 1 (-x > 0) on 1 of 5
    # H(0.6) = 0.970951 bits, H(0.2) = 0.721928 bits: the batch's value is their mean 0.846439
    # batch 2: inputs 1, -1 -> both channels p = 0.5: 1 bit.  H_l = (0.846439 + 1) / 2
    with ReluEntropy(net) as probe:
        net(torch.tensor([1.0, 2.0, -3.0, 0.0, 5.0]).view(5, 1, 1, 1))
        net(torch.tensor([1.0, -1.0]).view(2, 1, 1, 1))
    assert probe.entropies()["0"] == pytest.approx(0.9232196, abs=1e-6)


def test_golden_layer_budgets_softmax_caps_redistribution_and_rounding():
    entropy = {"a": 0.5, "b": 1.0, "c": 0.8}
    mean_abs = {"a": 0.2, "b": 0.05, "c": 0.1}
    # a_l = 0.1, 0.05, 0.08; Σa = 0.23; logits Σa/a_l = 2.3, 4.6, 2.875;
    # softmax = 0.078423, 0.782208, 0.139368; x 1000 = 78.42, 782.21, 139.37;
    # floors 78 + 782 + 139 = 999, the one left goes to the largest remainder (a: 0.42)
    big = {"a": 10_000, "b": 10_000, "c": 10_000}
    assert egp_budgets(entropy, mean_abs, big, 1000) == {"a": 79, "b": 782, "c": 139}
    # b holds only 500: capped there; the other 500 over a and c with Σa = 0.18: logits 1.8,
    # 2.25 -> 0.389361, 0.610639 -> 194.68, 305.32 -> 194 + 305, remainder to a
    assert egp_budgets(entropy, mean_abs, {**big, "b": 500}, 1000) == {"a": 195, "b": 500,
                                                                      "c": 305}
    # ... and c holds only 300: capped too, a takes the remaining 200
    assert egp_budgets(entropy, mean_abs, {"a": 10_000, "b": 500, "c": 300}, 1000) == \
        {"a": 200, "b": 500, "c": 300}


# --- sparsity accounting ----------------------------------------------------------------------


def test_keep_targets_under_both_accountings():
    from methods.egp import pruned_keep_target, unreachable_reason

    # 1,000 prunable weights, 900 in the layers EGP prunes, 100 it never prunes
    assert pruned_keep_target(1000, 900, 0.8, "prunable") == 200 - 100
    assert pruned_keep_target(1000, 900, 0.8, "pruned") == 180
    assert pruned_keep_target(1000, 900, 0.9, "prunable") == 0  # only the 100 others survive
    assert unreachable_reason(1000, 900, 0.8, "prunable") is None
    assert unreachable_reason(1000, 900, 0.95, "pruned") is None  # 45 left in its layers
    reason = unreachable_reason(1000, 900, 0.95, "prunable")
    assert "100 of them are in layers EGP never prunes" in reason and "only 50 may" in reason
    assert "\n" not in reason


def _egp_config(sparsity, **options):
    return RunConfig(method="egp", dataset="synthetic", model="smallcnn", sparsity=sparsity,
                     dense_epochs=1, round_epochs=1, options=tuple(sorted(options.items())))


@pytest.mark.e2e
def test_unreachable_cell_fails_at_its_start_and_the_dry_run_says_so(tmp_path, capsys):
    from bench.run import main

    # smallcnn: 32,944 prunable weights, its Linear head (256) never pruned; at 99.5 % only 165
    # may survive
    record = run_cell(_egp_config(0.995), ResultStore(tmp_path), RunOptions(progress=False))
    assert record["status"] == "failed"
    assert record["error"]["type"] == "UnreachableTarget"
    assert "256 of them are in layers EGP never prunes" in record["error"]["message"]
    assert record["phases"] == {}  # nothing was trained
    assert main(["--methods", "egp", "--datasets", "synthetic", "--set", "model=smallcnn",
                 "--sparsities", "0.9,0.995", "--results", str(tmp_path / "r"),
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if " egp " in line and "s=" in line]
    assert [("UNREACHABLE" in line) for line in lines] == [False, True]
    assert "1 cells cannot reach their target" in out


@pytest.mark.e2e
def test_egp_over_its_own_layers_hits_that_count_and_reports_both(tmp_path):
    record = run_cell(_egp_config(0.75, sparsity_over="pruned"), ResultStore(tmp_path),
                      RunOptions(progress=False))
    assert record["status"] == "ok", record.get("error", {}).get("traceback")
    sp = record["sparsity"]
    assert (sp["target"], sp["over"]) == (0.75, "pruned")
    assert sp["over_total"] == 32944 - 256  # the four convs, not the head
    assert sp["over_kept"] == round(0.25 * sp["over_total"])
    assert sp["prunable"] < 0.75  # the dense head counts as kept over all prunable weights
    assert len(record["extra"]["rounds"]) == 2  # 50 %, 75 %: the paper's 1 - 0.5^k
    assert record["extra"]["egp"]["sparsity_over"] == "pruned"


def test_the_reachability_check_counts_the_prunable_set_the_run_uses():
    """Conv-only leaves the Linear head out of the total: 99.5 % is out of reach over every
    prunable weight (the head is never pruned) but within reach over the convs."""
    from methods.egp import check_target

    assert check_target(_egp_config(0.995)) is not None
    assert check_target(_egp_config(0.995).replace(prunable="conv")) is None
