"""The bench.perf rows measured on synthetic tensors in this one process: training throughput
against a bare loop, the device pipeline against torchvision's DataLoader, the cost of the mask
and of importance scoring, and the per-batch crops against the windowed loader (issue 17)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

import bench.train.trainer as trainer_module
from bench.data.loader import DeviceLoader
from bench.masks import attach_mask, global_topk_mask, magnitude_scores
from bench.perf.timing import alternate, cifar_like, timed
from bench.train.importance import ImportanceEMA
from bench.train.models import build_model
from bench.train.trainer import Phase, Trainer
from methods.teacher_guided import TeacherGuidedObjective


def throughput(model_name: str, device: str, steps: int, repeats: int, batch: int = 128,
               compile: bool = False) -> tuple[float, float]:
    """Images/s of Trainer.fit against a bare loop (same model, SGD, batch; pre-made tensors)."""
    data = cifar_like(batch * steps)
    trainer = Trainer(data, device, progress=False, compile=compile)
    torch.manual_seed(0)
    model = trainer.prepare(build_model(model_name, 10, 3, 32))
    phase = Phase("bench", 1, batch_size=batch)

    def harness():
        trainer.fit(model, phase)

    x = torch.randn(batch, 3, 32, 32, device=device)
    if trainer.channels_last:  # the same layout as the harness's batches
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    step_model = torch.compile(model) if compile else model

    def bare():
        model.train()
        for _ in range(steps):
            with trainer.autocast():
                loss = nn.functional.cross_entropy(step_model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    th, tb = alternate(timed(harness, trainer.sync), timed(bare, trainer.sync), repeats)
    images = batch * steps
    return images / th, images / tb


def pipeline(device: str, n: int, repeats: int, batch: int = 128,
             workers: Sequence[int] = (0, 1, 2)) -> tuple[float, float, int]:
    """Images/s of the device loader (crop+flip+normalise) against torchvision's DataLoader at
    its best number of `workers`."""
    # deferred: torchvision's ~2 s start-up, for this row only
    import torchvision.transforms as T
    from torch.utils.data import DataLoader, Dataset

    data = cifar_like(n)
    loader = DeviceLoader(data.train, data, batch, train=True, device=device)

    def ours():
        for b in loader:
            pass
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    class Images(Dataset):
        def __init__(self):
            self.images = data.train.images.permute(0, 2, 3, 1).numpy()
            self.labels = data.train.labels.numpy()
            self.tf = T.Compose([T.ToPILImage(), T.RandomCrop(32, 4), T.RandomHorizontalFlip(),
                                 T.ToTensor(), T.Normalize(data.mean, data.std)])

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, i):
            return self.tf(self.images[i]), int(self.labels[i])

    best = None
    for count in workers:
        tv = DataLoader(Images(), batch_size=batch, shuffle=True, num_workers=count,
                        persistent_workers=count > 0, pin_memory=device.startswith("cuda"))

        def theirs(tv=tv):
            for xb, yb in tv:
                xb.to(device, non_blocking=True)
            if device.startswith("cuda"):  # the last copies are asynchronous: wait, as `ours` does
                torch.cuda.synchronize()

        t_ours, t_tv = alternate(timed(ours, lambda: None), timed(theirs, lambda: None), repeats)
        if best is None or t_tv < best[1]:
            best = (t_ours, t_tv, count)
    t_ours, t_tv, count = best
    return n / t_ours, n / t_tv, count


def mask_cost(device: str, steps: int, repeats: int, batch: int = 128,
              model_name: str = "resnet18") -> tuple[float, float]:
    """Seconds of training steps of ResNet-18 at 98% sparsity with mask enforcement vs the same
    sparse weights trained without a mask (so both do the same arithmetic on the same values)."""
    data = cifar_like(batch * steps)
    trainer = Trainer(data, device, progress=False)
    torch.manual_seed(0)
    masked = trainer.prepare(build_model(model_name, 10, 3, 32))
    attach_mask(masked, global_topk_mask(magnitude_scores(masked), 0.98)[0])
    unmasked = trainer.prepare(build_model(model_name, 10, 3, 32))
    unmasked.load_state_dict({k: v for k, v in masked.state_dict().items()
                              if not k.endswith("weight_mask")})
    phase = Phase("bench", 1, batch_size=batch)
    return alternate(timed(lambda: trainer.fit(masked, phase), trainer.sync),
                     timed(lambda: trainer.fit(unmasked, phase), trainer.sync), repeats)


def importance_cost(device: str, steps: int, repeats: int, batch: int = 128,
                    model_name: str = "resnet20") -> tuple[float, float]:
    """An epoch with the teacher-guided loss, with and without importance accumulation."""
    data = cifar_like(batch * steps)
    trainer = Trainer(data, device, progress=False)
    torch.manual_seed(0)
    teacher = trainer.prepare(build_model("resnet32", 10, 3, 32)).eval()
    student = trainer.prepare(build_model(model_name, 10, 3, 32))
    objective = TeacherGuidedObjective(teacher, 0.9, 3.0, "sample")
    phase = Phase("bench", 1, batch_size=batch)
    scoring = ImportanceEMA(student)
    return alternate(timed(lambda: trainer.fit(student, phase, objective, [scoring]), trainer.sync),
                     timed(lambda: trainer.fit(student, phase, objective), trainer.sync), repeats)


class _WindowedLoader(DeviceLoader):
    """The loader before issue 17, kept as the baseline of the lean-loader row: every shifted
    crop of the zero-padded split and of its mirror as one strided view, built once per split
    (2.5x the split's memory for 64x64 images with pad 4)."""

    windows: dict[int, torch.Tensor] = {}

    def _crops(self, idx, shifts, flips):
        images, pad = self.split.images, self.pad
        key = id(images)
        if key not in self.windows:
            self.windows.clear()
            _, _, h, w = images.shape
            padded = nn.functional.pad(images, (pad, pad, pad, pad)) if pad else images
            stack = torch.stack([padded, padded.flip(3)]) if self.flip else padded.unsqueeze(0)
            self.windows[key] = stack.unfold(3, h, 1).unfold(4, w, 1)
        win = self.windows[key]
        rows = shifts[0] if shifts is not None else idx.new_zeros(len(idx))
        cols = shifts[1] if shifts is not None else idx.new_zeros(len(idx))
        if flips is None:
            return win[0, idx, :, rows, cols]
        cols = torch.where(flips, 2 * pad - cols, cols)
        return win[flips.long(), idx, :, rows, cols]


def lean_loader(device: str, repeats: int, n: int = 4096, size: int = 64,
                model_name: str = "smallcnn") -> tuple[float, float]:
    """Images/s of a training epoch (Trainer.fit) with the per-batch crops against the windowed
    loader, TinyImageNet-shaped (64x64, pad 4, flip) by default."""
    data = cifar_like(n, classes=200, size=size)
    trainer = Trainer(data, device, progress=False)
    torch.manual_seed(0)
    model = trainer.prepare(build_model(model_name, 200, 3, size))
    phase = Phase("bench", 1, batch_size=128)

    def with_loader(cls):
        def run():
            trainer_module.DeviceLoader = cls
            try:
                trainer.fit(model, phase)
            finally:
                trainer_module.DeviceLoader = DeviceLoader
        return run

    lean, windowed = alternate(timed(with_loader(DeviceLoader), trainer.sync),
                               timed(with_loader(_WindowedLoader), trainer.sync), repeats)
    _WindowedLoader.windows.clear()
    return n / lean, n / windowed
