"""The pretrained all-MiniLM-L6-v2 encoder (`nn.bert`) as the input of a text classifier, frozen or fine-tuned.

encoder_inputs       what a classifier on the encoder reads for each text: its sentence embedding (FEATURES, for a
                     `SentenceHead`) or the hidden states of its frozen lower layers (STATES, for a
                     `TopLayersClassifier`), with lengths. The encoder's weights never change, so for a dataset
                     these are computed once per machine and cached (`cached_encoder_output`).
fine_tune_groups     AdamW parameter groups for fine-tuning: a small learning rate for the pretrained layers, a
                     larger one for the new head.
warmup_decay_scale   the learning-rate multiplier of the usual fine-tuning schedule: a short linear warm-up, then a
                     linear decay to 0.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import torch

from torch_cookbook.nn.bert import (
    BertConfig,
    TopLayersClassifier,
    embed_texts,
    hidden_states,
    load_minilm,
)

__all__ = ["ENCODER_INPUTS", "FEATURES", "STATES", "TUNE_WEIGHT_DECAY", "cached_encoder_output", "encoder_inputs",
           "feature_lengths", "fine_tune_groups", "frozen_layers", "warmup_decay_scale"]

FEATURES = "features"  # the sentence embedding (N, 384): what a linear probe of the frozen encoder reads
STATES = "states"  # the hidden states (N, T, 384) after the frozen layers: what the fine-tuned top layers read
ENCODER_INPUTS = (FEATURES, STATES)
# AdamW weight decay of fine-tuned encoder layers: the usual value for fine-tuning BERT-family models.
TUNE_WEIGHT_DECAY = 0.01


def frozen_layers(tune_layers: int) -> int:
    """How many of the encoder's layers (the bottom ones) stay frozen when its top `tune_layers` are fine-tuned."""
    return BertConfig().layers - tune_layers


def feature_lengths(features: torch.Tensor) -> torch.Tensor:
    """Every row of (N, D) features is D long: the lengths a classifier loop passes along with its inputs."""
    return torch.full((len(features),), features.shape[1], dtype=torch.long)


def cached_encoder_output(texts: list[str], dataset: str, kind: str, reads: str,
                          compute: Callable[..., dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """What `compute(encoder, tokenizer)` returns for `texts`, computed once per machine and cached: the frozen
    encoder's output depends only on the texts, on `reads` (how much of each text, which layers) and on the
    weights, not on a split or a seed. `dataset` and `kind` name the cache file."""
    from torch_cookbook.data.cache import load_cached, store_cached
    from torch_cookbook.nn.bert import MINILM_SHA256

    texts_digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()
    # load_minilm refuses any other weights than these, so their pinned digest identifies the encoder.
    key = f"{texts_digest}|{reads}|{MINILM_SHA256['model.safetensors']}|{torch.__version__}"
    name = f"{kind}_{dataset}_{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    cached = load_cached(name, key)
    if cached is None:
        cached = compute(*load_minilm())
        store_cached(name, key, cached)
    return cached


def encoder_inputs(texts: list[str], kind: str, max_tokens: int, tune_layers: int = 1,
                   cache_as: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, lengths) for `texts`: FEATURES, the sentence embeddings (N, 384) of each text's first
    `max_tokens` word pieces; or STATES, the float16 hidden states (N, T, 384) after all but the top
    `tune_layers` layers, and each text's word-piece count. Cached per machine under dataset name `cache_as`
    (None: computed, not cached, e.g. for one text to predict).

    On a cache miss this builds an encoder, which draws on the global random stream: compute a model's
    inputs before seeding the model."""
    if kind not in ENCODER_INPUTS:
        raise ValueError(f"kind {kind!r}: expected one of {ENCODER_INPUTS}")
    frozen = frozen_layers(tune_layers)

    def compute(encoder, tokenizer) -> dict[str, torch.Tensor]:
        if kind == FEATURES:
            return {"features": embed_texts(encoder, tokenizer, texts, max_tokens)}
        states, lengths = hidden_states(encoder, tokenizer, texts, frozen, max_tokens)
        return {"states": states, "lengths": lengths}

    if cache_as is None:
        out = compute(*load_minilm())
    elif kind == FEATURES:  # cache names and keys as they have always been, so existing caches stay valid
        out = cached_encoder_output(texts, cache_as, "minilm", f"{max_tokens}", compute)
    else:
        out = cached_encoder_output(texts, cache_as, "minilm_states", f"{max_tokens}|{frozen}", compute)
    if kind == FEATURES:
        return out["features"], feature_lengths(out["features"])
    return out["states"], out["lengths"]


def fine_tune_groups(model: TopLayersClassifier, layers_lr: float, head_lr: float) -> list[dict]:
    """AdamW groups: the pretrained layers at a small learning rate (large updates would undo the pretraining),
    the new head, which starts random, at a larger one."""
    return [{"params": list(model.layers.parameters()), "lr": layers_lr},
            {"params": list(model.head.parameters()), "lr": head_lr}]


def warmup_decay_scale(step: int, steps: int) -> float:
    """The lr multiplier at (0-based) `step` of `steps`: a linear rise over the first 10% of the steps (so the
    new head learns something before the pretrained layers move much), then a linear fall that reaches 0 after
    the last step. A function of the step alone, so a resumed run continues it exactly."""
    return min(1.0, (step + 1) / max(1.0, 0.1 * steps)) * (steps - step) / steps
