"""Attention, written out: dot-product, scaled dot-product, general (Luong), additive (Bahdanau), multi-head,
and attention pooling, with padding and causal masks and the attention weights returned.

Conventions (the same as `torch.nn.functional.scaled_dot_product_attention`):
- tensors are batch-first: query (B, Tq, Dq), keys (B, Tk, Dk), values (B, Tk, Dv);
- a mask is boolean and True where a query MAY attend to a key; it broadcasts to (B, Tq, Tk)
  (multi-head: (B, H, Tq, Tk)). `padding_mask(lengths)` and `causal_mask(Tq, Tk)` build the usual ones;
  combine them with `&`.
- every module returns `(context, weights)`: context (B, Tq, Dv) and weights (B, Tq, Tk), rows summing to 1.

A query whose keys are all masked gets all-zero weights and a zero context, never NaN (torch's own
SDPA returns NaN there). Masked scores are filled with the dtype's most negative finite number, not -inf,
so such a row's softmax is finite; the mask then zeroes it.

Example, Luong-style attention in a decoder (one query per step):
    attn = GeneralAttention(query_dim=256, key_dim=512)
    context, weights = attn(h.unsqueeze(1), encoder_out, mask=padding_mask(src_lengths, encoder_out.size(1)))
Example, attention pooling of a padded sequence into one vector (e.g. for text classification):
    pool = AttentionPooling(dim=128)
    sentence, weights = pool(rnn_out, mask=padding_mask(lengths, rnn_out.size(1)))   # (B, 128), (B, T)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "padding_mask",
    "causal_mask",
    "masked_softmax",
    "attend",
    "scaled_dot_product_attention",
    "DotProductAttention",
    "ScaledDotProductAttention",
    "GeneralAttention",
    "AdditiveAttention",
    "MultiHeadAttention",
    "AttentionPooling",
    "ATTENTION_KINDS",
    "make_attention",
]


# ---- masks ---------------------------------------------------------------------------------------
def padding_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """(B, 1, T) boolean mask, True at the first `lengths[b]` positions: keys a query may attend to."""
    lengths = torch.as_tensor(lengths)
    max_len = int(lengths.max()) if max_len is None else max_len
    positions = torch.arange(max_len, device=lengths.device)
    return (positions[None, :] < lengths[:, None]).unsqueeze(1)


def causal_mask(q_len: int, k_len: int | None = None, device: torch.device | None = None) -> torch.Tensor:
    """(Tq, Tk) boolean mask, True where key j <= query i: each position sees only itself and the past.

    Aligned to the top-left, like `F.scaled_dot_product_attention(is_causal=True)`.
    """
    k_len = q_len if k_len is None else k_len
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).tril()


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None, dim: int = -1) -> torch.Tensor:
    """softmax over `dim` that ignores masked-out positions; an all-masked row gives zeros, not NaN."""
    if mask is None:
        return F.softmax(scores, dim=dim)
    lowest = torch.finfo(scores.dtype).min
    weights = F.softmax(scores.masked_fill(~mask, lowest), dim=dim)
    return weights.masked_fill(~mask, 0.0)


def attend(scores: torch.Tensor, values: torch.Tensor,
           mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Given raw scores (..., Tq, Tk): masked softmax, then the weighted sum of values (..., Tk, Dv)."""
    weights = masked_softmax(scores, mask)
    return weights @ values, weights


