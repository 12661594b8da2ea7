"""STM with frozen ImageNet keys: the default trained CPU model.

What generalises from a few dozen training videos? ImageNet features already match the same
object across frames well (the training-free mode shows it), so the keys stay frozen:
L2-normalised backbone features at stride 8, shared by query and memory frames (one
encoder pass per frame, as in STCN). What is learned is small: a value encoder that turns
the frame's features and an object's mask into a value map (its first channel is the mask
itself, so the read always carries the propagated mask), and a refinement decoder that
turns the read values and the query's features into the object's mask logits.

Training reads memory with the plain softmax (``stm``); inference may add the KMN kernel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memvos.model.backbones import build_backbone
from memvos.model.base import MemoryEntry
from memvos.model.memory_read import MemoryRead, ReadConfig
from memvos.model.modules import Refine, ResBlock, aggregate_log_probs, first_frame_targets, soft_aggregate


@dataclass
class FrozenKeyConfig:
    backbone: str = "efficientnet-lite0"
    output_stride: int = 8  # key/value grid; 8 = dilated last stages (finer masks)
    pretrained: bool | str = True  # ImageNet weights for a new network; checkpoints carry their own
    value_dim: int = 64  # learned value channels per object (+1: the mask itself)
    decoder_dim: int = 64
    hard_memory: bool = False  # memorise one-hot (argmax) masks instead of probabilities
    residual: bool = True  # the decoder corrects the read mask's logit (starts as label propagation)
    scribbles: bool = False  # interactive mode: the memory encoder also takes positive/negative stroke maps
    read: ReadConfig = field(default_factory=lambda: ReadConfig(mode="kmn", sigma=8.0, top_k=5, temperature=0.1))


@dataclass
class _Query:
    key: Tensor  # (B, Ck, h, w), unit norm along channels
    fk: Tensor  # (B, Ck, h, w) raw key-level features
    f8: Tensor  # (B, C8, h, w)
    f4: Tensor  # (B, C4, 2h, 2w)
    size: tuple[int, int]


STROKE_CHANNELS = 2  # positive, negative


def paint_strokes(masks: Tensor, strokes: Tensor) -> Tensor:
    """The user's strokes are certain: masks (B, K, H, W) set to 1 under positive and to 0 under
    negative strokes (B, K, 2, H, W). Both training and the interactive engine go through here."""
    return torch.where(strokes[:, :, 0] > 0.5, 1.0, torch.where(strokes[:, :, 1] > 0.5, 0.0, masks))


class ValueEncoder(nn.Module):
    """(frame features, this object's mask, the other objects' masks[, its positive and negative
    strokes]) -> value map. The stroke channels come last, so a semi-supervised encoder's
    weights load into an interactive one with those input channels set to zero."""

    def __init__(self, in_dim: int, value_dim: int, width: int = 128, scribbles: bool = False) -> None:
        super().__init__()
        self.scribbles = scribbles
        self.conv_in = nn.Conv2d(in_dim + 2 + (STROKE_CHANNELS if scribbles else 0), width, 3, padding=1)
        self.res = ResBlock(width)
        self.out = nn.Conv2d(width, value_dim, 3, padding=1)

    def forward(self, features: Tensor, masks: Tensor, strokes: Tensor | None = None) -> Tensor:
        """features (B, C, h, w), masks (B, K, h, w), strokes (B, K, 2, h, w) or None
        -> (B, K, 1 + value_dim, h, w)."""
        b, k = masks.shape[:2]
        others = (masks.sum(1, keepdim=True) - masks).clamp(0, 1)
        parts = [features[:, None].expand(-1, k, -1, -1, -1), masks[:, :, None], others[:, :, None]]
        if self.scribbles:
            parts.append(strokes if strokes is not None else masks.new_zeros(b, k, STROKE_CHANNELS, *masks.shape[-2:]))
        v = self.out(F.relu(self.res(self.conv_in(torch.cat(parts, dim=2).flatten(0, 1)))))
        return torch.cat([masks.flatten(0, 1)[:, None], v], dim=1).unflatten(0, (b, k))


class MaskDecoder(nn.Module):
    """Read values (+ the others' read masks) and query features at the key stride -> refine
    with the stride-4 skip -> one logit per object, upsampled to the frame.

    ``residual``: the output is a correction added to the logit of the read mask (the
    training-free prediction), and starts at zero, so training starts from label propagation
    and only has to learn what improves it.
    """

    PRIOR_CLAMP = 0.01  # read-mask probabilities clamped to [0.01, 0.99]: prior logits within +-4.6

    def __init__(self, read_dim: int, query_dim: int, skip4_dim: int, dim: int, residual: bool = True) -> None:
        super().__init__()
        self.residual = residual
        self.query_proj = nn.Conv2d(query_dim, dim, 1)
        self.conv_in = nn.Conv2d(read_dim + 1 + dim, dim, 3, padding=1)
        self.res_in = ResBlock(dim)
        self.reduce = nn.Conv2d(dim, dim // 2, 1)  # stride 4 is 4x the cells: half the width
        self.refine4 = Refine(skip4_dim, dim // 2)
        self.predict = nn.Conv2d(dim // 2, 1, 3, padding=1)
        if residual:
            nn.init.zeros_(self.predict.weight)
            nn.init.zeros_(self.predict.bias)
            self.prior_scale = nn.Parameter(torch.ones(()))

    def forward(self, read: Tensor, query_features: Tensor, f4: Tensor, size: tuple[int, int]) -> Tensor:
        """read (B, K, Cr, h, w), query_features (B, Cq, h, w), f4 (B, C4, 2h, 2w) -> logits (B, K, H, W)."""
        b, k = read.shape[:2]
        masks = read[:, :, 0]
        others = (masks.sum(1, keepdim=True) - masks).clamp(0, 1)
        q = self.query_proj(query_features)[:, None].expand(-1, k, -1, -1, -1)
        x = torch.cat([read, others[:, :, None], q], dim=2).flatten(0, 1)
        m = self.reduce(self.res_in(self.conv_in(x)))
        m = self.refine4(f4[:, None].expand(-1, k, -1, -1, -1).flatten(0, 1), m)
        logits = self.predict(F.relu(m))
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)[:, 0].unflatten(0, (b, k))
        if self.residual:
            prior = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
            prior = prior.clamp(self.PRIOR_CLAMP, 1 - self.PRIOR_CLAMP)
            logits = logits + self.prior_scale * torch.log(prior / (1 - prior))
        return logits


class FrozenKeySTM(nn.Module):
    """See the module docstring; implements the engine's ``SegmentationModel`` interface."""

    def __init__(self, config: FrozenKeyConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or FrozenKeyConfig()
        self.backbone = build_backbone(cfg.backbone, output_stride=cfg.output_stride, pretrained=cfg.pretrained)
        self.backbone.requires_grad_(False)
        c4, c8, ck = self.backbone.channels
        self.value_encoder = ValueEncoder(ck + c8, cfg.value_dim, scribbles=cfg.scribbles)
        self.decoder = MaskDecoder(1 + cfg.value_dim, ck + c8, c4, cfg.decoder_dim, cfg.residual)
        self.read = MemoryRead(cfg.read)

    def train(self, mode: bool = True) -> FrozenKeySTM:
        super().train(mode)
        self.backbone.eval()  # frozen: batch-norm statistics stay ImageNet's
        return self

    # ---- pieces shared by training and inference ---------------------------------------
    def encode_query(self, rgb: Tensor) -> _Query:
        """rgb (B, 3, H, W) in [0, 1] -> keys and features (no gradient: the encoder is frozen)."""
        with torch.no_grad():
            f4, f8, fk = self.backbone(rgb)
        return _Query(F.normalize(fk, dim=1), fk, f8, f4, tuple(rgb.shape[-2:]))

    def encode_values(self, query: _Query, object_probs: Tensor, strokes: Tensor | None = None) -> Tensor:
        """object_probs (B, K, H, W), strokes (B, K, 2, H, W) or None -> values (B, K, 1 + Cv, h, w)
        on the key grid. Strokes are painted into the masks, then max-pooled (thin lines must
        survive the downsizing)."""
        grid = query.key.shape[-2:]
        if strokes is not None:
            object_probs = paint_strokes(object_probs, strokes)
            strokes = F.adaptive_max_pool2d(strokes.flatten(1, 2), grid).unflatten(1, strokes.shape[1:3])
        masks = F.adaptive_avg_pool2d(object_probs, grid) if object_probs.shape[-2:] != grid else object_probs
        return self.value_encoder(torch.cat([query.fk, query.f8], dim=1), masks, strokes)

    def object_logits(self, query: _Query, keys: Tensor, values: Tensor) -> Tensor:
        """keys (B, Ck, T, h, w), values (B, K, Cr, T, h, w) -> object logits (B, K, H, W)."""
        k, cr = values.shape[1:3]
        read = self.read(keys, values.flatten(1, 2), query.key).unflatten(1, (k, cr))  # (B, K, Cr, h, w)
        return self.decoder(read, torch.cat([query.fk, query.f8], dim=1), query.f4, query.size)

    def forward(self, frames: Tensor, labels: Tensor, num_objects: Tensor,
                interaction: tuple[Tensor, Tensor] | None = None) -> Tensor:
        """Training pass over clips, STM's recipe: frame 0 with its ground truth goes to memory;
        each later frame is predicted from the memory so far, then memorised with its predicted
        probabilities. frames (B, T, 3, H, W), labels (B, T, H, W) (only frame 0's are used),
        num_objects (B,) -> log-probabilities (B, T-1, K+1, H, W), K = num_objects.max().

        ``interaction`` (interactive mode): (prior (B, K, H, W), strokes (B, K, 2, H, W)) on frame 0
        instead of its ground truth, as the interactive engine does: frame 0 is memorised with the
        prior and the strokes, predicted from that, then memorised with its prediction, and the
        clip goes on from there; the output then covers all T frames."""
        b, t = frames.shape[:2]
        masks, valid = first_frame_targets(labels, num_objects)  # (B, K, H, W), (B, K)
        query = self.encode_query(frames.flatten(0, 1))
        per_frame = [_Query(*(x.unflatten(0, (b, t))[:, i] for x in (query.key, query.fk, query.f8, query.f4)),
                            query.size) for i in range(t)]
        out, strokes = [], None
        if interaction is not None:
            prior, strokes = interaction
            first = self.encode_values(per_frame[0], prior, strokes)
            logits = self.object_logits(per_frame[0], per_frame[0].key[:, :, None], first[:, :, :, None])
            masks, log_probs = aggregate_log_probs(torch.sigmoid(logits), valid)
            masks = masks[:, 1:]
            out.append(log_probs)
        keys, values = [per_frame[0].key], [self.encode_values(per_frame[0], masks, strokes)]
        for i in range(1, t):
            logits = self.object_logits(per_frame[i], torch.stack(keys, 2), torch.stack(values, 3))  # (B, K, H, W)
            aggregated, log_probs = aggregate_log_probs(torch.sigmoid(logits), valid)
            out.append(log_probs)
            if i + 1 < t:
                keys.append(per_frame[i].key)
                values.append(self.encode_values(per_frame[i], aggregated[:, 1:]))
        return torch.stack(out, dim=1)

    # ---- engine interface -------------------------------------------------------------
    def memorize(self, rgb: Tensor, query: _Query, probs: Tensor, object_ids: tuple[int, ...],
                 strokes: Tensor | None = None) -> MemoryEntry:
        """probs (K+1, H, W), strokes (K, 2, H, W) or None -> an entry with the frame's key and a
        value per object."""
        if self.config.hard_memory:
            probs = F.one_hot(probs.argmax(0), probs.shape[0]).permute(2, 0, 1).to(probs.dtype)
        values = self.encode_values(query, probs[None, 1:], None if strokes is None else strokes[None])[0]
        return MemoryEntry(key=query.key, value=values, object_ids=object_ids)

    def segment(self, query: _Query, memory: list[MemoryEntry], object_ids: tuple[int, ...]) -> Tensor:
        """(K+1, H, W) probabilities for ``object_ids``; entries that do not know an object hold no mass for it."""
        keys = torch.stack([m.key for m in memory], dim=2)  # (1, Ck, T, h, w)
        values = torch.stack([_select(m, object_ids) for m in memory], dim=2)[None]  # (1, K, Cr, T, h, w)
        logits = self.object_logits(query, keys, values)[0]
        return soft_aggregate(torch.sigmoid(logits))


def _select(entry: MemoryEntry, object_ids: tuple[int, ...]) -> Tensor:
    """(K, Cr, h, w) values of ``object_ids`` (zeros for objects this entry does not know)."""
    zero = torch.zeros_like(entry.value[0])
    return torch.stack([entry.value[entry.object_ids.index(i)] if i in entry.object_ids else zero
                        for i in object_ids])
