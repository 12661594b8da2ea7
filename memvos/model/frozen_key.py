"""STM with frozen ImageNet keys: the default trained CPU model.

What generalises from a few dozen training videos? ImageNet features already match the same
object across frames well (the training-free mode shows it), so the keys stay frozen:
L2-normalised backbone features at stride 8 (16 in the fast preset), shared by query and
memory frames (one encoder pass per frame, as in STCN). What is learned is small: a value encoder that turns
the frame's features and an object's mask into a value map (its first channel is the mask
itself, so the read always carries the propagated mask), and a refinement decoder that
turns the read values and the query's features into the object's mask logits.

Training reads memory with the plain softmax (``stm``); inference may add the KMN kernel.

Optional, off by default (``memvos.model.instance_head``, issue 7): dynamic kernels generated
per object from its mean memory feature over all memorised frames (``global_kernel``) and/or on
the last one (``local_kernel``), added to or replacing the decoder's last conv
(``kernel_mode``), and ASPP on the memory read (``aspp``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from memvos.model.backbones import build_backbone
from memvos.model.base import MemoryEntry
from memvos.model.fused import Conv2d
from memvos.model.instance_head import (
    ASPP,
    KERNEL_MODES,
    DynamicKernelHead,
    ObjectFeatureStats,
    object_features,
    stats_from_entries,
)
from memvos.model.memory_read import MemoryRead, ReadConfig
from memvos.model.modules import (
    Refine,
    ResBlock,
    aggregate_log_probs,
    area_to_grid,
    first_frame_targets,
    hard_probabilities,
    soft_aggregate,
)


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
    # Instance-aware head (issue 7); all off = the network the shipped weights were trained as.
    local_kernel: bool = False  # dynamic kernel from O_{t-1}: the object's mean value feature, last memorised frame
    global_kernel: bool = False  # dynamic kernel from O_G: the same, averaged over all memorised frames
    kernel_mode: str = "add"  # add: dynamic logit + the static conv's; replace: the dynamic conv instead
    aspp: bool = False  # ASPP on the memory read before the decoder (residual, starts as identity)
    # Learned keys (issue 20): key = normalize(frozen key + a learned 1x1 projection of the key-level
    # and stride-8 features). The projection starts at zero, so training starts from the frozen keys.
    key_projection: bool = False

    def __post_init__(self) -> None:
        if self.kernel_mode not in KERNEL_MODES:
            raise ValueError(f"kernel_mode must be one of {KERNEL_MODES}, got {self.kernel_mode!r}")
        for name in ("local_kernel", "global_kernel", "aspp", "key_projection"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be true or false, got {getattr(self, name)!r}")


@dataclass
class _Query:
    key: Tensor  # (B, Ck, h, w), unit norm along channels
    fk: Tensor  # (B, Ck, h, w) raw key-level features
    f8: Tensor  # (B, C8, h, w): stride-8 features on the key grid (pooled when keys are at stride 16)
    f4: Tensor  # (B, C4, 2h, 2w), or (4h, 4w) with keys at stride 16
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
        self.conv_in = Conv2d(in_dim + 2 + (STROKE_CHANNELS if scribbles else 0), width, 3, padding=1)
        self.res = ResBlock(width)
        self.out = Conv2d(width, value_dim, 3, padding=1)

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

    ``kernel_dim`` > 0: a ``DynamicKernelHead`` turns each object's summary (B, K, kernel_dim)
    into a conv over the last feature map, added to ``predict``'s logit (``add``, starts at
    zero) or used instead of it (``replace``, starts as ``predict``; ``predict`` is then frozen
    and unused, and kept only so that weights without the head load).
    """

    PRIOR_CLAMP = 0.01  # read-mask probabilities clamped to [0.01, 0.99]: prior logits within +-4.6

    def __init__(self, read_dim: int, query_dim: int, skip4_dim: int, dim: int, residual: bool = True,
                 kernel_dim: int = 0, kernel_mode: str = "add") -> None:
        super().__init__()
        self.residual = residual
        self.kernel_mode = kernel_mode
        self.query_proj = Conv2d(query_dim, dim, 1)
        self.conv_in = Conv2d(read_dim + 1 + dim, dim, 3, padding=1)
        self.res_in = ResBlock(dim)
        self.reduce = Conv2d(dim, dim // 2, 1)  # stride 4 is 4x the cells: half the width
        self.refine4 = Refine(skip4_dim, dim // 2)
        self.predict = Conv2d(dim // 2, 1, 3, padding=1)
        if residual:
            nn.init.zeros_(self.predict.weight)
            nn.init.zeros_(self.predict.bias)
            self.prior_scale = nn.Parameter(torch.ones(()))
        self.kernel = DynamicKernelHead(kernel_dim, dim // 2) if kernel_dim else None
        if self.kernel is not None and kernel_mode == "replace":
            self.kernel.start_as(self.predict)
            self.predict.requires_grad_(False)

    def forward(self, read: Tensor, query_features: Tensor, f4: Tensor, size: tuple[int, int],
                objects: Tensor | None = None) -> Tensor:
        """read (B, K, Cr, h, w), query_features (B, Cq, h, w), f4 (B, C4, 2h, 2w), objects (B, K, Co)
        (the dynamic kernels' input; None without them) -> logits (B, K, H, W)."""
        b, k = read.shape[:2]
        masks = read[:, :, 0]
        others = (masks.sum(1, keepdim=True) - masks).clamp(0, 1)
        q = self.query_proj(query_features)[:, None].expand(-1, k, -1, -1, -1)
        x = torch.cat([read, others[:, :, None], q], dim=2).flatten(0, 1)
        m = self.reduce(self.res_in(self.conv_in(x)))
        m = self.refine4(f4[:, None].expand(-1, k, -1, -1, -1).flatten(0, 1), m)
        logits = self.last_conv(F.relu(m), objects)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)[:, 0].unflatten(0, (b, k))
        if self.residual:
            prior = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
            # logits + scale * log(p / (1 - p)), p clamped: two passes over the frame instead of six
            logits = torch.addcmul(logits, self.prior_scale, torch.logit(prior, eps=self.PRIOR_CLAMP))
        return logits

    def last_conv(self, features: Tensor, objects: Tensor | None) -> Tensor:
        """features (B*K, dim/2, 2h, 2w), objects (B, K, Co) or None -> logits (B*K, 1, 2h, 2w): the
        static conv, plus or replaced by each object's dynamic conv."""
        if self.kernel is None:
            return self.predict(features)
        if objects is None:
            raise ValueError("this decoder has dynamic kernels: it needs the objects' features")
        dynamic = self.kernel(features, objects.flatten(0, 1).to(features.dtype))
        return dynamic if self.kernel_mode == "replace" else self.predict(features) + dynamic


class FrozenKeySTM(nn.Module):
    """See the module docstring; implements the engine's ``SegmentationModel`` interface."""

    compute_dtype: torch.dtype = torch.float32  # value encoder and decoder; set for inference (model.precision)

    def _autocast(self, device: torch.device):
        """Autocast to ``compute_dtype`` (off in float32, hence in training)."""
        return torch.autocast(device.type, dtype=self.compute_dtype, enabled=self.compute_dtype != torch.float32)

    def __init__(self, config: FrozenKeyConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or FrozenKeyConfig()
        self.backbone = build_backbone(cfg.backbone, output_stride=cfg.output_stride, pretrained=cfg.pretrained)
        self.backbone.requires_grad_(False)
        c4, c8, ck = self.backbone.channels
        self.value_encoder = ValueEncoder(ck + c8, cfg.value_dim, scribbles=cfg.scribbles)
        kernel_dim = cfg.value_dim * (int(cfg.global_kernel) + int(cfg.local_kernel))
        self.decoder = MaskDecoder(1 + cfg.value_dim, ck + c8, c4, cfg.decoder_dim, cfg.residual,
                                   kernel_dim=kernel_dim, kernel_mode=cfg.kernel_mode)
        self.aspp = ASPP(cfg.value_dim) if cfg.aspp else None
        self.key_proj = Conv2d(ck + c8, ck, 1) if cfg.key_projection else None
        if self.key_proj is not None:
            nn.init.zeros_(self.key_proj.weight)
            nn.init.zeros_(self.key_proj.bias)
        self.read = MemoryRead(cfg.read)

    @property
    def uses_instance_stats(self) -> bool:
        """Whether ``segment`` wants the engine's running object statistics (``instance=``)."""
        return self.config.local_kernel or self.config.global_kernel

    @property
    def optional_weights(self) -> tuple[str, ...]:
        """State-dict prefixes of the instance-aware head: initial weights may lack them
        (fine-tuning from weights trained without the head; it starts as the identity)."""
        return tuple(p for p, on in (("decoder.kernel.", self.decoder.kernel is not None),
                                     ("aspp.", self.aspp is not None), ("key_proj.", self.key_proj is not None)) if on)

    def initialise_missing(self, missing: list[str]) -> None:
        """After loading weights that lacked ``missing`` keys: a ``replace`` kernel head starts as
        the loaded static conv, so the model starts as the one the weights describe."""
        if self.decoder.kernel is not None and self.config.kernel_mode == "replace" and \
                any(k.startswith("decoder.kernel.") for k in missing):
            self.decoder.kernel.start_as(self.decoder.predict)

    def train(self, mode: bool = True) -> FrozenKeySTM:
        super().train(mode)
        self.backbone.eval()  # frozen: batch-norm statistics stay ImageNet's
        return self

    # ---- pieces shared by training and inference ---------------------------------------
    def encode_query(self, rgb: Tensor) -> _Query:
        """rgb (B, 3, H, W) in [0, 1] -> keys and features (no gradient: the encoder is frozen)."""
        with torch.no_grad():
            f4, f8, fk = self.backbone(rgb)
        return self.query_from_features(f4, f8, fk, tuple(rgb.shape[-2:]))

    def query_from_features(self, f4: Tensor, f8: Tensor, fk: Tensor, size: tuple[int, int]) -> _Query:
        """The frozen backbone's (f4, f8, fk) of frames of ``size`` (H, W) -> keys and features.
        Training from cached features (memvos.train.feature_cache) starts here."""
        f8 = area_to_grid(f8, fk.shape[-2:])  # keys at stride 16: stride-8 features pooled onto their grid
        key = fk
        if self.key_proj is not None:
            with self._autocast(fk.device):
                key = fk + self.key_proj(torch.cat([fk, f8], dim=1)).float()
        return _Query(F.normalize(key, dim=1), fk, f8, f4, size)

    def encode_values(self, query: _Query, object_probs: Tensor, strokes: Tensor | None = None) -> Tensor:
        """object_probs (B, K, H, W), strokes (B, K, 2, H, W) or None -> values (B, K, 1 + Cv, h, w)
        on the key grid. Strokes are painted into the masks, then max-pooled (thin lines must
        survive the downsizing)."""
        grid = query.key.shape[-2:]
        if strokes is not None:
            object_probs = paint_strokes(object_probs, strokes)
            strokes = F.adaptive_max_pool2d(strokes.flatten(1, 2), grid).unflatten(1, strokes.shape[1:3])
        masks = area_to_grid(object_probs, grid)
        with self._autocast(masks.device):
            values = self.value_encoder(torch.cat([query.fk, query.f8], dim=1), masks, strokes)
        return values.float()

    def object_logits(self, query: _Query, keys: Tensor, values: Tensor, objects: Tensor | None = None) -> Tensor:
        """keys (B, Ck, T, h, w) or (B, Ck, N), values (B, K, Cr, T, h, w) or (B, K, Cr, N), objects (B, K, Co) (the dynamic
        kernels' input, see ``kernel_input``; None without them) -> object logits (B, K, H, W)."""
        k, cr = values.shape[1:3]
        read = self.read(keys, values.flatten(1, 2), query.key).unflatten(1, (k, cr))  # (B, K, Cr, h, w)
        if self.aspp is not None:
            read = self.aspp.on_read(read)
        with self._autocast(read.device):
            logits = self.decoder(read, torch.cat([query.fk, query.f8], dim=1), query.f4, query.size, objects)
        return logits.float()

    def value_object_features(self, values: Tensor) -> Tensor:
        """values (B, K, 1 + Cv, h, w) -> O (B, K, Cv): each object's value map (without the mask
        copy in channel 0) averaged under its own mask (channel 0, already on the value grid)."""
        return object_features(values[:, :, 1:], values[:, :, 0])

    def kernel_input(self, global_mean: Tensor, latest: Tensor) -> Tensor | None:
        """O_G and O_{t-1} (..., Cv) -> the dynamic kernels' input: concat(O_G, O_{t-1}), or the one
        switched on (None when neither is)."""
        parts = [x for x, on in ((global_mean, self.config.global_kernel), (latest, self.config.local_kernel)) if on]
        return torch.cat(parts, dim=-1) if parts else None

    def _clip_objects(self, memorised: list[Tensor]) -> Tensor | None:
        """Training: O (B, K, Cv) of the frames memorised so far -> the kernels' input (B, K, Co)."""
        if not self.uses_instance_stats:
            return None
        return self.kernel_input(torch.stack(memorised).mean(0), memorised[-1])

    def forward(self, frames: Tensor | None, labels: Tensor, num_objects: Tensor,
                interaction: tuple[Tensor, Tensor] | None = None,
                features: tuple[Tensor, Tensor, Tensor] | None = None) -> Tensor:
        """Training pass over clips, STM's recipe: frame 0 with its ground truth goes to memory;
        each later frame is predicted from the memory so far, then memorised with its predicted
        probabilities. frames (B, T, 3, H, W), labels (B, T, H, W) (only frame 0's are used),
        num_objects (B,) -> log-probabilities (B, T-1, K+1, H, W), K = num_objects.max().

        ``interaction`` (interactive mode): (prior (B, K, H, W), strokes (B, K, 2, H, W)) on frame 0
        instead of its ground truth, as the interactive engine does: frame 0 is memorised with the
        prior and the strokes, predicted from that, then memorised with its prediction, and the
        clip goes on from there; the output then covers all T frames.

        ``features``: the frozen backbone's (f4, f8, fk), each (B, T, C, h, w), instead of ``frames``
        (training from cached features)."""
        b, t = labels.shape[:2]
        masks, valid = first_frame_targets(labels, num_objects)  # (B, K, H, W), (B, K)
        if features is not None:
            query = self.query_from_features(*(x.flatten(0, 1).float() for x in features), tuple(labels.shape[-2:]))
        else:
            query = self.encode_query(frames.flatten(0, 1))
        per_frame = [_Query(*(x.unflatten(0, (b, t))[:, i] for x in (query.key, query.fk, query.f8, query.f4)),
                            query.size) for i in range(t)]
        out, strokes = [], None
        instance = self.uses_instance_stats  # O of each memorised frame (frame 0: from its ground truth)
        if interaction is not None:
            prior, strokes = interaction
            first = self.encode_values(per_frame[0], prior, strokes)
            objects = self._clip_objects([self.value_object_features(first)]) if instance else None
            logits = self.object_logits(per_frame[0], per_frame[0].key[:, :, None], first[:, :, :, None], objects)
            masks, log_probs = aggregate_log_probs(torch.sigmoid(logits), valid)
            masks = masks[:, 1:]
            out.append(log_probs)
        keys, values = [per_frame[0].key], [self.encode_values(per_frame[0], masks, strokes)]
        memorised = [self.value_object_features(values[0])] if instance else []  # each (B, K, Cv)
        for i in range(1, t):
            logits = self.object_logits(per_frame[i], torch.stack(keys, 2), torch.stack(values, 3),
                                        self._clip_objects(memorised))  # (B, K, H, W)
            aggregated, log_probs = aggregate_log_probs(torch.sigmoid(logits), valid)
            out.append(log_probs)
            if i + 1 < t:
                keys.append(per_frame[i].key)
                values.append(self.encode_values(per_frame[i], aggregated[:, 1:]))
                if instance:
                    memorised.append(self.value_object_features(values[-1]))
        return torch.stack(out, dim=1)

    # ---- engine interface -------------------------------------------------------------
    def memorize(self, rgb: Tensor, query: _Query, probs: Tensor, object_ids: tuple[int, ...],
                 strokes: Tensor | None = None) -> MemoryEntry:
        """probs (K+1, H, W), strokes (K, 2, H, W) or None -> an entry with the frame's key and a
        value per object."""
        if self.config.hard_memory:
            probs = hard_probabilities(probs)
        values = self.encode_values(query, probs[None, 1:], None if strokes is None else strokes[None])
        objects = self.value_object_features(values)[0] if self.uses_instance_stats else None  # (K, Cv)
        return MemoryEntry(key=query.key, value=values[0], object_ids=object_ids, object_features=objects)

    def coarsen_entry(self, entry: MemoryEntry, factor: int) -> MemoryEntry:
        """``entry`` at 1/factor resolution, for old long-term memory (``MemoryPolicy.coarse``): keys
        area-averaged and made unit length again (they are cosine keys), values and their mask
        channel area-averaged. One cell then stands for factor^2 cells of the frame."""
        key = F.normalize(F.avg_pool2d(entry.key, factor, ceil_mode=True), dim=1)
        value = F.avg_pool2d(entry.value, factor, ceil_mode=True)
        return dataclasses.replace(entry, key=key, value=value)

    def segment(self, query: _Query, memory: list[MemoryEntry], object_ids: tuple[int, ...],
                instance: ObjectFeatureStats | None = None) -> Tensor:
        """(K+1, H, W) probabilities for ``object_ids``; entries that do not know an object hold no mass for it.

        ``instance``: the engine's running O_G / O_{t-1} per object (dynamic kernels only; without
        it they are computed from ``memory``'s entries, an object none of them knows gets zeros)."""
        # entries flattened to cells: coarse long-term entries (coarsen_entry) have fewer of them
        keys = torch.cat([m.key.flatten(2) for m in memory], dim=2)  # (1, Ck, N)
        values = torch.cat([_select(m, object_ids).flatten(2) for m in memory], dim=2)[None]  # (1, K, Cr, N)
        objects = None
        if self.uses_instance_stats:
            stats = instance if instance is not None else stats_from_entries(memory)
            like = values.new_zeros(self.config.value_dim)
            objects = self.kernel_input(stats.global_mean(object_ids, like), stats.latest(object_ids, like))[None]
        logits = self.object_logits(query, keys, values, objects)[0]
        return soft_aggregate(torch.sigmoid(logits))

    # ---- re-identification (memvos.inference.reid) --------------------------------------
    @property
    def reid_feature_name(self) -> str:
        """Names the features ``reid_features`` returns (a fitted projection belongs to them)."""
        return f"{self.config.backbone}-s{self.config.output_stride}"

    def reid_features(self, query: _Query) -> Tensor:
        """(C, h, w) frozen ImageNet features at the key stride (the key level and stride 8):
        they describe appearance and are the same for every checkpoint of this backbone."""
        return torch.cat([query.fk, query.f8], dim=1)[0]


def _select(entry: MemoryEntry, object_ids: tuple[int, ...]) -> Tensor:
    """(K, Cr, h, w) values of ``object_ids`` (zeros for objects this entry does not know)."""
    if tuple(object_ids) == tuple(entry.object_ids):
        return entry.value
    zero = torch.zeros_like(entry.value[0])
    return torch.stack([entry.value[entry.object_ids.index(i)] if i in entry.object_ids else zero
                        for i in object_ids])
