"""Interaction to mask: a frame plus positive and negative clicks or scribbles (and, optionally,
the object's current mask) -> that object's mask on that frame, as MiVOS separates the user's
interaction from propagation.

The image side is the frozen ImageNet EfficientNet-Lite0 (stride 16, the features the training
cache holds); the user's marks enter as five guidance planes at full size (positive and negative
marks, their soft neighbourhoods, the current mask), encoded by a small strided CNN and fused
with the image features at strides 16, 8 and 4. The decoder ends at stride 4; the logit is
upsampled to the frame.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memvos.errors import InputError

GUIDANCE_CHANNELS = 5  # positive, negative, near positive, near negative, current mask


@dataclass
class InteractionNetConfig:
    backbone: str = "efficientnet-lite0"
    width: int = 96  # decoder channels
    near: float = 1 / 16  # soft neighbourhood of the marks: exp(-distance / (near * short side))


def guidance_planes(positive: np.ndarray, negative: np.ndarray, current: np.ndarray | None = None,
                    near: float = InteractionNetConfig.near) -> np.ndarray:
    """(5, H, W) float32 network input from bool (H, W) marks and the object's current mask
    (probabilities or bool; None: nothing yet). Marks of one pixel are made exact; the soft planes
    let the coarse levels see a click a stride would otherwise hide."""
    h, w = positive.shape
    scale = max(near * min(h, w), 1.0)
    planes = np.zeros((GUIDANCE_CHANNELS, h, w), np.float32)
    planes[0], planes[1] = positive, negative
    for i, marks in ((2, positive), (3, negative)):
        if marks.any():
            distance = cv2.distanceTransform((~marks).astype(np.uint8), cv2.DIST_L2, 3)
            planes[i] = np.exp(-distance / scale)
    if current is not None:
        planes[4] = current
    return planes


def _block(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
                         nn.GroupNorm(8, cout), nn.ReLU(inplace=True))


class _Residual(nn.Module):
    def __init__(self, width: int, dilation: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(_block(width, width, dilation=dilation),
                                  nn.Conv2d(width, width, 3, padding=dilation, dilation=dilation, bias=False),
                                  nn.GroupNorm(8, width))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.body(x))


class InteractionNet(nn.Module):
    """Backbone features (f4, f8, f16) + guidance planes -> (B, 1, H, W) mask logits."""

    def __init__(self, config: InteractionNetConfig | None = None, channels: tuple[int, int, int] = (24, 40, 112)):
        super().__init__()
        self.config = config or InteractionNetConfig()
        w = self.config.width
        c4, c8, c16 = channels
        self.guide = nn.ModuleList([  # strides 2, 4, 8, 16
            _block(GUIDANCE_CHANNELS, 16, 2), _block(16, 32, 2), _block(32, 48, 2), _block(48, 64, 2)])
        self.in16 = nn.Conv2d(c16 + 64, w, 1)
        self.mid16 = nn.Sequential(_Residual(w, 1), _Residual(w, 2), _Residual(w, 4))
        self.in8 = nn.Conv2d(c8 + 48, w, 1)
        self.mid8 = _Residual(w)
        w4 = w // 2  # the stride-4 level is 16 times the cells of the stride-16 one: narrower
        self.to4 = nn.Conv2d(w, w4, 1)
        self.in4 = nn.Conv2d(c4 + 32, w4, 1)
        self.mid4 = _Residual(w4)
        self.out = nn.Conv2d(w4, 1, 3, padding=1)

    def forward(self, features: tuple[Tensor, Tensor, Tensor], guidance: Tensor) -> Tensor:
        f4, f8, f16 = features  # (B, C, H/4, W/4), (B, C, H/8, W/8), (B, C, H/16, W/16)
        g = guidance
        levels = []
        for layer in self.guide:
            g = layer(g)
            levels.append(g)
        g4, g8, g16 = (_fit(levels[1], f4), _fit(levels[2], f8), _fit(levels[3], f16))
        x = self.mid16(self.in16(torch.cat([f16, g16], 1)))
        x = F.interpolate(x, size=f8.shape[-2:], mode="bilinear", align_corners=False)
        x = self.mid8(x + self.in8(torch.cat([f8, g8], 1)))
        x = F.interpolate(self.to4(x), size=f4.shape[-2:], mode="bilinear", align_corners=False)
        x = self.mid4(x + self.in4(torch.cat([f4, g4], 1)))
        return F.interpolate(self.out(x), size=guidance.shape[-2:], mode="bilinear", align_corners=False)


def _fit(x: Tensor, like: Tensor) -> Tensor:
    """Guidance features to the image features' grid (they differ by a cell on odd sizes)."""
    return x if x.shape[-2:] == like.shape[-2:] else F.interpolate(x, size=like.shape[-2:], mode="bilinear",
                                                                     align_corners=False)


