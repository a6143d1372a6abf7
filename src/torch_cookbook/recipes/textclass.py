"""Text classification: bag of embeddings, Kim CNN, a packed BiLSTM and a pretrained MiniLM encoder (frozen and
fine-tuned) against TF-IDF + logistic regression, on BBC News topics and drug-review sentiment, or your own texts.

A subword tokenizer is trained on the training split only and saved with the run; every model keeps its best
checkpoint on validation and is scored once on test. Averages of models' class probabilities (the bag with an
encoder model, several bags) are models too. The full profile scores BBC by repeated stratified 5-fold
cross-validation, one fold per seed (`across_seeds` pools them). docs/textclass.md explains each step."""

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

from torch_cookbook.data import folds
from torch_cookbook.data import text as textdata
from torch_cookbook.engine import distributed as dist
from torch_cookbook.engine.config import ON_BUNDLED_DATA, BaseConfig, Target, param
from torch_cookbook.engine.loop import autocast, grad_scaler
from torch_cookbook.engine.repro import member_seed
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.errors import ConfigError, DataError
from torch_cookbook.nn import sentence_encoder as minilm
from torch_cookbook.nn import text as textnn
from torch_cookbook.nn.bert import BertConfig, SentenceHead, TopLayersClassifier, load_minilm
from torch_cookbook.nn.lstm import LSTMClassifier
from torch_cookbook.nn.text import BagOfEmbeddings, KimCNN, class_scores, predict_logits, tfidf_predict

seed_question = "Q39 text classification"
summary = "BBC News and drug reviews: bag of embeddings, Kim CNN, BiLSTM, pretrained MiniLM vs TF-IDF + LR."