def scaled_dot_product_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                 mask: torch.Tensor | None = None, is_causal: bool = False,
                                 scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(Q Kᵀ / √d) V with the weights returned; same masks and result as torch's fused SDPA.

    query (..., Tq, D), key (..., Tk, D), value (..., Tk, Dv); mask True = may attend.
    Dividing by √d keeps the scores' variance near 1 when d is large, so the softmax does not saturate.
    """
    scale = 1.0 / math.sqrt(query.size(-1)) if scale is None else scale
    scores = (query @ key.transpose(-2, -1)) * scale
    if is_causal:
        causal = causal_mask(query.size(-2), key.size(-2), device=query.device)
        mask = causal if mask is None else mask & causal
    return attend(scores, value, mask)


# ---- the four classic scoring functions ------------------------------------------------------------
class DotProductAttention(nn.Module):
    """score(q, k) = q · k (Luong "dot"). Query and key must have the same size. No parameters."""

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        values = keys if values is None else values
        return attend(query @ keys.transpose(-2, -1), values, mask)


class ScaledDotProductAttention(nn.Module):
    """score(q, k) = q · k / √d (Vaswani et al.). No parameters."""

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        values = keys if values is None else values
        return scaled_dot_product_attention(query, keys, values, mask)


class GeneralAttention(nn.Module):
    """score(q, k) = q · W k (Luong "general"): lets query and key live in spaces of different sizes."""

    def __init__(self, query_dim: int, key_dim: int | None = None) -> None:
        super().__init__()
        self.proj = nn.Linear(key_dim or query_dim, query_dim, bias=False)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        values = keys if values is None else values
        return attend(query @ self.proj(keys).transpose(-2, -1), values, mask)


class AdditiveAttention(nn.Module):
    """score(q, k) = vᵀ tanh(W_q q + W_k k) (Bahdanau "concat"): a one-hidden-layer MLP per (query, key) pair.

    Costs O(Tq·Tk·hidden) memory, more than the dot-product kinds; the key projection can be computed once
    per source sequence (`project_keys`) and passed as `projected_keys` at every decoder step.
    """

    def __init__(self, query_dim: int, key_dim: int | None = None, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or query_dim
        self.query_proj = nn.Linear(query_dim, hidden, bias=False)
        self.key_proj = nn.Linear(key_dim or query_dim, hidden, bias=True)
        self.v = nn.Linear(hidden, 1, bias=False)

    def project_keys(self, keys: torch.Tensor) -> torch.Tensor:
        return self.key_proj(keys)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor | None = None,
                mask: torch.Tensor | None = None,
                projected_keys: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        values = keys if values is None else values
        k = self.key_proj(keys) if projected_keys is None else projected_keys
        # (B, Tq, 1, H) + (B, 1, Tk, H) -> (B, Tq, Tk, H) -> (B, Tq, Tk)
        scores = self.v(torch.tanh(self.query_proj(query).unsqueeze(-2) + k.unsqueeze(-3))).squeeze(-1)
        return attend(scores, values, mask)


ATTENTION_KINDS = ("dot", "scaled_dot", "general", "additive")


def make_attention(kind: str, query_dim: int, key_dim: int) -> nn.Module:
    """One of ATTENTION_KINDS by name. dot and scaled_dot need query_dim == key_dim."""
    if kind in ("dot", "scaled_dot"):
        if query_dim != key_dim:
            raise ValueError(f"{kind} attention needs query and key of the same size, got {query_dim} and {key_dim}")
        return DotProductAttention() if kind == "dot" else ScaledDotProductAttention()
    if kind == "general":
        return GeneralAttention(query_dim, key_dim)
    if kind == "additive":
        return AdditiveAttention(query_dim, key_dim)
    raise ValueError(f"unknown attention {kind!r}; known: {', '.join(ATTENTION_KINDS)}")


# ---- multi-head ----------------------------------------------------------------------------------
class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention, laid out like `torch.nn.MultiheadAttention` (batch_first).

    `in_proj_weight` (3E, E) stacks W_q, W_k, W_v and `out_proj` is a Linear(E, E), so torch's weights load
    with `load_state_dict(torch_mha.state_dict())`. Returns (output (B, Tq, E), weights (B, H, Tq, Tk));
    torch's module returns the head-average, `weights.mean(1)`.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} is not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.head_dim = embed_dim, num_heads, embed_dim // num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * embed_dim)) if bias else None
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        nn.init.xavier_uniform_(self.in_proj_weight)
        if bias:
            nn.init.zeros_(self.out_proj.bias)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape  # (B, T, E) -> (B, H, T, E/H)
        return x.view(b, t, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None = None, key_padding_mask: torch.Tensor | None = None,
                is_causal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """mask: True = may attend, broadcast to (B, H, Tq, Tk) (a (Tq, Tk) or (B, 1, Tq, Tk) mask works).
        key_padding_mask: (B, Tk), True = padding, i.e. torch.nn.MultiheadAttention's convention."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.in_proj_bias.chunk(3) if self.in_proj_bias is not None else (None, None, None)
        q = self._split_heads(F.linear(query, w_q, b_q))
        k = self._split_heads(F.linear(key, w_k, b_k))
        v = self._split_heads(F.linear(value, w_v, b_v))
        if key_padding_mask is not None:
            keep = ~key_padding_mask[:, None, None, :]  # (B, 1, 1, Tk)
            mask = keep if mask is None else mask & keep
        out, weights = scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal)
        if self.training and self.dropout > 0:  # dropout on the weights (as in the Transformer), then re-mix
            out = F.dropout(weights, self.dropout) @ v
        b, _, tq, _ = out.shape
        out = out.transpose(1, 2).reshape(b, tq, self.embed_dim)  # concatenate the heads
        return self.out_proj(out), weights


# ---- pooling -------------------------------------------------------------------------------------
class AttentionPooling(nn.Module):
    """Pool a sequence (B, T, D) into one vector (B, D) by additive attention with a learned query.

    score_t = vᵀ tanh(W x_t + b); weights = masked softmax over t; output = Σ_t weights_t x_t.
    Pass `mask` (B, T) or (B, 1, T), True at real tokens (e.g. `padding_mask(lengths, T)`), so padding
    gets zero weight. Returns (pooled (B, D), weights (B, T)).
    The one implementation in the package: `nn.lstm`'s classifier and forecaster use it too. Its layers are
    named `proj` (W, b) and `score` (v), the names the LSTM recipe's checkpoints were saved with.
    """

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, hidden or dim)
        self.score = nn.Linear(hidden or dim, 1, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.score(torch.tanh(self.proj(x))).squeeze(-1)  # (B, T)
        if mask is not None and mask.dim() == 3:
            mask = mask.squeeze(1)
        weights = masked_softmax(scores, mask)
        return (weights.unsqueeze(1) @ x).squeeze(1), weights
