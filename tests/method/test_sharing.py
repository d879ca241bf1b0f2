"""COLT and EGP share their round prefixes across sparsities through the cache (issue 19): the
same results bit for bit with and without sharing, each prefix trained once, also when two
processes need it at once, and a round killed half-way resumes in the cache's scratch folder."""
from __future__ import annotations

import signal
import time

import pytest
import torch

from bench.exec.cell import RunOptions, run_cell
from bench.config import RunConfig
from bench.store import ResultStore
from test_rounds import _child

BASE = dict(dataset="synthetic", model="smallcnn", dense_epochs=1, round_epochs=1, sparse_epochs=1)
SPARSITIES = {"colt": (0.3, 0.6), "egp": (0.6, 0.85)}
OPTS = {"colt": (("prune_fraction", 0.3),), "egp": ()}


def _cells(method):
    return [RunConfig(method=method, sparsity=s, options=OPTS[method], **BASE)
            for s in SPARSITIES[method]]


def _round_phases(record, part=None):
    return {n: p for n, p in record["phases"].items()
            if n.startswith("round") and (part is None or n.endswith(part))}


@pytest.mark.e2e
@pytest.mark.parametrize("method", ["colt", "egp"])
def test_results_are_identical_with_and_without_sharing_and_prefixes_are_reused(tmp_path, method):
    shared, alone = ResultStore(tmp_path / "shared"), ResultStore(tmp_path / "alone")
    low, high = _cells(method)
    recs = {}
    for store, share in ((shared, True), (alone, False)):
        for cfg in (low, high):
            recs[share, cfg.sparsity] = run_cell(cfg, store, RunOptions(progress=False, share=share))
            assert recs[share, cfg.sparsity]["status"] == "ok"
    for cfg in (low, high):
        a, b = recs[True, cfg.sparsity], recs[False, cfg.sparsity]
        assert a["accuracy"] == b["accuracy"]
        assert a["sparsity"]["layers"] == b["sparsity"]["layers"]
        strip = ("seconds", "seconds_wall", "resumed")
        assert [{k: v for k, v in r.items() if k not in strip} for r in a["extra"]["rounds"]] == \
            [{k: v for k, v in r.items() if k not in strip} for r in b["extra"]["rounds"]]
        wa = torch.load(shared.checkpoint_path(cfg.id), weights_only=True)["state_dict"]
        wb = torch.load(alone.checkpoint_path(cfg.id), weights_only=True)["state_dict"]
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
        assert not any(p["shared"] for p in _round_phases(b).values())  # --no-share: own rounds

    trained = "-a" if method == "colt" else None
    first, second = recs[True, low.sparsity], recs[True, high.sparsity]
    n_low = len(first["extra"]["rounds"])
    assert len(second["extra"]["rounds"]) > n_low
    assert any(p["cached"] for p in _round_phases(second).values())
    for name, phase in _round_phases(second, trained).items():
        if name.endswith(("-prune", "-eval", "-entropy")) and method == "egp":
            continue
        index = int(name[5:].split("-")[0])
        # a round the lower target already trained is read, not trained again; except EGP's
        # last round of the lower target where it pruned only part of its share (its own)
        last_shared = method == "colt" or first["phases"][f"round{n_low}"]["shared"]
        reused = index < n_low or (index == n_low and last_shared)
        assert phase["cached"] is reused, name
        if method == "colt" or index < len(second["extra"]["rounds"]):
            assert phase["shared"] is True
    # the cell's own trajectory is still costed in full, as if it had run alone
    alone_high = recs[False, high.sparsity]
    assert second["cost"]["seconds_total"] > 0.3 * alone_high["cost"]["seconds_total"]
    assert second["cost"]["seconds_cell"] < alone_high["cost"]["seconds_cell"]


@pytest.mark.e2e
def test_two_processes_needing_the_same_prefix_train_it_once(tmp_path):
    from bench.exec.dispatch import run_local

    cells = _cells("colt")
    store = ResultStore(tmp_path)
    outcome = run_local(cells, store, RunOptions(progress=False), force=False, workers=2)
    assert len(outcome.ran) == 2 and not outcome.failed
    a, b = (store.read(c.id) for c in cells)
    common = set(_round_phases(a, "-a")) & set(_round_phases(b, "-a"))
    assert common
    for name in common:  # exactly one of the two cells trained it; the other read it
        assert sorted([a["phases"][name]["cached"], b["phases"][name]["cached"]]) == [False, True]
        assert a["phases"][name]["cache_key"] == b["phases"][name]["cache_key"]


