"""MobileNetV2 (Sandler et al. 2018), width 1.0, ImageNet 224x224.

Layer shapes and module layout follow torchvision (features.N..., classifier.1)
so the parameter count (3.50 M) and MACs (~300 M) match the published network.
"""
from __future__ import annotations

from torch import nn

# (expansion t, output channels c, repeats n, first stride s), from the paper's Table 2.
_SETTINGS = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def _conv_bn_relu6(in_ch: int, out_ch: int, k: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand (skipped when t == 1) -> 3x3 depthwise -> 1x1 linear projection;
    residual add when the block keeps shape."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, t: int):
        super().__init__()
        hidden = in_ch * t
        self.use_res = stride == 1 and in_ch == out_ch
        layers = [] if t == 1 else [_conv_bn_relu6(in_ch, hidden, k=1)]
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 1000, in_ch: int = 3, dropout: float = 0.2):
        super().__init__()
        ch = 32
        features = [_conv_bn_relu6(in_ch, ch, stride=2)]
        for t, c, n, s in _SETTINGS:
            for i in range(n):
                features.append(InvertedResidual(ch, c, s if i == 0 else 1, t))
                ch = c
        features.append(_conv_bn_relu6(ch, 1280, k=1))
        self.features = nn.Sequential(*features)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(1280, num_classes))
        # torchvision's MobileNetV2 init.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


def mobilenetv2(num_classes: int = 1000, in_ch: int = 3) -> MobileNetV2:
    return MobileNetV2(num_classes, in_ch)