class ClickToMask(nn.Module):
    """The backbone and the interaction network together, for inference on frames."""

    def __init__(self, net: InteractionNet, backbone: nn.Module) -> None:
        super().__init__()
        self.net, self.backbone = net, backbone

    @torch.inference_mode()
    def features(self, rgb: Tensor, mirror: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """(1, 3, H, W) RGB in [0, 1] -> the backbone's features, computed once per frame; with
        ``mirror``, a batch of two: the frame and its left-right mirror image."""
        return tuple(self.backbone(torch.cat([rgb, rgb.flip(-1)]) if mirror else rgb))

    @torch.inference_mode()
    def predict(self, features: tuple[Tensor, Tensor, Tensor], positive: np.ndarray, negative: np.ndarray,
                current: np.ndarray | None = None) -> Tensor:
        """(H, W) object probability from bool marks at the frame's size (that of ``features``' input).
        Features of a mirrored pair (``features(rgb, mirror=True)``) see mirrored marks too, and the
        two probabilities are averaged (held out: IoU after one click 0.808 -> 0.814)."""
        planes = guidance_planes(positive, negative, current, self.net.config.near)  # (5, H, W)
        batch = np.stack([planes, planes[..., ::-1]]) if features[0].shape[0] == 2 else planes[None]
        probs = torch.sigmoid(self.net(features, torch.from_numpy(batch.copy()).to(features[0].device)))[:, 0]
        return probs[0] if len(probs) == 1 else (probs[0] + probs[1].flip(-1)) / 2


def shipped_interaction_weights() -> Path:
    """The interaction network memvos ships (trained by configs/train/interaction.yaml)."""
    from memvos.model.factory import WEIGHTS_DIR

    return WEIGHTS_DIR / "interaction-lite0.safetensors"


def shipped_first_touch_weights() -> Path:
    """The interaction network for an object's first marks (configs/train/interaction-long.yaml:
    the shipped network trained 4000 iterations more, with more scribbles)."""
    from memvos.model.factory import WEIGHTS_DIR

    return WEIGHTS_DIR / "interaction-first-lite0.safetensors"


def load_click_to_mask(path: str | Path, device: str = "cpu") -> ClickToMask:
    """The shipped (or a trained) interaction network with its frozen ImageNet backbone."""
    from safetensors.torch import load_file

    from memvos.model.backbones import build_backbone

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "interaction network weights not found")
    state = load_file(str(path), device="cpu")
    config = interaction_config_of(path)
    backbone = build_backbone(config.backbone, output_stride=16, pretrained=True)
    net = InteractionNet(config, channels=backbone.channels)
    net.load_state_dict({k: v.float() for k, v in state.items()})
    model = ClickToMask(net, backbone).eval().to(device)
    model.requires_grad_(False)
    return model


def interaction_config_of(path: str | Path) -> InteractionNetConfig:
    """The network config saved with interaction weights."""
    return InteractionNetConfig(**_read_config(Path(path)))


def is_interaction_weights(path: str | Path) -> bool:
    """Whether ``path`` is exported interaction-network weights (safetensors with its config)."""
    path = Path(path)
    if path.suffix != ".safetensors" or not path.is_file():
        return False
    try:
        return bool(_read_config(path))
    except (OSError, ValueError, RuntimeError):  # not a safetensors file: the caller's error names it
        return False


def _read_config(path: Path) -> dict:
    import json

    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    return json.loads(meta.get("interaction_net", "{}"))


def save_interaction_net(net: InteractionNet, path: str | Path) -> None:
    """fp16 safetensors with the config in the metadata (what ``load_click_to_mask`` reads)."""
    save_interaction_state(net.state_dict(), net.config, path)


def save_interaction_state(state: dict[str, Tensor], config: InteractionNetConfig, path: str | Path) -> None:
    """An interaction network's parameters and config -> fp16 safetensors, written atomically."""
    import json

    from safetensors.torch import save_file

    from memvos.data.atomic import atomic_path

    state = {k: v.detach().half().contiguous() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"interaction_net": json.dumps(asdict(config))})
