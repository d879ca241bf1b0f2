"""How much each section of `python -m bench.accept` does: the full size, which fits in about
8 minutes on one modern GPU, and --tiny, a smoke run of a few seconds a method on a CPU (the test
suite's). Every number the sections use is here, so the two sizes can be read side by side."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    # 2. methods: one cell each on CIFAR-shaped data, in the official CIFAR-10 layout
    train_images: int  # written to data_batch_1..5 (a tenth is carved off as validation)
    test_images: int
    batch_size: int
    epochs: tuple[tuple[str, int], ...]  # RunConfig's epoch fields
    # (student, teacher) in order of preference: the first pair a method's precheck accepts
    models: tuple[tuple[str, str], ...]
    sparsity: float  # the target; a method that refuses it (dense) gets 0
    # 3. speed
    speed_batch: int
    speed_steps: int
    speed_repeats: int
    compile: bool  # also the torch.compile rows
    pipeline_images: int
    pipeline_repeats: int
    pipeline_workers: tuple[int, ...]  # torchvision DataLoader num_workers tried (the best counts)
    # 4. packing
    pack_counts: tuple[int, ...]
    pack_batch: int
    pack_steps: int  # training steps per fit; a process fits until pack_seconds have passed
    pack_seconds: float
    pack_threads: int | None  # CPU threads per process (None: the cores shared out)
    # 5. host memory: a magnitude cell on this much CIFAR (None: the full 50,000 / 10,000)
    memory_train_images: int | None
    memory_test_images: int | None
    memory_model: str
    memory_batch: int

    def epoch_fields(self) -> dict[str, int]:
        return dict(self.epochs)


FULL = Budget(
    train_images=512, test_images=256, batch_size=128,
    epochs=(("teacher_epochs", 2), ("dense_epochs", 2), ("sparse_epochs", 2),
            ("round_epochs", 1)),
    models=(("resnet20", "resnet32"),), sparsity=0.5,
    speed_batch=128, speed_steps=50, speed_repeats=5, compile=True,
    # torchvision's epochs are the slow part here (a few thousand images/s on the host's cores)
    pipeline_images=10_000, pipeline_repeats=3, pipeline_workers=(2, 4, 8),
    pack_counts=(1, 2, 4, 8), pack_batch=128, pack_steps=10, pack_seconds=8.0, pack_threads=None,
    memory_train_images=None, memory_test_images=None, memory_model="resnet20", memory_batch=128,
)

# smallcnn where a method accepts it (3x fewer MACs than resnet20, and a tenth of the weights to
# save and load); small-dense needs a built-in resnet and falls back to resnet20.
TINY = Budget(
    train_images=24, test_images=16, batch_size=8,
    epochs=(("teacher_epochs", 1), ("dense_epochs", 2), ("sparse_epochs", 2),
            ("round_epochs", 1)),
    models=(("smallcnn", "smallcnn"), ("resnet20", "resnet20")), sparsity=0.3,  # COLT: 2 rounds
    speed_batch=8, speed_steps=1, speed_repeats=1, compile=False,
    pipeline_images=256, pipeline_repeats=1, pipeline_workers=(0,),
    pack_counts=(1, 2), pack_batch=8, pack_steps=1, pack_seconds=0.0, pack_threads=1,
    memory_train_images=500, memory_test_images=100, memory_model="smallcnn", memory_batch=64,
)
