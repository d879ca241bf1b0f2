import shutil

import pytest
import torch

from bench.data import load_dataset
from bench.train.models import build_model
from bench.train.trainer import Hook, NonFiniteLoss, Phase, Trainer, ce_objective


def make(seed=0):
    torch.manual_seed(seed)
    return build_model("smallcnn", 4, 3, 8)


@pytest.fixture(scope="module")
def data():
    return load_dataset("synthetic")


def test_training_learns_and_records_history(data):
    trainer = Trainer(data, progress=False)
    model = make()
    result = trainer.fit(model, Phase("p", 3, batch_size=32, lr=0.05))
    assert len(result.val_acc) == 3 and len(result.train_loss) == 3 and result.seconds > 0
    # full batches only (the ragged last one is dropped), so images/s counts what was trained on
    assert result.images == 3 * (len(data.train) // 32) * 32
    assert result.as_record()["images"] == result.images
    assert result.train_loss[-1] < result.train_loss[0]
    assert trainer.accuracy(model, data.test) > 0.5  # 4 classes: chance is 0.25


@pytest.mark.slow
def test_same_seed_is_bit_identical_on_cpu(data, precision):
    states = []
    for _ in range(2):
        model = make()
        Trainer(data, seed=5, progress=False, precision=precision).fit(
            model, Phase("p", 2, batch_size=32))
        states.append(model.state_dict())
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.slow
def test_a_nan_loss_names_phase_and_epoch(data):
    def bad(model, batch):
        logits = model(batch.x)
        return logits.sum() * float("nan"), logits

    with pytest.raises(NonFiniteLoss, match="loss became nan in phase 'explode' at epoch 1/2"):
        Trainer(data, progress=False).fit(make(), Phase("explode", 2, batch_size=32), bad)


def test_hooks_see_every_step_in_order(data):
    calls = []

    class Spy(Hook):
        def on_epoch_start(self, s): calls.append("epoch")
        def after_backward(self, s):
            assert all(p.grad is not None for p in s.model.parameters())
            calls.append("backward")
        def after_step(self, s): calls.append("step")
        def on_epoch_end(self, s): calls.append("end")

    trainer = Trainer(data, progress=False)
    trainer.fit(make(), Phase("p", 1, batch_size=64), ce_objective, [Spy()])
    steps = len(trainer.loader(data.train, 64, train=True))
    assert calls == ["epoch"] + ["backward", "step"] * steps + ["end"]


def test_step_schedule_and_warmup():
    p = Phase("p", 10, schedule="step", milestones=(0.5, 0.8), gamma=0.1, warmup_epochs=1)
    assert p.lr_factor(0, 10) == pytest.approx(0.1)
    assert p.lr_factor(20, 10) == 1.0 and p.lr_factor(50, 10) == pytest.approx(0.1)
    assert p.lr_factor(85, 10) == pytest.approx(0.01)
    c = Phase("c", 10)
    assert c.lr_factor(0, 10) == 1.0 and c.lr_factor(100, 10) == pytest.approx(0.0)


@pytest.mark.slow
def test_resume_after_a_crash_matches_an_uninterrupted_run(data, tmp_path, precision):
    phase = Phase("p", 3, batch_size=32)
    full = make()
    Trainer(data, seed=1, progress=False, precision=precision).fit(full, phase)

    class Crash(Hook):
        def on_epoch_start(self, s):
            if s.epoch == 2:
                raise KeyboardInterrupt  # a kill between epochs 2 and 3

    crashed = make()
    with pytest.raises(KeyboardInterrupt):
        Trainer(data, seed=1, progress=False, precision=precision).fit(
            crashed, phase, ce_objective, [Crash()], checkpoint=tmp_path / "p.pt")
    saved = torch.load(tmp_path / "p.pt", weights_only=False)
    assert saved["epoch"] == 2
    # the checkpoint holds the fp32 master weights whatever the training precision
    assert all(v.dtype == torch.float32 for v in saved["model"].values() if v.is_floating_point())
    resumed = make(seed=99)  # a different init: the checkpoint must overwrite it
    result = Trainer(data, seed=1, progress=False, precision=precision).fit(
        resumed, phase, checkpoint=tmp_path / "p.pt")
    assert result.resumed_from_epoch == 2 and len(result.val_acc) == 3
    assert result.images == 3 * (len(data.train) // 32) * 32  # the killed run's epochs count
    assert all(torch.equal(resumed.state_dict()[k], full.state_dict()[k])
               for k in full.state_dict())


def test_a_checkpoint_from_another_precision_restarts_its_phase(data, tmp_path):
    """precision=auto is not in the cell id: a cell killed on a CPU (fp32) that resumes on a GPU
    (bf16) must not mix the two in one phase; an older checkpoint without the field resumes."""
    phase = Phase("p", 3, batch_size=32)

    class Crash(Hook):
        def on_epoch_start(self, s):
            if s.epoch == 2:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Trainer(data, seed=1, progress=False, precision="fp32").fit(
            make(), phase, ce_objective, [Crash()], checkpoint=tmp_path / "p.pt")
    saved = torch.load(tmp_path / "p.pt", weights_only=False)
    assert saved["precision"] == "fp32"
    other = Trainer(data, seed=1, progress=False, precision="bf16").fit(
        make(), phase, checkpoint=tmp_path / "p.pt")
    assert other.resumed_from_epoch == 0 and len(other.val_acc) == 3
    del saved["precision"]  # written before checkpoints named their precision
    torch.save(saved, tmp_path / "old.pt")
    old = Trainer(data, seed=1, progress=False, precision="fp32").fit(
        make(), phase, checkpoint=tmp_path / "old.pt")
    assert old.resumed_from_epoch == 2


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("c++") or shutil.which("g++")),
                    reason="torch.compile's CPU backend needs a C++ compiler")