@dataclass
class Config(BaseConfig):
    datasets: list[str] = param(["bbc", "drugs"], "datasets to train on", choices=textdata.DATASETS)
    data: str = param("", "your own texts instead of --datasets: a CSV/TSV/JSONL file or class folders of .txt files")
    text_column: str = param("text", "--data: the column (JSONL: key) of the texts")
    label_column: str = param("label", "--data: the column (JSONL: key) of the labels")
    # bow_ensemble and bow_minilm are offered, not defaults (docs/textclass.md, "What we tried").
    models: list[str] = param(["bow", "cnn", "lstm", "minilm", "minilm_ft", "bow_minilm_ft"], "models to compare"
                              " (MODELS)", choices=("bow", "cnn", "lstm", "minilm", "bow_minilm", "minilm_ft",
                                                    "bow_minilm_ft", "bow_ensemble"))
    # BPE: the tokenizers library's WordPiece training is not deterministic (huggingface/tokenizers#1794).
    tokenizer: str = param("bpe", "subword tokenizer trained on the training split", choices=("wordpiece", "bpe"))
    vocab_size: int = param(30000, "tokenizer vocabulary size", low=100, high=100000)
    max_len: int = param(256, "tokens kept per text (the start of it)", low=8, high=4096)
    bow_max_len: int = param(512, "tokens the bag reads: all of the max_len·8 characters TF-IDF sees", low=8, high=4096)
    lstm_max_len: int = param(128, "tokens the LSTM reads (≤ max_len): its CPU cost grows fast", low=8, high=4096)
    minilm_max_len: int = param(256, "word pieces the MiniLM encoder reads (trained on up to 256)", low=8, high=512)
    minilm_tune_layers: int = param(1, "minilm_ft: how many of the encoder's 6 layers (the top ones) are fine-tuned;"
                                    " the frozen layers' states are computed once and cached", low=1, high=6)
    minilm_tune_lr: float = param(2e-4, "minilm_ft: peak AdamW lr of the fine-tuned layers", low=0, low_open=True)
    minilm_head_lr: float = param(3e-3, "minilm_ft: peak AdamW lr of its new linear head", low=0, low_open=True)
    minilm_tune_epochs: float = param(4.0, "minilm_ft: passes over the training split", low=0, low_open=True)
    minilm_tune_batch: int = param(16, "minilm_ft: minibatch size", low=2)
    embed_dim: int = param(64, "token embedding size", low=2)
    hidden: int = param(64, "LSTM hidden size per direction; CNN filters per width", low=2)
    dropout: float = param(0.3, "dropout before the classifier head", low=0, high=1, high_open=True)
    word_dropout: float = param(0.3, "share of tokens the bag leaves out in training", low=0, high=1, high_open=True)
    bow_init: str = param("fasttext", "bag initialisation: fastText's (embeddings ±1/embed_dim, classifier zero) or"
                          " PyTorch's N(0, 1) embeddings", choices=("fasttext", "normal"))
    bow_idf: bool = param(True, "weight the bag's mean by each token's idf in the training split, as TF-IDF does")
    bow_bigram_buckets: int = param(0, "hashed token-bigram rows in the bag (0 = tokens only)", low=0, high=10_000_000)
    bow_members: int = param(5, "bags bow_ensemble averages, from their own seeds (member 0: bow)", low=1, high=50)
    steps: int = param(600, "training steps per model", low=1)
    batch_size: int = param(32, "minibatch size", low=2)
    lr: float = param(0.01, "AdamW learning rate", low=0, low_open=True)
    weight_decay: float = param(1e-4, "AdamW weight decay", low=0)
    clip: float = param(1.0, "gradient-norm clip (0 = off); LSTMs need it early in training", low=0)
    eval_every: int = param(50, "validate every N steps; the best validation macro-F1 is kept", low=1)
    val_fraction: float = param(0.1, "validation share of each class", low=0.01, high=0.5)
    test_fraction: float = param(0.2, "test share of each class", low=0.01, high=0.5)
    cv_datasets: list[str] = param([], "datasets (bbc, drugs, user) scored by repeated stratified k-fold instead of one"
                                   " split: seed s holds out fold (s mod cv_folds) of repeat (s div cv_folds)")
    cv_folds: int = param(5, "folds of each cross-validation repeat (--cv_datasets)", low=2, high=100)
    cv_val_fraction: float = param(0.2, "CV: validation share of each class of the other folds", low=0.01, high=0.5)
    tfidf_c: float = param(10.0, "inverse regularisation C of the TF-IDF logistic regression", low=0, low_open=True)
    tfidf_grid: bool = param(False, "choose TF-IDF's C (1, 3, 10, 30, 100) and n-grams (words; words and pairs) on"
                             " validation, as the neural models are chosen; off: --tfidf_c with words and pairs")

    @property
    def sources(self) -> list[str]:  # what a run trains on: a user's --data, named "user", or the bundled datasets
        return [textdata.USER] if self.data else self.datasets


profiles = {
    "smoke": {"datasets": ["drugs"], "vocab_size": 1000, "max_len": 48, "bow_max_len": 64, "embed_dim": 16,
              "hidden": 16, "steps": 16, "eval_every": 8, "batch_size": 16, "bow_members": 2, "minilm_max_len": 32,
              "minilm_tune_epochs": 0.5},
    # quick: a shorter encoder input and one epoch of fine-tuning keep the demo to about a minute.
    "quick": {"datasets": ["bbc"], "max_len": 128, "bow_max_len": 256, "steps": 150, "eval_every": 50,
              "minilm_max_len": 128, "minilm_tune_epochs": 1.0},
    # full: BBC by cross-validation, one fold a seed (`cookbook bench textclass --seeds 15`: 3 repeats of 5 folds),
    # TF-IDF tuned on the inner validation split, and the models validation picked in the folds measured.
    "full": {"datasets": ["bbc"], "cv_datasets": ["bbc"], "tfidf_grid": True, "models": ["minilm_ft", "bow_minilm_ft"]},
}

