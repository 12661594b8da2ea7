"""The memory read against hand-written attention, and the KMN kernel's properties."""

from __future__ import annotations

import math

import pytest
import torch

from memvos.model.memory_read import MemoryRead, ReadConfig, top_k_along_last


def random_memory(b=2, ck=8, cv=5, t=3, h=4, w=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = torch.randn(b, ck, t, h, w, generator=g)
    mv = torch.randn(b, cv, t, h, w, generator=g)
    qk = torch.randn(b, ck, h, w, generator=g)
    return mk, mv, qk


def reference_attention(mk, mv, qk, scale, log_kernel=None, top_k=None):
    """Plain loops over batch: softmax over all memory positions of k_M . k_Q."""
    b, ck, h, w = qk.shape
    out = torch.zeros(b, mv.shape[1], h * w)
    for i in range(b):
        keys = mk[i].reshape(ck, -1).T  # (N, Ck)
        vals = mv[i].reshape(mv.shape[1], -1)  # (Cv, N)
        q = qk[i].reshape(ck, -1)  # (Ck, M)
        logits = keys @ q * scale  # (N, M)
        if log_kernel is not None:
            logits = logits + log_kernel[i]
        for j in range(h * w):
            col = logits[:, j]
            if top_k is not None:
                keep = torch.zeros_like(col, dtype=torch.bool)
                keep[col.topk(top_k).indices] = True
                col = col.masked_fill(~keep, -math.inf)
            weight = torch.exp(col - col.max())
            out[i, :, j] = vals @ (weight / weight.sum())
    return out.view(b, -1, h, w)


@pytest.mark.parametrize("chunk", [5, 24, 4096])
def test_stm_read_equals_hand_written_softmax_attention(chunk):
    mk, mv, qk = random_memory()
    read = MemoryRead(ReadConfig(mode="stm", chunk=chunk))
    expected = reference_attention(mk, mv, qk, 1 / math.sqrt(mk.shape[1]))
    torch.testing.assert_close(read(mk, mv, qk), expected, rtol=1e-5, atol=1e-5)


def test_temperature_and_top_k():
    mk, mv, qk = random_memory(seed=1)
    read = MemoryRead(ReadConfig(mode="stm", temperature=0.5, top_k=4, chunk=7))
    expected = reference_attention(mk, mv, qk, 1 / 0.5, top_k=4)
    torch.testing.assert_close(read(mk, mv, qk), expected, rtol=1e-5, atol=1e-5)


def test_kmn_equals_reference_with_kernel_from_argmax():
    mk, mv, qk = random_memory(seed=2)
    b, ck, h, w = qk.shape
    sigma = 1.5
    # hand-computed kernel: for each memory position, Gaussian around its best query position
    log_kernel = []
    for i in range(b):
        c = mk[i].reshape(ck, -1).T @ qk[i].reshape(ck, -1)  # (N, M)
        best = c.argmax(dim=1)
        by, bx = best // w, best % w
        qy, qx = torch.arange(h * w) // w, torch.arange(h * w) % w
        d2 = (qy[None] - by[:, None]) ** 2 + (qx[None] - bx[:, None]) ** 2
        log_kernel.append(-d2.float() / (2 * sigma**2))
    expected = reference_attention(mk, mv, qk, 1 / math.sqrt(ck), log_kernel=log_kernel)
    got = MemoryRead(ReadConfig(mode="kmn", sigma=sigma, chunk=5, fast_argmax=False))(mk, mv, qk)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_kmn_kernel_peaks_at_the_argmax_position():
    """One memory position, a value of 1: the kernel alone decides the read's shape."""
    h, w = 7, 9
    mk = torch.ones(1, 1, 1, 1, 1)  # one memory position
    qk = torch.zeros(1, 1, h, w)
    qk[0, 0, 5, 2] = 3.0  # best match for the memory position
    read = MemoryRead(ReadConfig(mode="kmn", sigma=1.0, fast_argmax=False))
    centres = read._best_query_positions(mk.flatten(2), qk)
    assert centres[0, 0].tolist() == [5.0, 2.0]
    q_terms, p_terms = read._kernel_terms(centres, h, w, torch.float32, "cpu")
    log_g = (q_terms @ p_terms[0]).view(h, w)  # the factorised kernel, as the read adds it
    assert log_g.argmax().item() == 5 * w + 2
    assert log_g[5, 2].item() == pytest.approx(0.0, abs=1e-5)
    assert log_g[5, 4].item() == pytest.approx(-4 / 2, abs=1e-5)  # distance 2, sigma 1
    assert log_g[0, 8].item() == pytest.approx(-(25 + 36) / 2, abs=1e-4)


def test_kmn_reduces_to_stm_as_sigma_grows():
    mk, mv, qk = random_memory(seed=3)
    stm = MemoryRead(ReadConfig(mode="stm"))(mk, mv, qk)
    kmn = MemoryRead(ReadConfig(mode="kmn", sigma=1e6))(mk, mv, qk)
    torch.testing.assert_close(kmn, stm, rtol=1e-5, atol=1e-5)
    narrow = MemoryRead(ReadConfig(mode="kmn", sigma=0.5))(mk, mv, qk)
    assert not torch.allclose(narrow, stm, atol=1e-3)


def test_numerically_safe_with_huge_affinities():
    mk, mv, qk = random_memory(seed=4)
    out = MemoryRead(ReadConfig(mode="kmn", temperature=1e-4))(mk * 100, mv, qk * 100)
    assert torch.isfinite(out).all()
    # weights are convex: the read stays inside the range of the values
    assert out.max() <= mv.max() + 1e-5 and out.min() >= mv.min() - 1e-5


def test_coarse_argmax_grid_keeps_shapes_and_stays_close():
    mk, mv, qk = random_memory(h=8, w=8, seed=5)
    fine = MemoryRead(ReadConfig(mode="kmn", sigma=4))(mk, mv, qk)
    coarse = MemoryRead(ReadConfig(mode="kmn", sigma=4, argmax_stride=2))(mk, mv, qk)
    assert coarse.shape == fine.shape
    assert (coarse - fine).abs().mean() < 0.5 * fine.abs().mean()


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="mode"):
        ReadConfig(mode="attention")
    with pytest.raises(ValueError):
        ReadConfig(sigma=0)



