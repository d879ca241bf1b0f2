"""Precision: resolution on faked hardware, ids and records, masks and evaluation under bf16."""
import json

import pytest
import torch

from bench.train import precision
from bench.exec.cell import RunOptions, run_cell
from bench.config import RunConfig
from bench.data import load_dataset
from bench.train.importance import ImportanceEMA
from bench.masks import attach_mask, get_mask, global_topk_mask, magnitude_scores
from bench.train.models import build_model
from bench.registry import UsageError
from bench.run import build_parser, select_cells
from bench.store import ResultStore, flatten_record
from bench.train.trainer import Hook, Phase, Trainer
from conftest import TINY, run_cli

INTEL_SPR = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16 amx_bf16 amx_tile\n"
ZEN3 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
GRAVITON3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.fixture
def fake_cpu(tmp_path, monkeypatch):
    """Point the capability check at a fake /proc/cpuinfo (the process boundary it reads)."""
    def use(text: str) -> None:
        path = tmp_path / f"cpuinfo-{abs(hash(text))}"
        path.write_text(text)
        monkeypatch.setattr(precision, "CPUINFO", str(path))
    return use


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic")


@pytest.mark.parametrize("cpuinfo", [INTEL_SPR, GRAVITON3, ZEN3, ""])
def test_auto_is_fp32_on_every_cpu_whatever_its_flags(fake_cpu, cpuinfo):
    # a benchmark's numbers must not depend on which CPU ran it (issue 30): bf16 units or not
    fake_cpu(cpuinfo)
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    # the flags are still read (the acceptance run reports them; emulated bf16 is slower)
    assert precision.cpu_has_native_bf16() == (cpuinfo in (INTEL_SPR, GRAVITON3))
    # an explicit choice is honoured whatever the hardware
    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    assert precision.resolve_precision("bf16", "cpu") == "bf16"


def test_a_missing_cpuinfo_means_fp32(monkeypatch, tmp_path):
    monkeypatch.setattr(precision, "CPUINFO", str(tmp_path / "absent"))
    assert precision.cpu_flags() == frozenset()
    assert not precision.cpu_has_native_bf16()


