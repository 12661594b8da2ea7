"""The memory read: every query position attends over all memory positions (all memory frames).

One module, one switch (``mode``):

- ``stm``: c(p, q) = k_M(p) . k_Q(q); w(p, q) = softmax_p(c(p, q) * scale); r(q) = sum_p w(p, q) v_M(p).
- ``kmn``: the same c, times a Gaussian kernel centred, for each memory position p, on its
  best-matching query position q^(p) = argmax_q c(p, q):
  w(p, q) = exp(c * scale) g(p, q) / sum_p exp(c * scale) g(p, q),
  g(p, q) = exp(-|q - q^(p)|^2 / (2 sigma^2)), sigma in key-map cells. Inference only.

``scale`` is 1/sqrt(d) (d = key channels) unless a temperature is given (the training-free
presets divide cosine affinity by one, e.g. 0.2). Optional top-k over p. Query positions are processed in
chunks so that memory stays bounded (the KMN argmax takes a first pass over the chunks); chunks of
at most ``FASTEST_CHUNK`` positions run fastest (measured: 1.5x faster reads than 2048 at 480p).
All exponentials go through softmax, which subtracts the maximum.

At inference in bfloat16 (``memvos.model.precision``) the two big products, the KMN argmax and
the top-k choice, run in bfloat16 (5x the float32 speed on the CPUs here); the chosen cells'
logits are then recomputed in float32, so only near-ties can choose differently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

READ_MODES = ("stm", "kmn")
# Query positions per chunk that read fastest on the 2-core CPUs here: 1.4-1.6x faster than 2048
# at 480p with 8 or 20 memory frames, at stride 16 and 8 (the (chunk, N) products stay smaller
# than the caches). The default of ``ReadConfig.chunk``.
FASTEST_CHUNK = 256
# Rows per column block of ``top_k_along_last``: 8 chose the top 5 of 32,400 memory cells 2.6x
# faster than torch.topk on the 2-core CPUs here (16: 2.7x at 32,400 but slower at 8,100; 32: no gain).
TOP_K_ROWS = 8


@dataclass
class ReadConfig:
    """Switches of the memory read."""

    mode: str = "stm"  # 'stm' | 'kmn'
    sigma: float = 6.0  # KMN kernel width, in key-map cells
    top_k: int | None = None  # keep only the k best memory positions per query position
    temperature: float | None = None  # affinity / temperature; None: affinity / sqrt(d)
    argmax_stride: int = 1  # KMN: find q^(p) on a query grid this much coarser (faster)
    chunk: int = FASTEST_CHUNK  # query positions per chunk (bounds memory; 256 reads fastest here)
    fast_argmax: bool = True  # KMN: find q^(p) with a product at the compute precision (bfloat16: faster)
    fast_select: bool = True  # top-k: choose the k cells at the compute precision, weigh them in float32

    def __post_init__(self) -> None:
        if self.mode not in READ_MODES:
            raise ValueError(f"memory read mode must be one of {READ_MODES}, got {self.mode!r}")
        if self.sigma <= 0 or (self.top_k is not None and self.top_k < 1) or self.chunk < 1:
            raise ValueError("sigma must be > 0, top_k >= 1 and chunk >= 1")


class MemoryRead(nn.Module):
    """Reads memory values for every query position; see the module docstring."""

    compute_dtype: torch.dtype = torch.float32  # the selection products' dtype; set for inference

    def __init__(self, config: ReadConfig | None = None) -> None:
        super().__init__()
        self.config = config or ReadConfig()

    @property
    def _low(self) -> torch.dtype | None:
        """The lower compute precision for selection products, None when float32."""
        return None if self.compute_dtype == torch.float32 else self.compute_dtype

    @property
    def _chunk(self) -> int:
        """Query positions per chunk."""
        return self.config.chunk

    def forward(self, mem_key: Tensor, mem_val: Tensor, query_key: Tensor) -> Tensor:
        """mem_key (B, Ck, T, Hm, Wm), mem_val (B, Cv, T, Hm, Wm), query_key (B, Ck, H, W) -> (B, Cv, H, W).
        The memory may also come as cells, mem_key (B, Ck, N) and mem_val (B, Cv, N)."""
        b, ck, h, w = query_key.shape
        cfg = self.config
        chunk = self._chunk
        keys = mem_key.flatten(2)  # (B, Ck, N)
        values = mem_val.flatten(2).transpose(1, 2)  # (B, N, Cv)
        scale = 1.0 / cfg.temperature if cfg.temperature else 1.0 / math.sqrt(ck)
        query = query_key.flatten(2).transpose(1, 2) * scale  # (B, M, Ck)
        if cfg.mode == "kmn":
            centres = self._best_query_positions(keys, query_key)
            q_terms, p_terms = self._kernel_terms(centres, h, w, keys.dtype, keys.device)
            keys = torch.cat([keys, p_terms], dim=1)  # (B, Ck + 4, N)
            query = torch.cat([query, q_terms.expand(b, -1, -1)], dim=-1)  # (B, M, Ck + 4)
        if self._selects_low(keys.shape[-1], values, query):
            keys_low, keys_t = keys.to(self._low), keys.transpose(1, 2).contiguous()  # (B, N, C)
            out = [self._top_k_values(query[:, i : i + chunk], keys_low, keys_t, values)
                   for i in range(0, h * w, chunk)]
        else:
            out = [self._weighted_values(torch.bmm(query[:, i : i + chunk], keys), values)  # (B, m, N) logits
                   for i in range(0, h * w, chunk)]
        return torch.cat(out, dim=1).transpose(1, 2).reshape(b, values.shape[2], h, w)

    def _kernel_terms(self, centres: Tensor, h: int, w: int, dtype, device) -> tuple[Tensor, Tensor]:
        """Factors of the log-kernel: q_terms (M, 4) @ p_terms (B, 4, N) = log g(p, q).

        log g = -|q - q^(p)|^2 / (2 sigma^2) = (2 q.q^ - |q|^2 - |q^|^2) / (2 sigma^2): a sum of
        products of per-query and per-memory terms, so the kernel costs four extra channels in
        the affinity product instead of a pass over every (p, q) pair. Coordinates are
        centred to keep the terms small.
        """
        inv = 1.0 / (2 * self.config.sigma**2)
        offset = torch.tensor([(h - 1) / 2, (w - 1) / 2], dtype=dtype, device=device)
        centres = centres - offset
        ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype),
                                torch.arange(w, device=device, dtype=dtype), indexing="ij")
        q = torch.stack([ys.flatten(), xs.flatten()], dim=-1) - offset  # (M, 2)
        q_terms = torch.cat([2 * inv * q, -inv * (q * q).sum(-1, keepdim=True), torch.ones_like(q[:, :1])], dim=-1)
        p_terms = torch.cat([centres, torch.ones_like(centres[..., :1]),
                             -inv * (centres * centres).sum(-1, keepdim=True)], dim=-1)  # (B, N, 4)
        return q_terms, p_terms.transpose(1, 2)

    def _best_query_positions(self, keys: Tensor, query_key: Tensor) -> Tensor:
        """(B, N, 2) float (y, x) of argmax_q c(p, q) for every memory position p, in query cells."""
        s = self.config.argmax_stride
        coarse = query_key[:, :, ::s, ::s]
        wc = coarse.shape[-1]
        query = coarse.flatten(2)
        if self.config.fast_argmax and self._low is not None:
            keys, query = keys.to(self._low), query.to(self._low)
        best = torch.full(keys.shape[::2], -math.inf, device=keys.device, dtype=keys.dtype)  # (B, N)
        arg = torch.zeros(best.shape, dtype=torch.long, device=keys.device)
        for start in range(0, query.shape[-1], self._chunk):
            c = torch.bmm(keys.transpose(1, 2), query[:, :, start : start + self._chunk])  # (B, N, m)
            value, index = c.max(dim=2)
            better = value > best
            best = torch.where(better, value, best)
            arg = torch.where(better, index + start, arg)
        return torch.stack([(arg // wc) * s, (arg % wc) * s], dim=-1).to(keys.dtype)

    def _selects_low(self, n: int, values: Tensor, query: Tensor) -> bool:
        """Whether the top-k choice runs at low precision (inference only: no gradients)."""
        k = self.config.top_k
        grad = torch.is_grad_enabled() and (values.requires_grad or query.requires_grad)
        return self.config.fast_select and self._low is not None and k is not None and k < n and not grad

    def _top_k_values(self, query: Tensor, keys_low: Tensor, keys_t: Tensor, values: Tensor) -> Tensor:
        """query (B, m, C), keys_low (B, C, N) at low precision, keys_t (B, N, C) and values (B, N, Cv)
        in float32 -> (B, m, Cv): the k best cells by the low-precision product, weighted by
        their float32 logits."""
        index = top_k_along_last(torch.bmm(query.to(keys_low.dtype), keys_low), self.config.top_k)[1]  # (B, m, k)
        batch = torch.arange(query.shape[0], device=query.device)[:, None, None]
        logits = (keys_t[batch, index] * query[:, :, None]).sum(-1)  # (B, m, k), float32
        return (F.softmax(logits, dim=-1)[..., None] * values[batch, index]).sum(2)

    def _weighted_values(self, logits: Tensor, values: Tensor) -> Tensor:
        """Softmax over memory positions (optionally only the top k) applied to values: (B, m, Cv)."""
        k = self.config.top_k
        if k is not None and k < logits.shape[-1]:
            top, index = top_k_along_last(logits, k)  # (B, m, k)
            weights = F.softmax(top, dim=-1)
            if torch.is_grad_enabled() and (values.requires_grad or logits.requires_grad):
                # training: gather's backward would materialise (B, m, N, Cv); a sparse-as-dense product does not
                return torch.bmm(torch.zeros_like(logits).scatter(-1, index, weights), values)
            picked = torch.gather(values[:, None].expand(-1, index.shape[1], -1, -1), 2,
                                  index[..., None].expand(-1, -1, -1, values.shape[-1]))  # (B, m, k, Cv)
            return (weights[..., None] * picked).sum(2)
        return torch.bmm(F.softmax(logits, dim=-1), values)


def top_k_along_last(x: Tensor, k: int, rows: int = TOP_K_ROWS) -> tuple[Tensor, Tensor]:
    """(values, indices) of the k largest entries of (..., N) ``x`` along its last dim, as
    ``x.topk(k, dim=-1)`` gives them (up to the order of ties), faster on CPUs for large N.

    torch.topk walks each row of N one element at a time. Here the row is seen as a (rows, N/rows)
    table: a vectorised max down its columns, then topk over the N/rows column maxima. The k
    largest entries lie in the k columns with the largest maxima (a column holding none of them
    has its maximum below the k-th), so the exact answer is the topk of those k columns' entries.
    """
    n = x.shape[-1]
    if n < 16 * rows * k:  # short rows: nothing to gain
        return x.topk(k, dim=-1)
    cols = n // rows
    body = x[..., : rows * cols].unflatten(-1, (rows, cols))  # a view: entry j at (j // cols, j % cols)
    best_cols = body.amax(-2).topk(k, dim=-1).indices  # (..., k)
    picked = torch.gather(body, -1, best_cols.unsqueeze(-2).expand(*body.shape[:-1], k)).flatten(-2)  # (..., rows*k)
    at_body = (torch.arange(rows, device=x.device)[:, None] * cols + best_cols.unsqueeze(-2)).flatten(-2)
    tail = x[..., rows * cols :]  # the last n % rows entries (no padded copy of x)
    at_tail = torch.arange(rows * cols, n, device=x.device).expand(*x.shape[:-1], -1)
    values, at = torch.cat([picked, tail], -1).topk(k, dim=-1)
    return values, torch.gather(torch.cat([at_body, at_tail], -1), -1, at)
