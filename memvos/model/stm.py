"""The space-time memory network (STM): query and memory encoders, key/value heads, the
memory read (STM or KMN), a refinement decoder, and soft aggregation of several objects."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from memvos.model.backbones import build_backbone
from memvos.model.base import MemoryEntry
from memvos.model.memory_read import MemoryRead, ReadConfig
from memvos.model.modules import Decoder, KeyValue, aggregate_log_probs, first_frame_targets, soft_aggregate


@dataclass
class STMConfig:
    backbone: str = "efficientnet-lite0"
    deep16: bool = True  # Lite backbones: run the stride-32 stages dilated for richer stride-16 features
    pretrained: bool | str = False  # ImageNet weights for a new network (training); checkpoints carry their own
    key_ratio: int = 8  # key channels = C / 8 of the stride-16 features
    value_ratio: int = 2  # value channels = C / 2
    decoder_dim: int = 128
    scribbles: bool = False  # two more memory-encoder inputs (positive / negative scribbles)
    read: ReadConfig = field(default_factory=lambda: ReadConfig(mode="kmn", sigma=6.0))


@dataclass
class _Query:
    key: Tensor  # (1, Ck, h, w)
    value: Tensor  # (1, Cv, h, w)
    f8: Tensor
    f4: Tensor
    size: tuple[int, int]


class STMNetwork(nn.Module):
    """See the module docstring; implements the engine's ``SegmentationModel`` interface."""

    def __init__(self, config: STMConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or STMConfig()
        extra = 2 + (2 if cfg.scribbles else 0)  # this object's mask, the other objects (+ scribbles)
        self.query_encoder = build_backbone(cfg.backbone, pretrained=cfg.pretrained, deep16=cfg.deep16)
        self.memory_encoder = build_backbone(cfg.backbone, extra_channels=extra, pretrained=cfg.pretrained,
                                             deep16=cfg.deep16)
        c4, c8, c16 = self.query_encoder.channels
        self.key_dim, self.value_dim = c16 // cfg.key_ratio, c16 // cfg.value_ratio
        self.query_kv = KeyValue(c16, self.key_dim, self.value_dim)
        self.memory_kv = KeyValue(c16, self.key_dim, self.value_dim)
        self.read = MemoryRead(cfg.read)
        self.decoder = Decoder(2 * self.value_dim, c8, c4, cfg.decoder_dim)

    # ---- engine interface -------------------------------------------------------------
    def encode_query(self, rgb: Tensor) -> _Query:
        f4, f8, f16 = self.query_encoder(rgb)
        key, value = self.query_kv(f16)
        return _Query(key, value, f8, f4, tuple(rgb.shape[-2:]))

    def memorize(self, rgb: Tensor, query: _Query | None, probs: Tensor, object_ids: tuple[int, ...],
                 strokes: Tensor | None = None) -> MemoryEntry:
        """Encode the frame once per object with (its mask, the union of the others' masks[, its
        positive and negative strokes (K, 2, H, W)])."""
        key, value = self.encode_memory(rgb, probs[1:], strokes)
        return MemoryEntry(key=key, value=value, object_ids=object_ids)

    def segment(self, query: _Query, memory: list[MemoryEntry], object_ids: tuple[int, ...]) -> Tensor:
        """(K+1, H, W): each object read from the memory frames that know it, then soft aggregation."""
        fg = torch.zeros(len(object_ids), *query.size, device=query.key.device)
        for frames, objects in _group_by_frames(memory, object_ids).items():
            keys = torch.stack([torch.stack([memory[t].key[memory[t].object_ids.index(o)] for t in frames], 1)
                                for o in objects])  # (B, Ck, T, h, w)
            values = torch.stack([torch.stack([memory[t].value[memory[t].object_ids.index(o)] for t in frames], 1)
                                  for o in objects])
            logits = self.decode(query, keys, values)
            fg[[object_ids.index(o) for o in objects]] = torch.softmax(logits, dim=1)[:, 1]
        return soft_aggregate(fg)

    @property
    def reid_feature_name(self) -> str:
        return f"stm-{self.config.backbone}-query"

    def reid_features(self, query: _Query) -> Tensor:
        """(C, h, w) the query encoder's key and value maps (re-identification features)."""
        return torch.cat([query.key, query.value], dim=1)[0]

    # ---- pieces shared with training ----------------------------------------------------
    def encode_memory(self, rgb: Tensor, object_probs: Tensor, strokes: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """rgb (1, 3, H, W), object_probs (K, H, W), strokes (K, 2, H, W) or None -> keys (K, Ck, h, w),
        values (K, Cv, h, w); batched: rgb (B, 3, H, W), object_probs (B, K, H, W), strokes
        (B*K, 2, H, W) -> (B*K, ...) sample-major."""
        if object_probs.dim() == 3:
            object_probs = object_probs[None]
        b, k = object_probs.shape[:2]
        others = (object_probs.sum(1, keepdim=True) - object_probs).clamp(0, 1)
        extra = [object_probs.flatten(0, 1)[:, None], others.flatten(0, 1)[:, None]]
        if self.config.scribbles:
            extra.append(strokes if strokes is not None else object_probs.new_zeros(b * k, 2, *object_probs.shape[-2:]))
        _, _, f16 = self.memory_encoder(rgb.repeat_interleave(k, dim=0), torch.cat(extra, dim=1))
        return self.memory_kv(f16)

    def forward(self, frames: Tensor, labels: Tensor, num_objects: Tensor) -> Tensor:
        """Training pass over clips (see ``FrozenKeySTM.forward``): frames (B, T, 3, H, W), labels
        (B, T, H, W) (frame 0's used), num_objects (B,) -> log-probabilities (B, T-1, K+1, H, W)."""
        b, t = frames.shape[:2]
        probs, valid = first_frame_targets(labels, num_objects)  # (B, K, H, W), (B, K)
        k = probs.shape[1]
        key, value = self.encode_memory(frames[:, 0], probs)  # (B*K, C, h, w)
        keys, values, out = [key], [value], []
        for i in range(1, t):
            q = self.encode_query(frames[:, i])
            q = _Query(*(x.repeat_interleave(k, dim=0) for x in (q.key, q.value, q.f8, q.f4)), q.size)
            logits = self.decode(q, torch.stack(keys, 2), torch.stack(values, 2), batched=True)  # (B*K, 2, H, W)
            fg = torch.softmax(logits, dim=1)[:, 1].unflatten(0, (b, k))
            aggregated, log_probs = aggregate_log_probs(fg, valid)  # (B, K+1, H, W)
            out.append(log_probs)
            if i + 1 < t:
                key, value = self.encode_memory(frames[:, i], aggregated[:, 1:])
                keys.append(key)
                values.append(value)
        return torch.stack(out, dim=1)

    def decode(self, query: _Query, keys: Tensor, values: Tensor, batched: bool = False) -> Tensor:
        """keys (B, Ck, T, h, w), values (B, Cv, T, h, w) -> object logits (B, 2, H, W); the query
        is shared by the B objects, or (``batched``) already holds one entry per object."""
        b = keys.shape[0]
        q = query if batched else _Query(*(x.expand(b, -1, -1, -1) for x in (query.key, query.value, query.f8,
                                                                                query.f4)), query.size)
        readout = self.read(keys, values, q.key)
        return self.decoder(torch.cat([q.value, readout], dim=1), q.f8, q.f4, q.size)


def _group_by_frames(memory: list[MemoryEntry], object_ids: tuple[int, ...]) -> dict[tuple[int, ...], list[int]]:
    """Objects grouped by the memory frames that know them (objects added later have fewer)."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for obj in object_ids:
        frames = tuple(t for t, m in enumerate(memory) if obj in m.object_ids)
        if frames:
            groups.setdefault(frames, []).append(obj)
    return groups