@pytest.mark.parametrize("supported,expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_asks_the_device(monkeypatch, fake_cpu, supported, expected):
    fake_cpu(ZEN3 if supported else INTEL_SPR)  # the CPU's flags must not decide for a GPU
    asked = []

    def is_bf16_supported(including_emulation=True):
        asked.append(including_emulation)
        return supported

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert precision.resolve_precision("auto", "cuda:0") == expected
    assert asked == [False]  # emulated bf16 is slower than fp32: not a reason to pick it


def test_bad_precision_is_a_usage_error():
    with pytest.raises(UsageError, match=r"precision='fp16' is invalid; valid: auto, fp32, bf16"):
        precision.resolve_precision("fp16", "cpu")
    with pytest.raises(UsageError, match=r"precision='half' is invalid; valid: auto, fp32, bf16"):
        RunConfig(precision="half")


def test_auto_stays_out_of_the_id_and_explicit_precisions_enter_it():
    base = RunConfig(**TINY)
    assert "precision" not in base.canonical()
    assert RunConfig(**TINY, precision="auto").id == base.id
    ids = {base.id, RunConfig(**TINY, precision="fp32").id, RunConfig(**TINY, precision="bf16").id}
    assert len(ids) == 3
    # a config written before the field existed loads with the default and keeps its id
    old = base.to_dict()
    del old["precision"]
    assert RunConfig.from_dict(old).id == base.id


@pytest.mark.e2e
def test_the_command_line_and_set_choose_the_precision(tmp_path):
    parser = build_parser()
    _, cells = select_cells(parser.parse_args(["--precision", "bf16", "--seeds", "0"]))
    assert cells and {c.precision for c in cells} == {"bf16"}
    _, cells = select_cells(parser.parse_args(["--set", "precision=fp32", "--seeds", "0"]))
    assert {c.precision for c in cells} == {"fp32"}
    _, cells = select_cells(parser.parse_args(["--seeds", "0"]))
    assert {c.precision for c in cells} == {"auto"}
    res = run_cli("bench.run", "--results", tmp_path / "r", "--precision", "fp16")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "--precision" in res.stderr and "'fp16'" in res.stderr and "bf16" in res.stderr
    res = run_cli("bench.run", "--results", tmp_path / "r", "--set", "precision=fp16")
    assert res.returncode == 2 and "precision='fp16' is invalid; valid: auto, fp32, bf16" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("cpuinfo,requested,expected", [(ZEN3, "auto", "fp32"),
                                                        (INTEL_SPR, "auto", "fp32"),
                                                        (ZEN3, "bf16", "bf16")])
def test_records_hold_the_resolved_precision_and_memory_format(tmp_path, fake_cpu, cpuinfo,
                                                               requested, expected):
    fake_cpu(cpuinfo)
    store = ResultStore(tmp_path)
    config = RunConfig(**{**TINY, "method": "magnitude", "precision": requested})
    record = run_cell(config, store, RunOptions(progress=False, save_checkpoints=False))
    assert record["status"] == "ok", record.get("error")
    assert record["precision"] == expected and record["config"]["precision"] == requested
    assert record["memory_format"] == "contiguous"  # smallcnn: slower in channels_last on a CPU
    on_disk = json.loads(store.record_path(config.id).read_text())
    assert on_disk["precision"] == expected
    row = store.frame([config.id]).iloc[0]
    assert row["precision"] == expected and row["memory_format"] == record["memory_format"]


def test_a_record_without_the_field_reads_as_what_the_old_trainer_ran():
    old = {"id": "x", "label": "m", "status": "ok", "config": {"method": "magnitude"},
           "provenance": {"device": "cpu"}}
    assert precision.record_precision(old) == "fp32"
    assert flatten_record(old)["precision"] == "fp32"
    assert flatten_record(old)["memory_format"] is None
    # the old CUDA path always trained under bf16 autocast
    assert precision.record_precision({**old, "provenance": {"device": "cuda:0"}}) == "bf16"
    assert precision.record_precision({"config": {}}) == "fp32"


@pytest.mark.e2e
def test_the_phase_cache_does_not_share_phases_across_precisions(tmp_path, fake_cpu):
    fake_cpu(ZEN3)
    store = ResultStore(tmp_path)
    opts = RunOptions(progress=False, save_checkpoints=False)
    first = run_cell(RunConfig(**TINY, method="magnitude", sparsity=0.5), store, opts)
    fp32 = run_cell(RunConfig(**TINY, method="magnitude", sparsity=0.9, precision="fp32"), store,
                    opts)
    bf16 = run_cell(RunConfig(**TINY, method="magnitude", sparsity=0.9, precision="bf16"), store,
                    opts)
    assert first["phases"]["dense"]["cached"] is False
    assert fp32["phases"]["dense"]["cached"] is True  # auto resolved to fp32 here: same phase
    assert bf16["phases"]["dense"]["cached"] is False
    assert bf16["phases"]["dense"]["cache_key"] != fp32["phases"]["dense"]["cache_key"]


class AutocastSpy(Hook):
    """Records whether autocast is on while the model runs forward."""

    def __init__(self, model):
        self.seen: list[tuple[bool, torch.dtype]] = []
        model.register_forward_hook(lambda m, i, out: self.seen.append(
            (torch.is_autocast_enabled("cpu"), out.dtype)))


def masked_model(sparsity=0.9):
    torch.manual_seed(0)
    model = build_model("smallcnn", 4, 3, 8)
    attach_mask(model, global_topk_mask(magnitude_scores(model), sparsity)[0])
    return model


class Grab(Hook):
    """The optimizer's momentum buffers after the last step."""

    def after_step(self, state):
        self.buffers = [s["momentum_buffer"] for s in state.optimizer.state.values()]


@pytest.mark.slow
def test_masks_hold_and_master_weights_stay_fp32_under_bf16(data):
    trainer = Trainer(data, progress=False, precision="bf16")
    assert trainer.precision == "bf16"
    model = trainer.prepare(masked_model())
    spy, grab = AutocastSpy(model), Grab()
    importance = ImportanceEMA(model, "taylor")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.fit(model, Phase("p", 2, batch_size=32, lr=0.1), hooks=[importance, grab])
    assert any(on and dtype == torch.bfloat16 for on, dtype in spy.seen)  # it did train in bf16
    mask = get_mask(model)
    pruned = 0
    for name, p in model.named_parameters():
        assert p.dtype == torch.float32, name
        assert p.grad is None or p.grad.dtype == torch.float32, name
        module = name.removesuffix(".weight")
        if module in mask:
            dead = ~mask[module].bool()
            assert torch.count_nonzero(p.detach()[dead]) == 0, name  # exactly zero
            assert torch.count_nonzero(p.detach()[~dead]) > 0, name
            pruned += int(dead.sum())
    assert pruned > 0
    assert any(not torch.equal(p.detach(), before[n]) for n, p in model.named_parameters())
    assert grab.buffers and all(b.dtype == torch.float32 for b in grab.buffers)
    assert importance.steps > 0 and all(v.dtype == torch.float32 for v in importance.ema)
    assert all(torch.isfinite(s).all() for s in importance.scores().values())


def test_evaluation_is_fp32_under_a_bf16_trainer(data):
    torch.manual_seed(1)
    model = build_model("smallcnn", 4, 3, 8)
    bf16 = Trainer(data, progress=False, precision="bf16")
    fp32 = Trainer(data, progress=False, precision="fp32", memory_format=bf16.memory_format)
    bf16.fit(model, Phase("p", 1, batch_size=32))
    spy = AutocastSpy(model)
    acc = bf16.accuracy(model, data.test)
    logits = bf16.logits(model, data.test)
    assert spy.seen and all(not on and dtype == torch.float32 for on, dtype in spy.seen)
    assert torch.equal(logits, fp32.logits(model, data.test))
    assert acc == fp32.accuracy(model, data.test)
    assert acc == pytest.approx((logits.argmax(1) == bf16.data.test.labels).float().mean().item())
    # ...while the trainer's own autocast really is bf16 (so the equality above is not vacuous)
    spy.seen.clear()
    model.eval()
    with torch.no_grad(), bf16.autocast():
        model(next(iter(bf16.loader(data.test, 64, train=False))).x)
    assert spy.seen == [(True, torch.bfloat16)]


def test_memory_format_follows_device_and_model():
    assert precision.resolve_memory_format("cpu", "resnet20") == "channels_last"
    assert precision.resolve_memory_format("cpu", "resnet18") == "channels_last"
    assert precision.resolve_memory_format("cpu", "timm:resnet18") == "contiguous"
    assert precision.resolve_memory_format("cuda", "timm:resnet18") == "channels_last"
    assert precision.resolve_memory_format("cpu", "smallcnn") == "contiguous"
    assert precision.resolve_memory_format("cuda:0", "smallcnn") == "channels_last"


def test_other_trainers_inherit_the_settings(data):
    trainer = Trainer(data, progress=False, precision="bf16", memory_format="contiguous", seed=3)
    sibling = trainer.with_data(data)
    assert (sibling.precision, sibling.memory_format, sibling.seed) == ("bf16", "contiguous", 3)
    with pytest.raises(ValueError, match="memory_format='nchw' is invalid"):
        Trainer(data, memory_format="nchw")


def test_parity_table_uses_the_reference_interval_or_one_point():
    from scipy.stats import t

    from bench.parity import interval95, parity_table

    mean, half = interval95([80.0, 82.0, 84.0])
    assert mean == 82.0 and half == pytest.approx(t.ppf(0.975, 2) * 2.0 / 3 ** 0.5)  # about 4.97
    ref = {("m", 0.5): [80.0, 82.0, 84.0], ("m", 0.9): [50.0, 50.0, 50.0],
           ("r", 0.9): [60.0, 61.0, 62.0]}
    other = {("m", 0.5): [76.0, 77.0, 78.0],   # -5.0: outside the 4.97 pt interval
             ("m", 0.9): [50.5, 51.0, 51.5],   # +1.0: within 1 point although the CI is 0 wide
             ("r", 0.9): [58.0, 59.0, 60.0]}   # -2.0: inside the 2.48 pt interval
    text, ok = parity_table(ref, other, ("fp32", "bf16"))
    rows = {line.split(" | ")[0].strip("| ") + line.split(" | ")[1]: line
            for line in text.splitlines()[2:]}
    assert rows["m0.5"].endswith("| -5.00 | NO |")
    assert rows["m0.9"].endswith("| +1.00 | yes |")
    assert rows["r0.9"].endswith("| -2.00 | yes |")
    assert not ok
    _, ok = parity_table({("m", 0.9): ref[("m", 0.9)]}, {("m", 0.9): other[("m", 0.9)]},
                         ("fp32", "bf16"))
    assert ok
    text, ok = parity_table(ref, {}, ("fp32", "bf16"))
    assert not ok and text.count("| missing |") == 3


@pytest.mark.e2e
def test_parity_rejects_bad_precision_lists(tmp_path):
    res = run_cli("bench.parity", "--precisions", "fp32", "--results", tmp_path)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "--precisions 'fp32' is invalid" in res.stderr


def test_the_slurm_status_hint_selects_the_same_precision():
    from bench.cli.arguments import status_command

    assert "--precision bf16" in status_command(build_parser().parse_args(["--precision", "bf16"]))
    assert "--precision" not in status_command(build_parser().parse_args([]))


def test_mixed_precisions_lists_what_a_table_would_mix():
    ok_cpu = {"status": "ok", "config": {}, "provenance": {"device": "cpu"}}
    assert precision.mixed_precisions([ok_cpu, {**ok_cpu, "precision": "fp32"}]) == []
    assert precision.mixed_precisions([ok_cpu, {**ok_cpu, "precision": "bf16"}]) == ["bf16", "fp32"]
    # an old CUDA record (bf16 autocast then) beside a new fp32 one is a mix too
    cuda = {**ok_cpu, "provenance": {"device": "cuda:0"}}
    assert precision.mixed_precisions([cuda, {**ok_cpu, "precision": "fp32"}]) == ["bf16", "fp32"]
    # failed cells carry no number, so they mix nothing
    assert precision.mixed_precisions([ok_cpu, {**ok_cpu, "status": "failed",
                                                "precision": "bf16"}]) == []


def test_kd_targets_and_losses_are_fp32_under_a_bf16_trainer(data):
    """The student's and the teacher's logits come out of autocast in bf16; the CA-KLD target
    (both sides standardised, softened) and the loss are computed in fp32."""
    from bench.losses import teacher_guided_loss
    from methods.teacher_guided import TeacherGuidedObjective

    trainer = Trainer(data, progress=False, precision="bf16")
    torch.manual_seed(0)
    student = trainer.prepare(build_model("smallcnn", 4, 3, 8))
    teacher = trainer.prepare(build_model("smallcnn", 4, 3, 8)).eval()
    objective = TeacherGuidedObjective(teacher, 0.9, 3.0, "sample")
    batch = next(iter(trainer.loader(data.train, 32, train=True)))
    with trainer.autocast():
        loss, logits = objective(student, batch)
        with torch.no_grad():
            teacher_logits = teacher(batch.x)
    assert logits.dtype == teacher_logits.dtype == torch.bfloat16  # autocast really ran
    assert loss.dtype == torch.float32
    want = teacher_guided_loss(logits.float(), teacher_logits.float(), batch.y, alpha=0.9,
                               temperature=3.0, kd_norm="sample")
    assert torch.equal(loss.detach(), want.detach())


def test_bf16_caution_names_distillation_at_high_sparsity_only():
    kd98 = RunConfig(method="tg-oneshot", options=(("retrain", "kd"),), sparsity=0.98,
                     precision="bf16")
    caution = precision.bf16_caution([kd98, RunConfig(sparsity=0.98, precision="bf16")])
    assert caution.startswith("note: 1 cell(s) retrain by distillation") and "tg-oneshot-kd" in caution
    assert "magnitude-kd" in precision.bf16_caution(
        [RunConfig(options=(("retrain", "kd"),), sparsity=0.95, precision="bf16")])
    for quiet in (RunConfig(method="tg-oneshot", options=(("retrain", "kd"),), sparsity=0.9,
                            precision="bf16"),
                  RunConfig(method="tg-oneshot", options=(("retrain", "ft"),), sparsity=0.98,
                            precision="bf16"),
                  RunConfig(method="tg-oneshot", options=(("retrain", "kd"),), sparsity=0.98,
                            precision="fp32")):
        assert precision.bf16_caution([quiet]) is None, quiet.label
    auto = RunConfig(method="tg-oneshot", options=(("retrain", "kd"),), sparsity=0.98)
    assert precision.bf16_caution([auto], "cpu") is None  # auto is fp32 on every CPU
    assert precision.bf16_caution([auto]) is None


@pytest.mark.e2e
def test_bench_run_prints_the_bf16_caution(tmp_path):
    args = ["--methods", "tg-oneshot:retrain=kd", "--sparsities", "0.98", "--seeds", "0",
            "--no-progress", "--no-checkpoints", "--datasets", "synthetic",
            *(f"--set={k}={v}" for k, v in TINY.items() if k != "dataset"),
            "--results", tmp_path / "r"]
    bf16 = run_cli("bench.run", *args, "--precision", "bf16")
    assert bf16.returncode == 0, bf16.stderr[-2000:]
    assert "note: 1 cell(s) retrain by distillation at >= 95% sparsity under bf16" in bf16.stderr
    fp32 = run_cli("bench.run", *args[:-1], tmp_path / "f", "--precision", "fp32")
    assert fp32.returncode == 0 and "note:" not in fp32.stderr