# A claim about the full profile's folds together (`cookbook bench textclass --seeds 15`), judged by the bench on
# `across_seeds`, the runs' out-of-fold predictions pooled: the best neural model (chosen inside each fold) makes
# fewer errors than tuned TF-IDF, McNemar's exact test per repeat gives p < 0.05 (the mean over the repeats), and
# its mean macro-F1 over the folds is at least TF-IDF's. One fold's 445 articles decide none of it.
targets = [Target(metric, op, value, ON_BUNDLED_DATA, across_seeds=True) for metric, op, value in (
    ("bbc_cv_best_neural_minus_tfidf_errors", "<=", -1), ("bbc_cv_mcnemar_p_mean", "<=", 0.05),
    ("bbc_cv_best_neural_minus_tfidf_macro_f1_mean", ">=", 0.0))]
across_seeds = folds.aggregate  # out-of-fold errors, McNemar per repeat, mean macro-F1s of the runs given
DATA_FIELDS = {"data": ("text_column", "label_column")}  # the run records this data and its columns (data.json)


# ---- the models a learner compares --------------------------------------------------------------------
@dataclass(frozen=True)
class Model:
    """How a model is built and what it reads; an average names the models whose class probabilities it means."""
    build: Callable[[Config, int, int], nn.Module] | None = None  # (cfg, vocab size, classes) -> untrained model
    reads: Callable[[Config], int] | str = ""  # how many tokens of each text, or which encoder output
    start: Callable[[Config, int, int], nn.Module] | None = None  # the model training starts from, if not build's
    parts: tuple[str, ...] = ()  # an average: the models it averages


MODELS = {
    "bow": Model(lambda c, v, k: BagOfEmbeddings(v, k, c.embed_dim, dropout=c.dropout, word_dropout=c.word_dropout,
                                                 init=c.bow_init, bigram_buckets=c.bow_bigram_buckets,
                                                 idf_weighted=c.bow_idf),
                 reads=lambda c: c.bow_max_len),  # a token costs the bag almost nothing: it reads what TF-IDF sees
    "cnn": Model(lambda c, v, k: KimCNN(v, k, c.embed_dim, filters=c.hidden, dropout=c.dropout),
                 reads=lambda c: c.max_len),
    # Attention pooling over the packed BiLSTM's outputs, padding masked: it weights topic words wherever they occur
    # instead of carrying them to the end of the text. It reads fewer tokens: its CPU cost grows fast with length.
    "lstm": Model(lambda c, v, k: LSTMClassifier(v, k, c.embed_dim, c.hidden, bidirectional=True, dropout=c.dropout,
                                                 pooling="attention"), reads=lambda c: min(c.lstm_max_len, c.max_len)),
    "minilm": Model(lambda c, v, k: SentenceHead(BertConfig().hidden, k), reads=minilm.FEATURES),  # a linear probe
    "minilm_ft": Model(lambda c, v, k: TopLayersClassifier(BertConfig(), c.minilm_tune_layers, k), reads=minilm.STATES,
                       start=lambda c, v, k: TopLayersClassifier.from_encoder(load_minilm()[0], c.minilm_tune_layers,
                                                                              k)),  # pretrained layers, random head
    # The bag reads every word, an encoder a pretrained reading of the start: they misclassify different texts.
    "bow_minilm": Model(parts=("bow", "minilm")), "bow_minilm_ft": Model(parts=("bow", "minilm_ft")),
    "bow_ensemble": Model(parts=("bow",)),  # bow_members bags from their own seeds (`members`)
}


def members(cfg: Config, ds: str, name: str) -> list[tuple[str, str, int]]:
    """(variant, model, seed) of each trained model that `name` is: itself, or the models it averages."""
    if name == "bow_ensemble":  # member 0 is the bow model itself
        return [(f"{ds}_bow" if m == 0 else f"{ds}_bow_{m}", "bow", member_seed(cfg.seed, m))
                for m in range(cfg.bow_members)]
    return [(f"{ds}_{part}", part, cfg.seed) for part in MODELS[name].parts or (name,)]


