"""torch_cookbook.nn.attention against torch's own implementations, masks, and the softmax invariants."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torch_cookbook.nn.attention import (
    AdditiveAttention,
    AttentionPooling,
    DotProductAttention,
    GeneralAttention,
    MultiHeadAttention,
    ScaledDotProductAttention,
    causal_mask,
    make_attention,
    masked_softmax,
    padding_mask,
    scaled_dot_product_attention,
)

B, TQ, TK, D = 3, 5, 7, 8
LENGTHS = torch.tensor([7, 4, 1])


@pytest.fixture
def qkv():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(B, TQ, D, generator=g), torch.randn(B, TK, D, generator=g),
            torch.randn(B, TK, D + 2, generator=g))


def test_masks():
    m = padding_mask(LENGTHS, TK)
    assert m.shape == (B, 1, TK) and m.dtype == torch.bool
    assert m.sum(-1).squeeze(1).tolist() == LENGTHS.tolist()
    c = causal_mask(4)
    assert c.tolist() == [[j <= i for j in range(4)] for i in range(4)]


@pytest.mark.parametrize("use_mask", ["none", "padding", "padding+causal"])
def test_sdpa_matches_torch(qkv, use_mask):
    q, k, v = qkv
    mask = None
    if use_mask != "none":
        mask = padding_mask(LENGTHS, TK)
        if "causal" in use_mask:
            mask = mask & causal_mask(TQ, TK)
    ours, weights = scaled_dot_product_attention(q, k, v, mask)
    theirs = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    assert weights.shape == (B, TQ, TK)


def test_sdpa_is_causal_matches_torch(qkv):
    q, k, _ = qkv
    v = torch.randn(B, TQ, D)
    ours, _ = scaled_dot_product_attention(q, q, v, is_causal=True)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, q, v, is_causal=True), atol=1e-5, rtol=1e-5)
    # and with explicit scale
    k = k[:, :TQ]
    ours, _ = scaled_dot_product_attention(q, k, v, scale=0.3)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, scale=0.3), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("with_causal", [False, True])
def test_multihead_matches_torch(with_causal):
    torch.manual_seed(0)
    embed, heads, t = 16, 4, 6
    reference = nn.MultiheadAttention(embed, heads, batch_first=True).eval()
    ours = MultiHeadAttention(embed, heads).eval()
    ours.load_state_dict(reference.state_dict())  # same parameter names and layout
    q, k, v = torch.randn(B, t, embed), torch.randn(B, t, embed), torch.randn(B, t, embed)
    key_padding = ~padding_mask(torch.tensor([6, 3, 2]), t).squeeze(1)  # True = padding, torch's convention
    mask = causal_mask(t) if with_causal else None
    out, weights = ours(q, k, v, mask=mask, key_padding_mask=key_padding)
    ref_out, ref_weights = reference(q, k, v, key_padding_mask=key_padding,
                                     attn_mask=None if mask is None else ~mask)  # torch: True = blocked
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights.mean(1), ref_weights, atol=1e-5, rtol=1e-5)
    assert weights.shape == (B, heads, t, t)


def all_modules():
    torch.manual_seed(0)
    return {"dot": DotProductAttention(), "scaled_dot": ScaledDotProductAttention(), "general": GeneralAttention(D),
            "additive": AdditiveAttention(D, hidden=6)}


@pytest.mark.parametrize("kind", ["dot", "scaled_dot", "general", "additive"])
def test_weights_sum_to_one_and_ignore_padding(qkv, kind):
    q, k, v = qkv
    attn = all_modules()[kind]
    context, weights = attn(q, k, v, mask=padding_mask(LENGTHS, TK))
    assert context.shape == (B, TQ, D + 2) and weights.shape == (B, TQ, TK)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, TQ))
    for b, n in enumerate(LENGTHS.tolist()):
        assert weights[b, :, n:].abs().max().item() == 0.0 if n < TK else True
    # padding really is invisible: changing padded keys/values does not change anything
    k2, v2 = k.clone(), v.clone()
    k2[1, 4:], v2[1, 4:] = 100.0, -100.0
    context2, _ = attn(q, k2, v2, mask=padding_mask(LENGTHS, TK))
    torch.testing.assert_close(context2, context)


@pytest.mark.parametrize("kind", ["dot", "scaled_dot", "general", "additive"])
def test_fully_masked_rows_give_zeros_not_nan(qkv, kind):
    q, k, v = qkv
    q, k, v = q.requires_grad_(), k.requires_grad_(), v.requires_grad_()
    mask = padding_mask(LENGTHS, TK) & causal_mask(TQ, TK)
    mask[0, 2] = False  # query 2 of example 0 may attend to nothing
    context, weights = all_modules()[kind](q, k, v, mask=mask)
    assert torch.isfinite(context).all() and torch.isfinite(weights).all()
    assert weights[0, 2].abs().sum() == 0 and context[0, 2].abs().sum() == 0
    context.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))
    if kind == "scaled_dot":  # and elsewhere it agrees with torch's fused kernel (NaN there in older torch)
        reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).nan_to_num(0.0)
        torch.testing.assert_close(context, reference, atol=1e-5, rtol=1e-5)


def test_masked_softmax_all_masked_row():
    scores = torch.randn(2, 4)
    mask = torch.tensor([[True, False, True, False], [False] * 4])
    w = masked_softmax(scores, mask)
    assert w[1].tolist() == [0.0] * 4
    torch.testing.assert_close(w[0].sum(), torch.tensor(1.0))


def test_multihead_fully_masked_and_dropout():
    mha = MultiHeadAttention(8, 2, dropout=0.5)
    x = torch.randn(2, 3, 8)
    kpm = torch.tensor([[False, False, False], [True, True, True]])  # second sequence is all padding
    out, w = mha.eval()(x, x, x, key_padding_mask=kpm)
    assert torch.isfinite(out).all() and w[1].abs().sum() == 0
    torch.testing.assert_close(w[0].sum(-1), torch.ones(2, 3))
    mha.train()
    out_train, _ = mha(x, x, x)
    assert out_train.shape == (2, 3, 8)


def test_attention_pooling():
    torch.manual_seed(0)
    pool = AttentionPooling(D)
    x = torch.randn(B, TK, D)
    pooled, weights = pool(x, mask=padding_mask(LENGTHS, TK))
    assert pooled.shape == (B, D) and weights.shape == (B, TK)
    torch.testing.assert_close(weights.sum(-1), torch.ones(B))
    torch.testing.assert_close(pooled[2], x[2, 0])  # one real token: the pooled vector is that token
    pooled2, _ = pool(x, mask=padding_mask(LENGTHS, TK).squeeze(1))  # (B, T) masks work too
    torch.testing.assert_close(pooled2, pooled)


def test_make_attention():
    assert isinstance(make_attention("additive", 4, 6), AdditiveAttention)
    with pytest.raises(ValueError, match="same size"):
        make_attention("dot", 4, 6)
    with pytest.raises(ValueError, match="unknown attention"):
        make_attention("cosine", 4, 4)
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)


def test_additive_projected_keys_cache(qkv):
    q, k, v = qkv
    attn = AdditiveAttention(D)
    direct = attn(q, k, v)
    cached = attn(q, k, v, projected_keys=attn.project_keys(k))
    torch.testing.assert_close(direct[0], cached[0])