def test_masks_hold_under_torch_compile(data):
    """--compile trains the compiled module while masks are enforced on the eager parameters it
    shares: pruned weights stay exactly zero and training matches eager mode."""
    from bench.masks import attach_mask, global_topk_mask, magnitude_scores, verify_mask

    eager, compiled = make(), make()
    mask, _ = global_topk_mask(magnitude_scores(eager), 0.9)
    attach_mask(eager, mask)
    attach_mask(compiled, mask)
    before = {k: v.clone() for k, v in compiled.state_dict().items()}
    phase = Phase("p", 2, batch_size=32)
    torch._dynamo.reset()
    r_eager = Trainer(data, progress=False).fit(eager, phase)
    r_compiled = Trainer(data, progress=False, compile=True).fit(compiled, phase)
    report = verify_mask(compiled, 0.9)
    assert report.prunable_kept == sum(int(m.sum()) for m in mask.values())
    for name, module in compiled.named_modules():
        if name in mask:
            assert torch.all(module.weight[~mask[name]] == 0), name
            assert not torch.equal(module.weight, before[f"{name}.weight"]), name  # it trained
    assert r_compiled.train_loss == pytest.approx(r_eager.train_loss, rel=1e-2)


@pytest.mark.parametrize("side, batch", [(8, 512), (32, 512), (64, 128), (224, 32)])
def test_evaluation_batches_hold_as_many_pixels_as_512_cifar_images(side, batch):
    """At TinyImageNet's 64x64 a batch of 512 held about 1 GB of activations on the host; the
    evaluation batch shrinks with the image's area (to no fewer than 32), so evaluating costs no
    more memory than training did. Checked through the batches a model actually receives."""
    from bench.data import DataBundle, Split
    from bench.data.datasets import DATASETS

    n = 2 * batch + 3
    split = Split(torch.zeros((n, 3, side, side), dtype=torch.uint8), torch.arange(n) % 4)
    bundle = DataBundle(DATASETS.get("synthetic"), split, split, split, (0.5,) * 3, (0.25,) * 3)
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(len(x))
            return torch.zeros((len(x), 4))

    trainer = Trainer(bundle, progress=False)
    trainer.accuracy(Recorder(), split)
    assert max(seen) == batch and sum(seen) == n
    seen.clear()
    assert trainer.logits(Recorder(), split).shape == (n, 4) and max(seen) == batch
