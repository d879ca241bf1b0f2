"""Model builders: CIFAR-variant ResNets, small CIFAR ResNets, a plain CNN, and `timm:<name>`.

Every builder takes (num_classes, in_channels, image_size) and returns an nn.Module.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from bench.catalog import MODELS
from bench.registry import UnknownNameError

ModelBuilder = Callable[[int, int, int], nn.Module]


def build_model(name: str, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    if name.startswith("timm:"):
        return _timm(name[5:], num_classes, in_channels)
    if "/w" in name:  # "resnet20/w20": a narrower resnet, built by the small-dense reference
        base, _, width = name.partition("/w")
        return narrow_resnet(base, int(width), num_classes, in_channels)
    return MODELS.get(name)(num_classes, in_channels, image_size)


def _timm(name: str, num_classes: int, in_channels: int) -> nn.Module:
    import timm  # deferred: seconds of start-up, for timm: names only

    if name not in timm.list_models():
        raise UnknownNameError(f"unknown timm model {name!r}; see timm.list_models()")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)


# --- ResNet-18/50, CIFAR variant: 3x3 stem, stride 1, no max-pool ---------------------------


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu1, self.relu2 = nn.ReLU(inplace=True), nn.ReLU(inplace=True)
        self.shortcut = _shortcut(cin, planes * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu1, self.relu2, self.relu3 = (nn.ReLU(inplace=True) for _ in range(3))
        self.shortcut = _shortcut(cin, planes * 4, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class ResNet(nn.Module):
    """Stages of residual blocks; `widths` sets the stages (4 for ResNet-18/50, 3 for resnet20)."""

    def __init__(self, block: type[nn.Module], depths: list[int], widths: list[int],
                 num_classes: int, in_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        layers, cin = [], widths[0]
        for i, (depth, width) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(cin, width, stride))
                cin = width * block.expansion  # type: ignore[attr-defined]
            layers.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(self.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


RESNETS: dict[str, tuple[type[nn.Module], list[int], list[int]]] = {}  # name -> its architecture


def narrow_widths(name: str, last: int) -> list[int]:
    """The stage widths of resnet `name` narrowed so that its last stage has `last` channels; the
    other stages keep their ratios to it (rounded, at least 1)."""
    widths = RESNETS[name][2]
    return [max(1, round(w * last / widths[-1])) for w in widths[:-1]] + [last]


def narrow_resnet(name: str, last: int, num_classes: int, in_channels: int) -> nn.Module:
    if name not in RESNETS or not 1 <= last <= RESNETS[name][2][-1]:
        raise UnknownNameError(f"no narrower {name!r} with {last} channels; resnets: "
                               f"{', '.join(RESNETS)}, last-stage width 1..full")
    block, depths, _ = RESNETS[name]
    return ResNet(block, depths, narrow_widths(name, last), num_classes, in_channels)


def _register_resnet(name: str, block: type[nn.Module], depths: list[int], widths: list[int]):
    RESNETS[name] = (block, depths, widths)

    @MODELS.register(name)
    def build(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
        return ResNet(block, depths, widths, num_classes, in_channels)

    build.__qualname__ = f"build_{name}"
    return build


_register_resnet("resnet18", BasicBlock, [2, 2, 2, 2], [64, 128, 256, 512])
_register_resnet("resnet34", BasicBlock, [3, 4, 6, 3], [64, 128, 256, 512])
_register_resnet("resnet50", Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512])
# He et al.'s CIFAR ResNets (6n+2 layers), with 1x1 projection shortcuts.
for _n, _name in ((3, "resnet20"), (5, "resnet32"), (9, "resnet56"), (18, "resnet110")):
    _register_resnet(_name, BasicBlock, [_n] * 3, [16, 32, 64])


@MODELS.register("smallcnn")
def build_smallcnn(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """A plain 4-conv network with no skip connections: fast on CPU, for tests."""
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]

    return nn.Sequential(*block(in_channels, 16), *block(16, 32), nn.MaxPool2d(2),
                         *block(32, 32), *block(32, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(64, num_classes))


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state dict on the CPU: what caches, checkpoints and snapshots keep."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
