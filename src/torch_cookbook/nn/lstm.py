"""LSTM classifiers and forecasters, with the sequence summary done right.

The seed's `self.fc(out[:, -1, :])` reads the output at the last *padded* position. For a padded batch that
is the state after the padding, not after the text; for a bidirectional LSTM the backward half of
`out[:, -1]` has seen only that one (padding) step. Here sequences are packed with `pack_padded_sequence`,
so the LSTM stops at each sequence's true length, and the summary is taken from `h_n`: the forward
direction's state after the last real token and the backward direction's state after the first token.

    model = LSTMClassifier(vocab_size=8000, num_classes=5, bidirectional=True, pooling="last")
    logits = model(tokens, lengths)        # tokens (B, T) right-padded with 0, lengths (B,)
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from torch_cookbook.nn.attention import AttentionPooling

__all__ = ["LSTMClassifier", "LSTMForecaster", "POOLINGS", "final_state", "last_valid_output",
           "lengths_from_padding"]

POOLINGS = ("last", "attention", "mean", "padded_last")  # LSTMClassifier's sequence summaries


def lengths_from_padding(tokens: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Number of non-padding tokens per row of a right-padded (B, T) batch (at least 1, as packing requires)."""
    return (tokens != pad_id).sum(1).clamp(min=1)


def final_state(h_n: torch.Tensor, num_layers: int, bidirectional: bool) -> torch.Tensor:
    """The top layer's final hidden state from `h_n` (layers*directions, B, H): (B, H) or (B, 2H).

    `h_n` is ordered layer by layer, forward before backward, so the top layer is the last one (or two).
    With packed input the forward state is the one after each sequence's last real step and the backward
    state the one after its first step: both directions have read the whole sequence.
    """
    directions = 2 if bidirectional else 1
    top = h_n.view(num_layers, directions, h_n.size(1), h_n.size(2))[-1]  # (directions, B, H)
    return torch.cat(list(top), dim=1)


def last_valid_output(out: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """out[b, lengths[b] - 1] for each b: the per-step output at each sequence's last real position.

    For a unidirectional LSTM this equals the forward final state; it is the right replacement for
    `out[:, -1]` when the outputs were unpacked with padding.
    """
    index = (lengths.to(out.device) - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, out.size(2))
    return out.gather(1, index).squeeze(1)


class LSTMClassifier(nn.Module):
    """Embedding → (bi)LSTM, 1-3 layers with dropout between layers → sequence summary → linear.

    pooling: "last"        final hidden state from the packed LSTM (both directions when bidirectional)
             "attention"   attention-weighted sum of the per-step outputs (padding masked)
             "mean"        mean of the per-step outputs over the real tokens
             "padded_last" the seed's `out[:, -1, :]` on the unpacked, padded batch: kept only to measure the bug
    """

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 64, hidden: int = 64,
                 num_layers: int = 1, bidirectional: bool = False, dropout: float = 0.0, pooling: str = "last",
                 pad_id: int = 0) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling {pooling!r}: not one of {POOLINGS}")
        self.num_layers, self.bidirectional, self.pooling, self.pad_id = num_layers, bidirectional, pooling, pad_id
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        # nn.LSTM applies `dropout` between stacked layers only; with one layer it would do nothing (and warn).
        self.lstm = nn.LSTM(embed_dim, hidden, num_layers=num_layers, batch_first=True,
                            bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        out_dim = hidden * (2 if bidirectional else 1)
        self.attention = AttentionPooling(out_dim) if pooling == "attention" else None
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(out_dim, num_classes)
        self.last_attention: torch.Tensor | None = None

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The (B, D) summary of each sequence, before the classifier head."""
        if lengths is None:
            lengths = lengths_from_padding(tokens, self.pad_id)
        emb = self.embed(tokens)
        if self.pooling == "padded_last":  # the seed's version: runs over the padding too
            out, _ = self.lstm(emb)
            return out[:, -1, :]
        packed = pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, (h_n, _) = self.lstm(packed)
        if self.pooling == "last":
            return final_state(h_n, self.num_layers, self.bidirectional)
        out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=tokens.size(1))
        mask = torch.arange(tokens.size(1), device=tokens.device)[None, :] < lengths.to(tokens.device)[:, None]
        if self.pooling == "mean":
            return (out * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        pooled, self.last_attention = self.attention(out, mask)
        return pooled

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.dropout(self.encode(tokens, lengths)))


class LSTMForecaster(nn.Module):
    """Window (B, T, features) → LSTM → `horizon` outputs from the final state (direct multi-step).

    With horizon=1 it is a one-step model that a recursive forecast applies repeatedly. Every window has
    the same length, so no packing is needed and `h_n` is the state after the last observed step.
    `highway_window` > 0 adds a linear map from the last that many input steps straight to the outputs
    (LSTNet's "highway", Lai et al. 2018): a linear path extrapolates a trend beyond the range seen in
    training, which the LSTM's saturating units cannot.
    """

    def __init__(self, input_size: int, horizon: int, hidden: int = 64, num_layers: int = 1,
                 bidirectional: bool = False, dropout: float = 0.0, pooling: str = "last",
                 highway_window: int = 0) -> None:
        super().__init__()
        if pooling not in ("last", "attention"):
            raise ValueError(f"pooling {pooling!r}: not one of ('last', 'attention')")
        self.num_layers, self.bidirectional, self.pooling = num_layers, bidirectional, pooling
        self.lstm = nn.LSTM(input_size, hidden, num_layers=num_layers, batch_first=True,
                            bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0)
        out_dim = hidden * (2 if bidirectional else 1)
        self.attention = AttentionPooling(out_dim) if pooling == "attention" else None
        self.head = nn.Linear(out_dim, horizon)
        self.highway_window = highway_window
        self.highway = nn.Linear(highway_window * input_size, horizon) if highway_window else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, (h_n, _) = self.lstm(x)
        summary = final_state(h_n, self.num_layers, self.bidirectional)
        if self.attention is not None:
            pooled, _ = self.attention(out)
            summary = pooled + summary  # attention adds context to, not replaces, the latest state
        y = self.head(summary)
        if self.highway is not None:
            y = y + self.highway(x[:, -self.highway_window:].flatten(1))
        return y
