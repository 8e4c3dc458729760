"""The FID Inception-v3 in plain torch: pool3 features (2048-d), weight-compatible with pytorch-fid 0.3.0.

FID is defined on the features of one network: TensorFlow's ``inception-2015-12-05`` graph, which
pytorch-fid ported to ``pt_inception-2015-12-05-6726825d.pth``. Its layout is torchvision's Inception-v3
with three differences, all reproduced here:

- the classifier has 1008 classes; pool3 comes before it, so its weights (``fc.*``) are dropped on load;
- the average pools inside the A, C and first E blocks leave the zero padding out of the mean
  (TensorFlow's behaviour, ``count_include_pad=False``);
- the last E block pools with max instead of average.

The network takes images in [0, 1] and, as pytorch-fid's ``InceptionV3(resize_input=True,
normalize_input=True)`` does, resizes them bilinearly to 299x299 (``align_corners=False``) and maps them
to [-1, 1] itself. Attribute names (``Conv2d_1a_3x3``, ``Mixed_5b``, ``branch1x1`` ...) are the state-dict
keys of the weights file, which is why they do not follow Python naming.

No torchvision: its compiled ops must match the installed torch exactly, which fails on many machines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from auditor.extractors.weights import WeightsFormatError, WeightsSpec, without_keys

FID_INCEPTION_WEIGHTS = WeightsSpec(
    name="FID Inception-v3",
    filename="pt_inception-2015-12-05-6726825d.pth",
    # Full digest as pinned by snap-research/discoscene (models/inception_model.py) beside this URL, and by
    # other public projects that hash the same file (95,628,359 bytes); its first 8 digits are the
    # ``6726825d`` in the file name, per torch.hub's naming convention.
    sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
    source_url=(
        "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
        "pt_inception-2015-12-05-6726825d.pth"
    ),
)
FID_INCEPTION_INPUT_SIZE = 299
FID_INCEPTION_FEATURE_DIM = 2048
# The 1008-way classifier of the TensorFlow graph: present in the file, never reached by pool3.
_CLASSIFIER_KEYS = frozenset({"fc.weight", "fc.bias"})

Padding = int | tuple[int, int]


class ConvBnRelu(nn.Module):
    """Convolution without bias, batch norm with TensorFlow's epsilon (1e-3), ReLU (torchvision's
    ``BasicConv2d``: submodules ``conv`` and ``bn``)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: Padding, stride: int = 1, padding: Padding = 0
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def same_size_pool(x: Tensor, kind: Literal["avg", "max"]) -> Tensor:
    """3x3, stride 1, padding 1; the average leaves padded zeros out of the mean, as TensorFlow does."""
    if kind == "max":
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def halving_max_pool(x: Tensor) -> Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=2)


