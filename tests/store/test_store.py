import json

import pytest

from bench.store import CorruptRecord, ResultStore


def rec(cell_id="abc", status="ok", acc=0.5):
    r = {"id": cell_id, "label": "m", "status": status, "config": {"sparsity": 0.5}}
    if status == "ok":
        r["accuracy"] = {"test": acc}
    return r


def test_write_read_and_done(tmp_path):
    store = ResultStore(tmp_path)
    store.write(rec())
    assert store.is_done("abc") and store.read("abc")["accuracy"]["test"] == 0.5
    store.write(rec("f", status="failed"))
    assert not store.is_done("f") and not store.is_done("missing")
    assert not list((tmp_path / "records").glob(".*.tmp"))


def test_hand_edited_or_truncated_records_are_detected(tmp_path):
    store = ResultStore(tmp_path)
    path = store.write(rec("a"))
    store.write(rec("b"))
    data = json.loads(path.read_text())
    data["accuracy"]["test"] = 0.99  # an edit that does not update the checksum
    path.write_text(json.dumps(data))
    with pytest.raises(CorruptRecord, match="checksum"):
        store.read("a")
    assert not store.is_done("a")  # so it is recomputed
    b = store.record_path("b")
    b.write_text(b.read_text()[:40])
    records, problems = store.load_all()
    assert records == [] and {p.path.name for p in problems} == {"a.json", "b.json"}
    assert any("not valid JSON" in p.message for p in problems)


def test_records_get_the_usual_permissions(tmp_path):
    import os
    import stat

    path = ResultStore(tmp_path).write(rec())
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_unfinished_work_is_the_folders_holding_epoch_checkpoints(tmp_path):
    """A cell's work folder and a shared phase's scratch folder count once they hold a
    checkpoint; a folder with only a metrics log has nothing to resume."""
    store = ResultStore(tmp_path)
    for path in ("work/aaa/retrain.pt", "work/bbb/metrics.jsonl",
                 "cache/dense-ce/0123.partial/dense.pt", "cache/dense-ce/0123.abc.pt"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"x")
    assert store.unfinished_work() == [tmp_path / "cache/dense-ce/0123.partial",
                                       tmp_path / "work/aaa"]
    assert ResultStore(tmp_path / "empty").unfinished_work() == []