@pytest.mark.e2e
@pytest.mark.slow
def test_a_shared_round_killed_half_way_resumes_from_its_last_epoch(tmp_path):
    cfg = RunConfig(method="colt", sparsity=0.3, options=OPTS["colt"],
                    **{**BASE, "round_epochs": 6})
    store = ResultStore(tmp_path)
    log = tmp_path / "child.log"
    proc = _child(cfg, tmp_path, log)
    deadline = time.monotonic() + 120
    scratch = tmp_path / "cache" / "colt-round"
    while not list(scratch.glob("*.partial/round1-a-*.pt")):  # an epoch of round 1 is saved
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "no epoch of round 1 finished"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert store.read(cfg.id) is None
    proc = _child(cfg, tmp_path, log)
    assert proc.wait(timeout=300) == 0, log.read_text()
    record = store.read(cfg.id)
    assert record["phases"]["round1-a"]["resumed_from_epoch"] >= 1
    assert record["phases"]["round1-a"]["cached"] is False  # this cell finished it


# -- the cost model: each method declares its phases; prefixes count once -----------------------

def test_the_estimate_counts_each_shared_round_once():
    from bench.plan.estimate import (REFERENCE_IMAGES_PER_SECOND as RATE, cell_phases,
                                estimate_gpu_hours, relative_cost, rounds_to)

    sparsities = (0.5, 0.7, 0.8, 0.9, 0.95)
    colt = [RunConfig(method="colt", dataset="cifar10", model="resnet18", sparsity=s,
                      round_epochs=4, sparse_epochs=2) for s in sparsities]
    n, m = 45000, relative_cost("resnet18", "cifar10")
    rounds = [rounds_to(s, 0.15) for s in sparsities]
    assert rounds == sorted(rounds) and rounds[0] < rounds[-1]
    alone = sum(estimate_gpu_hours([c]) for c in colt)
    together = estimate_gpu_hours(colt)
    assert alone == pytest.approx((sum(rounds) * 4 + 5 * 2) * n * m / RATE / 3600)
    assert together == pytest.approx((max(rounds) * 4 + 5 * 2) * n * m / RATE / 3600)
    assert [p.name for p in cell_phases(colt[0])][-1] == "ticket"

    egp = [RunConfig(method="egp", dataset="cifar10", model="resnet18", sparsity=s,
                     dense_epochs=10, round_epochs=4) for s in sparsities]
    # halvings of the 10,987,200 weights EGP prunes until they hold the target's survivors: the
    # 177,152 it never prunes (shortcuts, head) all survive, so 50 % overall needs 50.8 % of its
    # layers (2 rounds), 80 % needs 81.9 % (3)
    rounds = [2, 2, 3, 4, 5]
    assert [rounds_to(s, 0.5) for s in sparsities] == [1, 2, 3, 4, 5]  # the nominal count
    assert [sum(p.name.startswith("round") for p in cell_phases(c)) for c in egp] == rounds
    # CIFAR-100 at 98 %: 977 survivors in its layers, 14 halvings (the nominal count says 6)
    deep = RunConfig(method="egp", dataset="cifar100", model="resnet18", sparsity=0.98)
    assert sum(p.name.startswith("round") for p in cell_phases(deep)) == 14
    # the dense network once; rounds before each cell's last shared; every last round its own
    shared_rounds = max(r - 1 for r in rounds)
    assert estimate_gpu_hours(egp) == pytest.approx(
        (10 + (shared_rounds + len(sparsities)) * 4) * n * m / RATE / 3600)
    # another seed is another trajectory
    assert estimate_gpu_hours(egp + [c.replace(seed=1) for c in egp]) == \
        pytest.approx(2 * estimate_gpu_hours(egp))


def test_a_plugin_method_declares_its_own_cost(tmp_path):
    from bench.plan.estimate import PhaseCost, cell_phases, estimate_gpu_hours, shared
    from bench.method import register_method

    def cost(cfg):
        return [PhaseCost(shared(cfg, "warmup", {"model": cfg.model}), "warmup", 3800.0 * 3600),
                PhaseCost(None, "own", 3800.0 * 1800)]

    @register_method("test-costed", cost=cost, replace=True)
    def costed(ctx):
        raise NotImplementedError

    from bench.catalog import METHODS

    try:
        cells = [RunConfig(method="test-costed", sparsity=s) for s in (0.5, 0.9)]
        assert [p.name for p in cell_phases(cells[0])] == ["warmup", "own"]
        assert estimate_gpu_hours(cells) == pytest.approx(1.0 + 2 * 0.5)
    finally:  # the registry is the process's: leave it as the other tests expect it
        METHODS._items.pop("test-costed", None)
