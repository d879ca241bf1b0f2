"""pytest-benchmark suite, skipped in the default run (`--benchmark-skip` in pyproject.toml).

    python3 -m pytest tests/benchmarks --benchmark-only --benchmark-group-by=group

Each group holds the harness and its baseline, so the ratio is read from one run; the printed
ratio table of `python -m bench.perf` measures the same pairs interleaved.
"""
import pytest
import torch

from bench.data.loader import DeviceLoader
from bench.train.importance import ImportanceEMA
from bench.masks import attach_mask, global_topk_mask, magnitude_scores
from bench.train.models import build_model
from bench.perf.timing import cifar_like
from bench.train.trainer import Phase, Trainer

STEPS, BATCH = 4, 128


@pytest.fixture(scope="module")
def data():
    return cifar_like(BATCH * STEPS)


def _model(name="resnet20"):
    torch.manual_seed(0)
    return build_model(name, 10, 3, 32)


@pytest.mark.benchmark(group="throughput-resnet20")
def test_harness_fit(benchmark, data):
    trainer, model = Trainer(data, progress=False), _model()
    benchmark.pedantic(trainer.fit, (model, Phase("b", 1, batch_size=BATCH)), rounds=3,
                       warmup_rounds=1)


@pytest.mark.benchmark(group="throughput-resnet20")
def test_bare_loop(benchmark, data):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    x, y = torch.randn(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))

    def loop():
        for _ in range(STEPS):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

    benchmark.pedantic(loop, rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group="mask-resnet20")
@pytest.mark.parametrize("masked", [True, False])
def test_mask_enforcement(benchmark, data, masked):
    trainer, model = Trainer(data, progress=False), _model()
    if masked:
        attach_mask(model, global_topk_mask(magnitude_scores(model), 0.98)[0])
    benchmark.pedantic(trainer.fit, (model, Phase("b", 1, batch_size=BATCH)), rounds=3,
                       warmup_rounds=1)


@pytest.mark.benchmark(group="importance-resnet20")
@pytest.mark.parametrize("scoring", [True, False])
def test_importance_accumulation(benchmark, data, scoring):
    trainer, model = Trainer(data, progress=False), _model()
    hooks = [ImportanceEMA(model)] if scoring else []
    benchmark.pedantic(trainer.fit, (model, Phase("b", 1, batch_size=BATCH), ),
                       {"hooks": hooks}, rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group="pipeline")
def test_device_pipeline(benchmark):
    data = cifar_like(5000)
    loader = DeviceLoader(data.train, data, BATCH, train=True)
    benchmark.pedantic(lambda: [b for b in loader], rounds=3, warmup_rounds=1)


@pytest.mark.benchmark(group="pipeline")
def test_torchvision_dataloader(benchmark):
    import torchvision.transforms as T
    from torch.utils.data import DataLoader, TensorDataset

    data = cifar_like(5000)
    tf = T.Compose([T.RandomCrop(32, 4), T.RandomHorizontalFlip(),
                    T.Normalize(data.mean, data.std)])

    class Tf(TensorDataset):
        def __getitem__(self, i):
            x, y = super().__getitem__(i)
            return tf(x.float() / 255), y

    loader = DataLoader(Tf(data.train.images, data.train.labels), batch_size=BATCH, shuffle=True)
    benchmark.pedantic(lambda: [b for b in loader], rounds=3, warmup_rounds=1)