def seeded_model(name: str, cfg: Config, data: textdata.Prepared, seed: int | None = None) -> nn.Module:
    # Every model starts from the same seed (an ensemble member from its own), whatever ran before it.
    torch.manual_seed(cfg.seed if seed is None else seed)
    model = (MODELS[name].start or MODELS[name].build)(cfg, data.vocab_size, len(data.classes))
    if getattr(model, "idf_weighted", False):  # from the training split only, as TF-IDF's vectorizer is fit
        model.set_idf(view(cfg, data, name).ids[data.train])
    return model


# ---- train one model: keep the best on validation, reload it, test ---------------------------------------
def train_text_model(cfg: Config, run: Run, model: nn.Module, data: textdata.Prepared, seed: int | None = None,
                     fused: bool = False, param_groups: list[dict] | None = None,
                     lr_scale: Callable[[int], float] | None = None) -> dict:
    """Train on data.train, keep the checkpoint with the best validation macro-F1, score it on data.test. `seed`
    (default cfg.seed) sets the minibatch order; `fused` AdamW is faster on a CPU for a large embedding table, all of
    whose rows AdamW updates each step; `param_groups` each have their own lr, which `lr_scale(step)` multiplies."""
    model = model.to(run.device)  # in place: parameters named in param_groups stay the model's
    optimizer = torch.optim.AdamW(param_groups or model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=fused or None)
    peak_lrs = [group["lr"] for group in optimizer.param_groups]  # before a resume restores scaled ones
    trainer = Trainer(run, cfg.steps, every=cfg.eval_every, clip_norm=cfg.clip, model=model, optimizer=optimizer,
                      scaler=grad_scaler(run.device, cfg.amp))
    train_s = trainer.extra.get("train_s", 0.0)
    ids, lengths, labels = data.ids[data.train], data.lengths[data.train], data.labels[data.train]
    ddp_model = dist.wrap_ddp(model.train(), run.device, split_rng=True)  # after the restore: see wrap_ddp
    t0, seed = time.perf_counter(), (cfg.seed if seed is None else seed)
    for step, idx in trainer.steps(dist.shard_batches(len(ids), min(cfg.batch_size, len(ids)), seed, trainer.start)):
        width = int(lengths[idx].max())  # the batch cut to its longest text: same result, fewer padded steps, no sync
        x, y = ids[idx, :width].to(run.device), labels[idx].to(run.device)
        if lr_scale is not None:  # a function of the step alone, so a resumed run continues it exactly
            for group, peak in zip(optimizer.param_groups, peak_lrs):
                group["lr"] = peak * lr_scale(step)
        with autocast(run.device, cfg.amp):
            loss = nn.functional.cross_entropy(ddp_model(x, lengths[idx]), y)
        trainer.backward(loss)
        done = step + 1
        if done % cfg.eval_every == 0 or done == cfg.steps:
            trainer.extra["train_s"] = train_s + time.perf_counter() - t0
            val = report(predict_logits(model, data.ids[data.val], data.lengths[data.val], run.device), data, data.val)
            trainer.save_best(val["macro_f1"])
            run.log({**dist.all_reduce_mean({"train/loss": loss.item()}), "eval/val_macro_f1": val["macro_f1"],
                     "eval/val_accuracy": val["accuracy"]}, done)
    train_s += time.perf_counter() - t0
    best = trainer.load_best(model)  # the best on validation, scored on test
    result = report(predict_logits(model, data.ids[data.test], data.lengths[data.test], run.device), data, data.test,
                    per_class=True)
    return run.finish({**result, "val_macro_f1": trainer.best_value, "best_step": best["step"], "train_s": train_s,
                       "params": sum(p.numel() for p in model.parameters())})


