"""bench.status's estimate of the compute a grid still needs."""
import yaml

from conftest import TINY


def cells_of(*specs):
    from bench.plan.grid import make_config

    return [make_config(method=m, sparsity=s, seed=seed, **TINY) for m, s, seed in specs]


def test_compute_left_prices_each_waiting_cell_at_its_like_cells_median():
    from bench.status import compute_left

    a, b, c, d, e, f = cells_of(("magnitude", 0.5, 0), ("magnitude", 0.9, 0),
                                ("magnitude", 0.9, 1), ("magnitude", 0.5, 1),
                                ("magnitude", 0.5, 2), ("random", 0.5, 0))
    states = {a.id: "done", b.id: "done", c.id: "missing", d.id: "running", e.id: "failed",
              f.id: "missing"}
    line = compute_left([a, b, c, d, e, f], states, {a.id: 600.0, b.id: 1800.0})
    # c and e at the median of a and b (20 min each); d runs; random has no finished like-cell
    assert line.startswith("left: ≈ 40 min of compute for 2 cell(s) not running"), line
    assert line.endswith("; 1 more with no finished like-cell"), line
    assert compute_left([a, b, c], states, {a.id: 3000.0, b.id: 6000.0}).startswith(
        "left: ≈ 1.2 h of compute for 1 cell(s)")


def test_compute_left_is_silent_with_nothing_left_or_nothing_to_go_by():
    from bench.status import compute_left

    a, b = cells_of(("magnitude", 0.5, 0), ("magnitude", 0.9, 0))
    assert compute_left([a, b], {a.id: "done", b.id: "done"}, {a.id: 1.0, b.id: 2.0}) == ""
    assert compute_left([a, b], {a.id: "failed", b.id: "missing"}, {}) == ""


def test_status_prints_the_estimate_from_the_records_cost(tmp_path, capsys):
    from bench.status import main
    from bench.store import ResultStore

    base = {k: v for k, v in TINY.items() if k != "dataset"}
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"name": "g", "methods": ["magnitude"],
                                    "datasets": ["synthetic"], "sparsities": [0.5, 0.9],
                                    "seeds": [0, 1], "base": base}))
    from bench.plan.grid import load_grid

    done = [c for c in load_grid(str(grid)).cells() if c.seed == 0]
    store = ResultStore(tmp_path / "r")
    for cell, seconds in zip(done, (100.0, 200.0)):
        store.write({"id": cell.id, "label": "magnitude", "status": "ok",
                     "config": cell.to_dict(), "accuracy": {"test": 0.5},
                     "cost": {"seconds_cell": seconds}})
    assert main(["--grid", str(grid), "--results", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "summary: 2 done, 0 queued, 0 running, 0 failed, 2 missing" in out
    assert "\nleft: ≈ 5 min of compute for 2 cell(s) not running" in out, out
