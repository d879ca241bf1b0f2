"""bench.status's estimate of the compute a grid still needs."""
import yaml

from conftest import TINY


def cells_of(*specs):
    from bench.plan.grid import make_config

    return [make_config(method=m, sparsity=s, seed=seed, **TINY) for m, s, seed in specs]


def test_compute_left_prices_the_work_left_at_the_finished_cells_speed():
    from bench.status import compute_left

    a, b, c, d, e, f, g, h = cells_of(
        ("magnitude", 0.5, 0), ("magnitude", 0.9, 0), ("random", 0.5, 0),
        ("magnitude", 0.5, 1), ("random", 0.9, 1), ("magnitude", 0.9, 2),
        ("magnitude", 0.9, 1), ("magnitude", 0.5, 3))
    h = h.replace(model="resnet20")  # no finished cell of its model: not priced
    cells = [a, b, c, d, e, f, g, h]
    states = {a.id: "done", b.id: "done", c.id: "done", d.id: "missing", e.id: "failed",
              f.id: "queued", g.id: "running", h.id: "missing"}
    own = {a.id: 600.0, b.id: 900.0, c.id: 3000.0}
    work = {a.id: 100, b.id: 100, c.id: 200, d.id: 100, e.id: 200, f.id: 40, g.id: 100,
            h.id: 100}
    # 4500 s over 400 units: 11.25 s a unit (a mean of per-cell rates, or a median, differs);
    # d, e, f and a shared phase of 80 units: 420 units, 4725 s; g runs, h has no rate
    line = compute_left(cells, states, own, work, [(a, 80.0)])
    assert line.startswith("left: 4 cell(s) not running and 1 shared phase(s) not yet cached: "
                           "≈ 1.3 h of compute"), line
    assert line.endswith("; 1 of them of a model and dataset with no finished cell, not priced")
    assert compute_left(cells, states, own, work).startswith(
        "left: 4 cell(s) not running: ≈ 1.1 h of compute")  # 340 units, 3825 s
    only_h = compute_left([a, h], {a.id: "done", h.id: "missing"}, {a.id: 5.0}, work)
    assert only_h == ("left: 1 cell(s) not running: none of a model and dataset with a "
                      "finished cell to price them by")


def test_compute_left_is_silent_with_nothing_left_or_nothing_to_go_by():
    from bench.status import compute_left

    a, b = cells_of(("magnitude", 0.5, 0), ("magnitude", 0.9, 0))
    work = {a.id: 1.0, b.id: 1.0}
    assert compute_left([a, b], {a.id: "done", b.id: "done"}, {a.id: 1.0, b.id: 2.0}, work) == ""
    assert compute_left([a, b], {a.id: "failed", b.id: "missing"}, {}, work) == ""


def test_status_prints_the_estimate_from_the_records_cost(tmp_path, capsys):
    from bench.plan.grid import load_grid
    from bench.status import main
    from bench.store import ResultStore

    base = {k: v for k, v in TINY.items() if k != "dataset"}
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"name": "g", "methods": ["magnitude"],
                                    "datasets": ["synthetic"], "sparsities": [0.5, 0.9],
                                    "seeds": [0, 1], "base": base}))
    done = [c for c in load_grid(str(grid)).cells() if c.seed == 0]
    store = ResultStore(tmp_path / "r")
    for cell, seconds in zip(done, (100.0, 300.0)):
        store.write({"id": cell.id, "label": "magnitude", "status": "ok",
                     "config": cell.to_dict(), "accuracy": {"test": 0.5},
                     "cost": {"seconds_cell": seconds}})
    assert main(["--grid", str(grid), "--results", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "summary: 2 done, 0 queued, 0 running, 0 failed, 2 missing" in out
    # seed 1's two cells at 200 s each (a cell's work is the same at either sparsity), and its
    # dense network, not cached, with the same work (one dense epoch against one fine-tuning one)
    assert ("\nleft: 2 cell(s) not running and 1 shared phase(s) not yet cached: ≈ 10 min of "
            "compute one job at a time") in out, out


def test_a_matched_cell_that_is_done_is_not_priced_again(tmp_path, capsys):
    """random:match=magnitude runs the magnitude cell itself only while that one has no
    record; once it has, the random cell's own fine-tuning is all that is left."""
    from bench.plan.grid import load_grid
    from bench.status import main
    from bench.store import ResultStore

    base = {k: v for k, v in TINY.items() if k != "dataset"}
    grid = tmp_path / "g.yaml"
    grid.write_text(yaml.safe_dump({"name": "g", "methods": ["magnitude", "random:match=magnitude"],
                                    "datasets": ["synthetic"], "sparsities": [0.5],
                                    "seeds": [0], "base": base}))
    magnitude = next(c for c in load_grid(str(grid)).cells() if c.method == "magnitude")
    store = ResultStore(tmp_path / "r")
    store.write({"id": magnitude.id, "label": "magnitude", "status": "ok",
                 "config": magnitude.to_dict(), "accuracy": {"test": 0.5},
                 "cost": {"seconds_cell": 120.0}})
    assert main(["--grid", str(grid), "--results", str(store.root)]) == 0
    out = capsys.readouterr().out
    # its fine-tuning (120 s) and seed 0's dense network, not cached (120 s): 4 min, not 6
    assert "\nleft: 1 cell(s) not running and 1 shared phase(s) not yet cached: ≈ 4 min" in out, out