class InceptionA(nn.Module):
    """35x35 block: 1x1, 5x5, double 3x3 and pooled branches (``Mixed_5b``-``Mixed_5d``)."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBnRelu(in_channels, 64, 1)
        self.branch5x5_1 = ConvBnRelu(in_channels, 48, 1)
        self.branch5x5_2 = ConvBnRelu(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBnRelu(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBnRelu(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBnRelu(96, 96, 3, padding=1)
        self.branch_pool = ConvBnRelu(in_channels, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(same_size_pool(x, "avg"))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], 1)


class InceptionB(nn.Module):
    """Grid reduction 35x35 -> 17x17 (``Mixed_6a``)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = ConvBnRelu(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBnRelu(in_channels, 64, 1)
        self.branch3x3dbl_2 = ConvBnRelu(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBnRelu(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), branch3x3dbl, halving_max_pool(x)], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (``Mixed_6b``-``Mixed_6e``)."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = ConvBnRelu(in_channels, 192, 1)
        self.branch7x7_1 = ConvBnRelu(in_channels, c7, 1)
        self.branch7x7_2 = ConvBnRelu(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = ConvBnRelu(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = ConvBnRelu(in_channels, c7, 1)
        self.branch7x7dbl_2 = ConvBnRelu(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = ConvBnRelu(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = ConvBnRelu(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = ConvBnRelu(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = ConvBnRelu(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = conv(branch7x7dbl)
        branch_pool = self.branch_pool(same_size_pool(x, "avg"))
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], 1)


class InceptionD(nn.Module):
    """Grid reduction 17x17 -> 8x8 (``Mixed_7a``)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = ConvBnRelu(in_channels, 192, 1)
        self.branch3x3_2 = ConvBnRelu(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBnRelu(in_channels, 192, 1)
        self.branch7x7x3_2 = ConvBnRelu(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBnRelu(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBnRelu(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch7x7x3 = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            branch7x7x3 = conv(branch7x7x3)
        return torch.cat([branch3x3, branch7x7x3, halving_max_pool(x)], 1)


class InceptionE(nn.Module):
    """8x8 block with split 1x3 / 3x1 outputs (``Mixed_7b`` pools by average, ``Mixed_7c`` by max)."""

    def __init__(self, in_channels: int, pool: Literal["avg", "max"]) -> None:
        super().__init__()
        self.pool = pool
        self.branch1x1 = ConvBnRelu(in_channels, 320, 1)
        self.branch3x3_1 = ConvBnRelu(in_channels, 384, 1)
        self.branch3x3_2a = ConvBnRelu(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBnRelu(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBnRelu(in_channels, 448, 1)
        self.branch3x3dbl_2 = ConvBnRelu(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBnRelu(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBnRelu(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBnRelu(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        stem3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(stem3x3), self.branch3x3_2b(stem3x3)], 1)
        stem3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(stem3x3dbl), self.branch3x3dbl_3b(stem3x3dbl)], 1)
        branch_pool = self.branch_pool(same_size_pool(x, self.pool))
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, branch_pool], 1)


class FIDInceptionV3(nn.Module):
    """Images (B, 3, H, W) in [0, 1] -> pool3 features (B, 2048); built by :func:`build_fid_inception`."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBnRelu(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBnRelu(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBnRelu(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBnRelu(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBnRelu(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128)
        self.Mixed_6c = InceptionC(768, channels_7x7=160)
        self.Mixed_6d = InceptionC(768, channels_7x7=160)
        self.Mixed_6e = InceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, pool="avg")
        self.Mixed_7c = InceptionE(2048, pool="max")

    def forward(self, images: Tensor) -> Tensor:
        x = inception_input(images)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = halving_max_pool(x)
        x = halving_max_pool(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
        mixed: tuple[nn.Module, ...] = (
            *(self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a),
            *(self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e),
            *(self.Mixed_7a, self.Mixed_7b, self.Mixed_7c),
        )
        for block in mixed:
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)


def inception_input(images: Tensor) -> Tensor:
    """[0, 1] images of any size -> the 299x299, [-1, 1] tensor the network was trained on."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images of shape (batch, 3, height, width), got {tuple(images.shape)}")
    size = (FID_INCEPTION_INPUT_SIZE, FID_INCEPTION_INPUT_SIZE)
    # Always interpolated, even at 299x299 (where it is the identity), exactly as pytorch-fid does.
    resized = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    return 2 * resized - 1


def build_fid_inception(state_dict: Mapping[str, Tensor]) -> FIDInceptionV3:
    """The network in eval mode, with ``state_dict`` (the FID weights file's content) loaded strictly.

    Every tensor the network uses must be present with its shape and nothing else may be, except the
    unused 1008-way classifier ``fc.*``, which is dropped.
    """
    network = FIDInceptionV3()
    try:
        network.load_state_dict(without_keys(state_dict, _CLASSIFIER_KEYS), strict=True)
    except RuntimeError as exc:
        raise WeightsFormatError(f"the weights do not fit the FID Inception-v3: {exc}") from exc
    return network.eval().requires_grad_(False)
