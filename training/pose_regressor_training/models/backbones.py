"""Feature extractors: torchvision backbones (optionally ImageNet-pretrained) and a small CNN.

Every backbone maps [B, C, H, W] to a flat feature vector [B, F]: `features` (an
nn.Sequential of stages, which auxiliary heads may branch from) then `pool` and flatten.
`in_channels` may be 3T for input fusion: the first convolution is widened and, when pretrained,
its weights are replicated over the T cameras and scaled by 1/T so that the initial response to
T identical images equals the pretrained response to one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torchvision
from torch import nn

from pose_regressor_training.errors import TrainingError


class PretrainedWeightsUnavailableError(TrainingError):
    """Pretrained weights are neither in the local cache nor downloadable."""


def widen_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of `conv` taking `in_channels` (a multiple of its input channels); weights replicated / T."""
    if in_channels == conv.in_channels:
        return conv
    if in_channels % conv.in_channels:
        raise ValueError(f"in_channels {in_channels} must be a multiple of {conv.in_channels}")
    repeats = in_channels // conv.in_channels
    wide = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        # / T: T identical images then give exactly the pretrained first-layer response
        wide.weight.copy_(conv.weight.repeat(1, repeats, 1, 1) / repeats)
        if conv.bias is not None and wide.bias is not None:
            wide.bias.copy_(conv.bias)
    return wide


class StaticAdaptiveAvgPool2d(nn.Module):
    """`adaptive_avg_pool2d` computed from static slices: the same numbers for every input size,
    but exportable to ONNX even when the output size does not divide the input size (the ONNX
    exporter and TensorRT only support the divisible case of the built-in op)."""

    def __init__(self, output_size: tuple[int, int]) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = int(x.shape[-2]), int(x.shape[-1])
        out_h, out_w = self.output_size
        if height % out_h == 0 and width % out_w == 0:
            return nn.functional.adaptive_avg_pool2d(x, self.output_size)
        rows = []
        for i in range(out_h):
            # floor start, ceil end: the same bins as PyTorch's adaptive_avg_pool2d
            top, bottom = (i * height) // out_h, -(-((i + 1) * height) // out_h)
            cells = [
                x[..., top:bottom, (j * width) // out_w : -(-((j + 1) * width) // out_w)].mean(dim=(-2, -1))
                for j in range(out_w)
            ]
            rows.append(torch.stack(cells, dim=-1))
        return torch.stack(rows, dim=-2)


class SmallCNN(nn.Module):
    """`stages` stride-2 conv blocks (widths width, 2 width, 4 width, ...) and an adaptive average
    pool to a `pool` grid of (rows, columns) cells: 2x2 keeps a coarse layout, the whole last map
    keeps every position; trains fast on a CPU. One more stage with half the width takes an input
    of twice the size per side for about a third more compute."""

    def __init__(
        self, in_channels: int, width: int = 32, stages_count: int = 4, pool: tuple[int, int] = (2, 2)
    ) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        channels = in_channels
        for i in range(stages_count):
            out = width * 2**i
            stages.append(
                nn.Sequential(
                    # no conv bias: the BatchNorm right after has its own shift
                    nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(out, out, 3, padding=1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(inplace=True),
                )
            )
            channels = out
        self.features = nn.Sequential(*stages)
        self.pool = StaticAdaptiveAvgPool2d(pool)
        self.out_features = channels * pool[0] * pool[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


class TorchvisionBackbone(nn.Module):
    """A torchvision classifier without its classification layer: conv features + global pooling."""

    def __init__(self, features: nn.Module, out_features: int) -> None:
        super().__init__()
        self.features = features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


def _load_torchvision(name: str, pretrained: bool) -> nn.Module:
    weights = "DEFAULT" if pretrained else None
    try:
        model: nn.Module = torchvision.models.get_model(name, weights=weights)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise PretrainedWeightsUnavailableError(
            f"pretrained ImageNet weights for {name} are not in the torch hub cache "
            f"({torch.hub.get_dir()}/checkpoints) and could not be downloaded ({exc}); "
            "copy the weight file there or set model.pretrained=false"
        ) from exc
    return model


def _child(module: nn.Module, name: str) -> nn.Module:
    child = getattr(module, name)
    if not isinstance(child, nn.Module):
        raise TypeError(f"{type(module).__name__}.{name} is not a module")
    return child


def _resnet(name: str, pretrained: bool, in_channels: int) -> TorchvisionBackbone:
    net = _load_torchvision(name, pretrained)
    conv1 = _child(net, "conv1")
    assert isinstance(conv1, nn.Conv2d)
    net.conv1 = widen_first_conv(conv1, in_channels)
    fc = _child(net, "fc")
    assert isinstance(fc, nn.Linear)
    stem = nn.Sequential(net.conv1, _child(net, "bn1"), _child(net, "relu"), _child(net, "maxpool"))
    layers = [_child(net, f"layer{i}") for i in range(1, 5)]
    return TorchvisionBackbone(nn.Sequential(stem, *layers), fc.in_features)


def _features_net(name: str, pretrained: bool, in_channels: int) -> TorchvisionBackbone:
    net = _load_torchvision(name, pretrained)
    features = _child(net, "features")
    assert isinstance(features, nn.Sequential)
    first_block = features[0]
    assert isinstance(first_block, nn.Sequential) and isinstance(first_block[0], nn.Conv2d)
    first_block[0] = widen_first_conv(first_block[0], in_channels)
    last_block = features[-1]
    assert isinstance(last_block, nn.Sequential) and isinstance(last_block[0], nn.Conv2d)
    return TorchvisionBackbone(features, last_block[0].out_channels)


_BUILDERS: dict[str, Callable[[str, bool, int], TorchvisionBackbone]] = {
    "resnet18": _resnet,
    "resnet34": _resnet,
    "resnet50": _resnet,
    "mobilenet_v3_small": _features_net,
    "mobilenet_v3_large": _features_net,
    "efficientnet_b0": _features_net,
}


def build_backbone(
    name: str,
    pretrained: bool,
    in_channels: int,
    small_cnn_width: int = 32,
    small_cnn_stages: int = 4,
    small_cnn_pool: tuple[int, int] = (2, 2),
) -> nn.Module:
    """A backbone with an `out_features` attribute; `in_channels` = 3 or 3T (input fusion)."""
    if name == "small_cnn":
        if pretrained:
            raise ValueError("small_cnn has no pretrained weights; set model.pretrained=false")
        return SmallCNN(in_channels, small_cnn_width, small_cnn_stages, small_cnn_pool)
    if name not in _BUILDERS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join([*_BUILDERS, 'small_cnn'])}")
    return _BUILDERS[name](name, pretrained, in_channels)