def bfloat16_read(config: ReadConfig) -> MemoryRead:
    read = MemoryRead(config)
    read.compute_dtype = torch.bfloat16  # what memvos.model.precision sets for inference
    return read


def test_fast_argmax_finds_the_same_centres_without_ties():
    mk, _mv, qk = random_memory(seed=6)
    fast = bfloat16_read(ReadConfig(mode="kmn", sigma=2.0, top_k=3))
    exact = MemoryRead(ReadConfig(mode="kmn", sigma=2.0, top_k=3, fast_argmax=False))
    keys = mk.flatten(2)
    agree = (fast._best_query_positions(keys, qk) == exact._best_query_positions(keys, qk)).all(-1)
    assert agree.float().mean() > 0.95  # bfloat16 may only swap near-ties


def test_a_float32_read_takes_the_exact_argmax_even_with_fast_argmax_on():
    mk, _mv, qk = random_memory(seed=6)
    keys = mk.flatten(2)
    read = MemoryRead(ReadConfig(mode="kmn", sigma=2.0, fast_argmax=True))  # compute_dtype float32 as built
    centres = read._best_query_positions(keys, qk)
    w = qk.shape[-1]
    best = torch.einsum("bcn,bcm->bnm", keys, qk.flatten(2)).argmax(-1)  # (B, N)
    assert torch.equal(centres, torch.stack([best // w, best % w], dim=-1).float())


@pytest.mark.parametrize("mode", ["stm", "kmn"])
def test_bfloat16_selection_weighs_the_chosen_cells_in_float32(mode):
    """The k cells are chosen by a bfloat16 product; their weights come from float32 logits,
    so where the choice agrees (no near-ties) the output equals the float32 read's."""
    mk, mv, qk = random_memory(ck=16, t=4, seed=8)
    config = ReadConfig(mode=mode, sigma=3.0, top_k=3, chunk=5, temperature=0.5)
    with torch.no_grad():
        exact = MemoryRead(config)(mk, mv, qk)
        fast = bfloat16_read(config)(mk, mv, qk)
    same = torch.isclose(fast, exact, atol=1e-5, rtol=1e-5).all(1)  # (B, h, w): query cells that agree
    assert same.float().mean() > 0.9
    # where they differ, a bfloat16 logit would have to be off: the result is still a convex
    # combination of memory values, within their range
    lo, hi = mv.flatten(2).amin(-1)[..., None, None], mv.flatten(2).amax(-1)[..., None, None]
    assert ((fast >= lo - 1e-5) & (fast <= hi + 1e-5)).all()


def test_bfloat16_selection_is_off_while_training():
    """With gradients the read takes the exact float32 path whatever the compute dtype."""
    mk, mv, qk = random_memory(seed=9)
    config = ReadConfig(mode="stm", top_k=3, temperature=0.2)
    mv.requires_grad_(True)
    assert torch.equal(bfloat16_read(config)(mk, mv, qk), MemoryRead(config)(mk, mv, qk))


def test_top_k_training_path_matches_the_inference_path():
    """With gradients on, top-k uses a scattered dense product (no (B, m, N, Cv) gather); same result."""
    torch.manual_seed(3)
    read = MemoryRead(ReadConfig(mode="stm", top_k=4, chunk=7))
    keys, values, query = torch.randn(2, 6, 2, 3, 4), torch.randn(2, 5, 2, 3, 4), torch.randn(2, 6, 3, 4)
    with torch.no_grad():
        expected = read(keys, values, query)
    values.requires_grad_(True)
    got = read(keys, values, query)
    assert torch.allclose(got, expected, atol=1e-6)
    got.sum().backward()
    assert values.grad is not None and values.grad.abs().sum() > 0


@pytest.mark.parametrize("n", [700, 1000, 4093])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_top_k_along_last_finds_what_torch_topk_finds(n, dtype):
    """Rows long enough for the column-block search (a length not a multiple of its rows too):
    the same k values as torch.topk, and the indices point at them."""
    x = torch.randn(2, 9, n, generator=torch.Generator().manual_seed(n)).to(dtype)
    x[0, 0, -3:] = 50  # the largest entries at the padded end of a row
    values, index = top_k_along_last(x, 5)
    expected = x.topk(5, dim=-1).values
    assert torch.equal(values.sort(-1).values, expected.sort(-1).values)
    assert torch.equal(torch.gather(x, -1, index), values)
    assert set(index[0, 0].tolist()) >= {n - 3, n - 2, n - 1}


def test_top_k_along_last_passes_gradients_to_the_chosen_entries():
    x = torch.randn(3, 2000, generator=torch.Generator().manual_seed(1), requires_grad=True)
    values, index = top_k_along_last(x, 4)
    values.sum().backward()
    chosen = torch.zeros_like(x).scatter(-1, index, 1.0)
    assert torch.equal(x.grad, chosen)