def train_model(cfg: Config, sub: Run, data: textdata.Prepared, name: str, seed: int | None = None) -> dict:
    """Train model `name` (not an average) in variant `sub`; a pretrained one as transformers are fine-tuned."""
    # Its inputs first: on an empty cache computing an encoder's output builds an encoder, which draws on the
    # global random stream, and the model's initialisation and dropout must not depend on whether it did.
    inputs = view(cfg, data, name)
    model = seeded_model(name, cfg, data, seed)
    if MODELS[name].start is None:  # trained from scratch (a pretrained start is fine-tuned, below)
        return train_text_model(cfg, sub, model, inputs, seed=seed, fused=True)
    steps = max(1, int(cfg.minilm_tune_epochs * len(data.train) / cfg.minilm_tune_batch))
    settings = replace(cfg, steps=steps, batch_size=cfg.minilm_tune_batch, weight_decay=minilm.TUNE_WEIGHT_DECAY)
    return train_text_model(settings, sub, model, inputs, lr_scale=lambda step: minilm.warmup_decay_scale(step, steps),
                            param_groups=minilm.fine_tune_groups(model, cfg.minilm_tune_lr, cfg.minilm_head_lr))


def train_average(cfg: Config, run: Run, sub: Run, data: textdata.Prepared, name: str) -> dict:
    """Train (or reuse) the models `name` averages, each kept at its best validation step; score their mean."""
    results = [dist.broadcast_object(run.variant(v).result) or train_model(cfg, run.variant(v), data, m, s)
               for v, m, s in members(cfg, data.name, name)]
    test, val = scores_on(cfg, run, data, name, data.test, data.val)
    result = report(test, data, data.test, per_class=True)
    result.update(val_macro_f1=report(val, data, data.val)["macro_f1"], params=sum(r["params"] for r in results),
                  member_val_macro_f1=[r["val_macro_f1"] for r in results],
                  member_macro_f1=[r["macro_f1"] for r in results], train_s=sum(r["train_s"] for r in results))
    return sub.finish(result)


# ---- the recipe --------------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    metrics: dict[str, float | None] = {}
    for ds in cfg.sources:
        data = prepare(cfg, ds)
        if run.is_main:  # the tokenizer is part of the model: predict needs exactly this one
            textdata.save_trained(run.dir, data)
        results = {}
        for name in cfg.models:
            sub = run.variant(f"{ds}_{name}")
            results[name] = sub.result or (train_average(cfg, run, sub, data, name) if MODELS[name].parts
                                           else train_model(cfg, sub, data, name))
        best, (baseline, tfidf) = best_model(results), tfidf_baseline(cfg, data)
        predictions = {"best_neural": scores_on(cfg, run, data, best, data.test)[0].argmax(1), "tfidf": tfidf}
        paired = textnn.paired_counts(predictions, data.labels[data.test])  # errors, and who alone got a text right
        metrics.update(textnn.comparison_metrics(ds, results, best, baseline, paired))
        if ds in cfg.cv_datasets and run.is_main:  # what `across_seeds` pools: this fold's articles, both predictions
            folds.save_out_of_fold(run.dir, ds, cfg.seed, cfg.cv_folds, data.classes, data.test,
                                   data.labels[data.test], predictions, best_neural=best)
        plot_confusion(run, ds, best, results, data.classes)
    plot_curves(cfg, run)
    return metrics


def check_launch(cfg: Config) -> None:
    if unknown := [ds for ds in cfg.cv_datasets if ds not in (*textdata.DATASETS, textdata.USER)]:
        raise ConfigError(f"--cv_datasets {unknown[0]}: not one of the allowed values (bbc, drugs, user)")
    if cfg.data:  # read, split and tokenise the user's data before the run directory exists: bad data writes nothing
        prepare(cfg, textdata.USER)
    dist.check_batches(batch_size=cfg.batch_size, minilm_tune_batch=cfg.minilm_tune_batch)  # split over ranks


def prepare(cfg: Config, name: str) -> textdata.Prepared:
    # The texts stay cut to max_len·8 characters whatever the bag reads (TF-IDF sees exactly those); cv: k-fold.
    cv = name in cfg.cv_datasets
    return textdata.prepare(name, cfg.seed, cfg.tokenizer, cfg.vocab_size, encoded_len(cfg),
                            cfg.cv_val_fraction if cv else cfg.val_fraction, cfg.test_fraction, chars=8 * cfg.max_len,
                            source=textdata.UserData.given(cfg), cv_folds=cfg.cv_folds if cv else 0)


