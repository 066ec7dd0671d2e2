"""ResNets defined here so the project needs no torchvision.

ImageNet ResNet-18/50 match torchvision's layer shapes and module names
(conv1, layer1.0.conv1, layer2.0.downsample.0, fc, ...), so compression
formats keyed by qualified name carry over. Bottleneck puts the stride on the
3x3 conv (torchvision's "ResNet v1.5"). ResNet-20 is the CIFAR network of He
et al. 2016 (3 stages of 16/32/64 channels) with option-B shortcuts: a 1x1
strided conv + BN wherever the shape changes.
"""
from __future__ import annotations

from torch import nn


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = _conv3x3(in_ch, ch, stride)
        self.bn1 = nn.BatchNorm2d(ch)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(ch, ch)
        self.bn2 = nn.BatchNorm2d(ch)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # The shortcut runs after the main path, as in torchvision, so traced
        # layer order is conv1, conv2, downsample.
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(ch)
        self.conv2 = _conv3x3(ch, ch, stride)
        self.bn2 = nn.BatchNorm2d(ch)
        self.conv3 = nn.Conv2d(ch, ch * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(ch * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def _make_stage(block, in_ch: int, ch: int, blocks: int, stride: int) -> tuple[nn.Sequential, int]:
    out_ch = ch * block.expansion
    downsample = None
    if stride != 1 or in_ch != out_ch:
        downsample = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
        )
    layers = [block(in_ch, ch, stride, downsample)]
    layers += [block(out_ch, ch) for _ in range(1, blocks)]
    return nn.Sequential(*layers), out_ch


def _init_weights(model: nn.Module) -> None:
    # torchvision's ResNet init; Linear keeps PyTorch's default.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNet(nn.Module):
    """ImageNet ResNet: 7x7/2 conv, 3x3/2 maxpool, four stages, avgpool, fc."""

    def __init__(self, block, layers: list[int], num_classes: int = 1000, in_ch: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        ch = 64
        self.layer1, ch = _make_stage(block, ch, 64, layers[0], 1)
        self.layer2, ch = _make_stage(block, ch, 128, layers[1], 2)
        self.layer3, ch = _make_stage(block, ch, 256, layers[2], 2)
        self.layer4, ch = _make_stage(block, ch, 512, layers[3], 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, num_classes)
        _init_weights(self)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


class CifarResNet(nn.Module):
    """CIFAR ResNet-(6n+2): 3x3 conv, three stages of n BasicBlocks, avgpool, fc."""

    def __init__(self, n: int, in_ch: int = 3, num_classes: int = 10):
        super().__init__()
        self.conv1 = _conv3x3(in_ch, 16)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        ch = 16
        self.layer1, ch = _make_stage(BasicBlock, ch, 16, n, 1)
        self.layer2, ch = _make_stage(BasicBlock, ch, 32, n, 2)
        self.layer3, ch = _make_stage(BasicBlock, ch, 64, n, 2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(ch, num_classes)
        _init_weights(self)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def resnet18(num_classes: int = 1000, in_ch: int = 3) -> ResNet:
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, in_ch)


def resnet50(num_classes: int = 1000, in_ch: int = 3) -> ResNet:
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, in_ch)


def resnet20(in_ch: int = 3, num_classes: int = 10) -> CifarResNet:
    return CifarResNet(3, in_ch, num_classes)
