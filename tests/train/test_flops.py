import torch
from torch import nn

from bench.train.flops import cost_accounting, macs_per_image
from bench.masks import attach_mask, global_topk_mask, magnitude_scores
from bench.train.models import build_model


def test_macs_by_hand():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 5))
    assert macs_per_image(model, 3, 8) == (64 * 108 + 20, 64 * 108 + 20)
    attach_mask(model, global_topk_mask(magnitude_scores(model), 0.5)[0])
    dense, sparse = macs_per_image(model, 3, 8)
    kept_conv, kept_fc = int(model[0].weight_mask.sum()), int(model[4].weight_mask.sum())
    assert kept_conv + kept_fc == 64
    assert sparse == 64 * kept_conv + kept_fc and dense == 64 * 108 + 20


def test_cifar_resnets_match_their_published_cost():
    # ResNet-18 (CIFAR variant) ~0.56 GMACs, resnet20 ~41 MMACs per 32x32 image
    assert abs(macs_per_image(build_model("resnet18", 10, 3, 32), 3, 32)[0] / 1e9 - 0.556) < 0.01
    assert abs(macs_per_image(build_model("resnet20", 10, 3, 32), 3, 32)[0] / 1e6 - 40.8) < 0.5


def test_accounting_of_a_pruned_model():
    model = build_model("resnet20", 10, 3, 32)
    attach_mask(model, global_topk_mask(magnitude_scores(model), 0.9)[0])
    acct = cost_accounting(model, 3, 32)
    assert 9 < acct["compression_ratio"] < 10.5  # biases and BatchNorm stay dense
    assert 2 < acct["theoretical_speedup"] < acct["compression_ratio"]  # early layers are costlier
    assert acct["params_nonzero"] < acct["params_total"] / 5