def encoded_len(cfg: Config) -> int:  # token columns encoded per text: enough for the model that reads the most
    return max(cfg.max_len, cfg.bow_max_len)


def tokens_read(cfg: Config, name: str) -> int:
    """How many tokens of each text model `name` reads (an average: its first model's; the encoder: word pieces)."""
    reads = MODELS[(MODELS[name].parts or (name,))[0]].reads
    return cfg.minilm_max_len if isinstance(reads, str) else reads(cfg)


def inputs_for(cfg: Config, name: str, texts: list[str], ids: torch.Tensor, lengths: torch.Tensor,
               cache_as: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """What model `name` reads of each text: its first tokens, or the encoder's output (cached under `cache_as`)."""
    reads = MODELS[name].reads
    if isinstance(reads, str):
        return minilm.encoder_inputs(texts, reads, cfg.minilm_max_len, cfg.minilm_tune_layers, cache_as)
    return ids[:, :reads(cfg)], lengths.clamp(max=reads(cfg))


def view(cfg: Config, data: textdata.Prepared, name: str) -> textdata.Prepared:
    """`data` with each text's token ids replaced by what model `name` reads, so one loop trains and scores all."""
    inputs, lengths = inputs_for(cfg, name, data.texts, data.ids, data.lengths, cache_as=data.name)
    return replace(data, ids=inputs, lengths=lengths)


# ---- evaluation ----------------------------------------------------------------------------------------
def report(scores: torch.Tensor, data: textdata.Prepared, split: torch.Tensor, per_class: bool = False) -> dict:
    """`classification_report` of the argmax of `scores` (logits, or an average's class probabilities)."""
    return textnn.classification_report(scores.argmax(1), data.labels[split], data.classes, per_class)


def tfidf_baseline(cfg: Config, data: textdata.Prepared) -> tuple[dict[str, float], torch.Tensor]:
    """TF-IDF + LR fit on train (C and n-grams chosen on validation with --tfidf_grid), scored on test, on the (cut)
    texts the neural models see, and with the same settings on the full texts; its metrics and test predictions."""
    grid = {} if cfg.tfidf_grid else {"cs": (cfg.tfidf_c,), "ngrams": (2,)}
    preds, chosen = textnn.tfidf_choose(data.texts, data.labels, data.train, data.val, data.test, **grid)
    full = tfidf_predict(textdata.load(data.name, data.source).texts, data.labels, data.train, data.test,
                         chosen["c_chosen"], chosen["ngram_chosen"])
    cut, full = (textnn.classification_report(p, data.labels[data.test], data.classes) for p in (preds, full))
    return {**cut, **chosen, "fulltext_macro_f1": full["macro_f1"]}, preds


def best_model(results: dict[str, dict]) -> str:
    """The neural model with the best validation macro-F1 (the test split plays no part in choosing)."""
    return max(results, key=lambda name: results[name]["val_macro_f1"])


def load_model(cfg: Config, run: Run, variant: str, name: str, vocab_size: int, num_classes: int) -> nn.Module:
    model = MODELS[name].build(cfg, vocab_size, num_classes)
    run.variant(variant).load(model, which="best")
    return model.to(run.device).eval()


def scores_on(cfg: Config, run: Run, data: textdata.Prepared, name: str, *splits: torch.Tensor) -> list[torch.Tensor]:
    """`class_scores` of model `name` on each of `splits`, from the best checkpoints of the models it is."""
    parts = members(cfg, data.name, name)
    models = [load_model(cfg, run, v, m, data.vocab_size, len(data.classes)) for v, m, _ in parts]
    inputs = [view(cfg, data, m) for _, m, _ in parts]
    return [class_scores(models, [(x.ids[split], x.lengths[split]) for x in inputs], run.device) for split in splits]


def evaluate(cfg: Config, run: Run) -> dict[str, float]:
    """Test metrics of every model recomputed from its best checkpoints, and the baseline refitted."""
    out: dict[str, float] = {}
    for ds in cfg.sources:
        data = prepare(cfg, ds)
        for name in cfg.models:
            scores = scores_on(cfg, run, data, name, data.test)[0]
            out.update({f"{ds}_{name}_{k}": v for k, v in report(scores, data, data.test).items()})
        out.update({f"{ds}_tfidf_{k}": v for k, v in tfidf_baseline(cfg, data)[0].items()})
    return out


# ---- plots and predict -----------------------------------------------------------------------------------
def plot_confusion(run: Run, ds: str, model: str, results: dict[str, dict], classes: tuple[str, ...]) -> None:
    if not run.is_main:
        return
    from sklearn.metrics import ConfusionMatrixDisplay as Display

    fig, ax = plt.subplots(figsize=(1.1 * len(classes) + 2.5, 1.0 * len(classes) + 1.8))
    Display(np.array(results[model]["confusion"]), display_labels=classes).plot(ax=ax, cmap="Blues", colorbar=False,
                                                                                xticks_rotation=30)
    ax.set(xlabel="predicted", ylabel="true", title=f"{ds}: {model} on the test split")
    fig.tight_layout()
    fig.savefig(run.plot_path(f"confusion_{ds}"), dpi=100)
    plt.close(fig)


def plot_curves(cfg: Config, run: Run) -> None:
    if not run.is_main:
        return
    fig, axes = plt.subplots(1, len(cfg.sources), figsize=(5.5 * len(cfg.sources), 4), squeeze=False)
    for ax, ds in zip(axes[0], cfg.sources):
        for name in cfg.models:
            if curve := run.variant(f"{ds}_{name}").history("eval/val_macro_f1"):
                ax.plot(*zip(*curve), label=name)
        ax.set(xlabel="training step", ylabel="validation macro-F1", title=ds)
        ax.legend()
    fig.tight_layout()
    fig.savefig(run.plot_path("learning_curves"), dpi=100)
    plt.close(fig)


def predict_arguments(parser) -> None:
    parser.add_argument("text", help="the text to classify")
    parser.add_argument("--dataset", help="which trained dataset's models to use (default: the first trained)")
    parser.add_argument("--model", choices=tuple(MODELS), help="which model (default: the best on validation)")


def predict(cfg: Config, run: Run, args) -> None:
    ds = args.dataset or cfg.sources[0]
    if ds not in cfg.sources:
        raise DataError(f"--dataset {ds}: this run trained on {', '.join(cfg.sources)}")
    finished = {m: r for m in cfg.models if (r := run.variant(f"{ds}_{m}").result) is not None}
    if not finished:
        raise DataError(f"{run.dir} has no finished model for {ds}; finish it with `cookbook run --resume {run.dir}`")
    name = args.model or best_model(finished)
    if name not in finished:
        raise DataError(f"--model {name}: not trained in this run; trained: {', '.join(finished)}")
    tokenizer, classes = textdata.load_trained(run.dir, ds)
    text, ids, lengths = textdata.encode_input(tokenizer, args.text, 8 * cfg.max_len, encoded_len(cfg))
    parts = members(cfg, ds, name)
    models = [load_model(cfg, run, v, m, tokenizer.get_vocab_size(), len(classes)) for v, m, _ in parts]
    scores = class_scores(models, [inputs_for(cfg, m, text, ids, lengths) for _, m, _ in parts], run.device)[0]
    probs = torch.softmax(scores, 0) if len(models) == 1 else scores
    print(f"{classes[int(probs.argmax())]}  ({ds}, {name}, {min(int(lengths[0]), tokens_read(cfg, name))} tokens)")
    print(json.dumps({c: round(p, 4) for c, p in zip(classes, probs.tolist())}))
