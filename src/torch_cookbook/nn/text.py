"""Two fast text classifiers over right-padded token batches (B, T), padding id 0.

BagOfEmbeddings  fastText-style: mean of token embeddings (padding excluded) → linear, optionally weighted by
                 each token's inverse document frequency (`idf_weighted`, with `token_idf`). Order-blind, very
                 fast; optional word dropout (Iyyer et al. 2015) drops whole tokens in training; fastText's
                 initialisation (Joulin et al. 2016) by default; optional hashed bigrams (fastText's n-gram
                 trick) with a sparse embedding table.
KimCNN           Kim (2014): embeddings → parallel 1-D convolutions of widths 3/4/5 → max over time → linear.
tfidf_predict    the baseline they are measured against: TF-IDF + logistic regression (scikit-learn);
tfidf_choose     the same with its C and n-gram range chosen on a validation split, as neural models are tuned.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BIGRAM_HASH", "BagOfEmbeddings", "KimCNN", "hashed_bigrams", "token_idf", "predict_logits",
           "classification_metrics", "classification_report", "per_class_f1", "confusion", "tfidf_predict",
           "tfidf_choose", "TFIDF_CS", "TFIDF_NGRAMS", "class_scores", "paired_counts", "comparison_metrics"]

# fastText's multiplier for hashing a token sequence (src/dictionary.cc: h = h * 116049371 + id).
BIGRAM_HASH = 116049371


def hashed_bigrams(tokens: torch.Tensor, vocab_size: int, buckets: int, pad_id: int = 0) -> torch.Tensor:
    """Ids of the bigrams of neighbouring real tokens in right-padded `tokens` (B, T) → (B, T-1).

    Bigram (a, b) gets row vocab_size + (a · 116049371 + b) mod buckets of the embedding table, as fastText
    hashes its word n-grams: deterministic, in [vocab_size, vocab_size + buckets), and a pair with padding in it
    is padding. Different bigrams may share a row (a collision), which the mean of many features tolerates.
    """
    a, b = tokens[:, :-1], tokens[:, 1:]
    ids = vocab_size + (a * BIGRAM_HASH + b).remainder(buckets)
    return torch.where((a != pad_id) & (b != pad_id), ids, torch.full_like(ids, pad_id))


def token_idf(ids: torch.Tensor, num_ids: int, pad_id: int = 0) -> torch.Tensor:
    """Smoothed inverse document frequency of every id in `num_ids`, from right-padded rows `ids` (N, T):
    log((1 + N) / (1 + df)) + 1, where df counts the rows an id occurs in (scikit-learn's smooth_idf formula,
    so an id seen in no row gets the largest weight, and one in every row gets 1). Padding gets 0."""
    rows = torch.arange(len(ids)).unsqueeze(1).expand_as(ids)
    pairs = torch.unique(rows * num_ids + ids)  # each (row, id) once, however often the id repeats in the row
    df = torch.bincount(pairs % num_ids, minlength=num_ids).float()
    idf = torch.log((1.0 + len(ids)) / (1.0 + df)) + 1.0
    idf[pad_id] = 0.0
    return idf


class BagOfEmbeddings(nn.Module):
    """Mean of the embeddings of the real tokens, dropout, linear: a strong baseline for topic classification.

    With `idf_weighted`, the mean is weighted by each id's inverse document frequency (the `idf` buffer, ones
    until `set_idf` fills it from the training texts; it is saved with the model): a word in every article
    ("the", "said") counts less than one in a few, as in TF-IDF features.
    """

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 64, dropout: float = 0.0,
                 pad_id: int = 0, word_dropout: float = 0.0, init: str = "fasttext", bigram_buckets: int = 0,
                 sparse: bool = False, idf_weighted: bool = False) -> None:
        super().__init__()
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"word_dropout {word_dropout}: must be in [0, 1)")
        if init not in ("fasttext", "normal"):
            raise ValueError(f"init {init!r}: must be 'fasttext' or 'normal'")
        if bigram_buckets < 0:
            raise ValueError(f"bigram_buckets {bigram_buckets}: must be >= 0 (0 = tokens only)")
        self.pad_id, self.word_dropout = pad_id, word_dropout
        self.vocab_size, self.bigram_buckets = vocab_size, bigram_buckets
        # One table for tokens and bigram buckets. sparse=True gives sparse gradients (only the rows a batch
        # uses), for torch.optim.SparseAdam: a dense optimiser would update every row of a large table each step.
        self.embed = nn.Embedding(vocab_size + bigram_buckets, embed_dim, padding_idx=pad_id, sparse=sparse)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(embed_dim, num_classes)
        self.idf_weighted = idf_weighted
        if idf_weighted:
            self.register_buffer("idf", torch.ones(vocab_size + bigram_buckets))
        if init == "fasttext":
            self.fasttext_init()

    @torch.no_grad()
    def set_idf(self, train_tokens: torch.Tensor) -> None:
        """Fill the idf weights from the training texts' ids (right-padded rows), bigram buckets included."""
        if not self.idf_weighted:
            raise ValueError("set_idf: this bag was built with idf_weighted=False")
        self.idf.copy_(token_idf(self.features(train_tokens), self.idf.numel(), self.pad_id))

    @torch.no_grad()
    def fasttext_init(self) -> None:
        """Embeddings uniform in ±1/embed_dim, classifier zero, as fastText initialises its two matrices.

        PyTorch's default N(0, 1) embeddings give every token a large random direction; a rare token keeps it
        (it gets few gradient steps) and adds noise to every mean it is part of. Starting near zero, a token's
        vector grows only as far as training moves it, like the weights of a linear model started at zero.
        """
        nn.init.uniform_(self.embed.weight, -1.0 / self.embed.embedding_dim, 1.0 / self.embed.embedding_dim)
        self.embed.weight[self.pad_id].zero_()  # the padding row must stay zero
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def features(self, tokens: torch.Tensor) -> torch.Tensor:
        """The ids the bag averages: the tokens, then (with bigram buckets) the hashed bigrams."""
        if not self.bigram_buckets or tokens.size(1) < 2:
            return tokens
        return torch.cat([tokens, hashed_bigrams(tokens, self.vocab_size, self.bigram_buckets, self.pad_id)], 1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.features(tokens)
        keep = tokens != self.pad_id
        if self.training and self.word_dropout > 0:
            # Word dropout: leave out a random share of each text's tokens, so the model cannot lean on a few
            # words it memorised; a text that would lose every token keeps them all.
            kept = keep & (torch.rand(tokens.shape, device=tokens.device) >= self.word_dropout)
            keep = torch.where(kept.any(1, keepdim=True), kept, keep)
        weight = keep.float()
        if self.idf_weighted:
            weight = weight * self.idf[tokens]
        # The padding row of the embedding is zero, but dividing by the total weight matters: a mean over T
        # would shrink short texts towards zero.
        weight = weight.unsqueeze(-1)
        mean = (self.embed(tokens) * weight).sum(1) / weight.sum(1).clamp(min=1e-6)
        return self.head(self.dropout(mean))


class KimCNN(nn.Module):
    """Convolutions of several widths over the embedded text, max-pooled over time (Kim, 2014)."""

    def __init__(self, vocab_size: int, num_classes: int, embed_dim: int = 64, filters: int = 64,
                 widths: tuple[int, ...] = (3, 4, 5), dropout: float = 0.5, pad_id: int = 0) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, filters, w, padding=w // 2) for w in widths)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(filters * len(widths), num_classes)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(tokens).transpose(1, 2)  # (B, E, T): Conv1d wants channels first
        mask = (tokens != self.pad_id).unsqueeze(1)
        pooled = []
        for conv in self.convs:
            h = torch.relu(conv(x))[..., :tokens.size(1)]  # even widths give T+1 outputs; drop the extra one
            # Max over real positions only, so the padding length cannot change the prediction.
            pooled.append(h.masked_fill(~mask, float("-inf")).amax(2).clamp(min=0.0))
        return self.head(self.dropout(torch.cat(pooled, dim=1)))


# ---- evaluation ------------------------------------------------------------------------------------
@torch.inference_mode()
def predict_logits(model: nn.Module, ids: torch.Tensor, lengths: torch.Tensor, device: torch.device,
                   max_len: int | None = None, batch_size: int = 256) -> torch.Tensor:
    """Logits for right-padded `ids`, each text cut to its first `max_len` tokens (None: all of them)."""
    was_training = model.training
    model.eval()
    if max_len is not None:
        ids, lengths = ids[:, :max_len], lengths.clamp(max=max_len)
    try:
        out = [model(ids[i:i + batch_size].to(device), lengths[i:i + batch_size]).float().cpu()
               for i in range(0, len(ids), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out)


def class_scores(models: list[nn.Module], inputs: list[tuple[torch.Tensor, torch.Tensor]],
                 device: torch.device) -> torch.Tensor:
    """One model's logits; for several, the mean of their class probabilities (not of their logits: each model's
    confidence counts as the probability it states). Model i reads inputs[i]; the argmax is the prediction."""
    if len(models) == 1:
        return predict_logits(models[0], *inputs[0], device)
    probs = [torch.softmax(predict_logits(m, x, n, device), 1) for m, (x, n) in zip(models, inputs)]
    return torch.stack(probs).mean(0)


def classification_metrics(preds: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict[str, float]:
    """Accuracy and macro precision/recall/F1 from torchmetrics (macro: every class counts the same)."""
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_f1_score,
        multiclass_precision,
        multiclass_recall,
    )

    kw = {"num_classes": num_classes}
    return {"accuracy": multiclass_accuracy(preds, target, average="micro", **kw).item(),
            "macro_precision": multiclass_precision(preds, target, average="macro", **kw).item(),
            "macro_recall": multiclass_recall(preds, target, average="macro", **kw).item(),
            "macro_f1": multiclass_f1_score(preds, target, average="macro", **kw).item()}


def classification_report(preds: torch.Tensor, target: torch.Tensor, classes: tuple[str, ...],
                          per_class: bool = False) -> dict:
    """`classification_metrics`; with `per_class`, also each class's F1 (`per_class_f1`) and the confusion matrix
    as nested lists (rows: true class, columns: predicted)."""
    out = classification_metrics(preds, target, len(classes))
    if per_class:
        out.update(per_class_f1=per_class_f1(preds, target, classes),
                   confusion=confusion(preds, target, len(classes)).tolist())
    return out


def per_class_f1(preds: torch.Tensor, target: torch.Tensor, classes: tuple[str, ...]) -> dict[str, float]:
    """F1 of each class, by class name."""
    from torchmetrics.functional.classification import multiclass_f1_score

    f1 = multiclass_f1_score(preds, target, num_classes=len(classes), average=None)
    return {c: round(v, 4) for c, v in zip(classes, f1.tolist())}


def confusion(preds: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    from torchmetrics.functional.classification import multiclass_confusion_matrix

    return multiclass_confusion_matrix(preds, target, num_classes=num_classes)


def paired_counts(predictions: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, int]:
    """Two models' predictions of the same examples, paired: `{a}_errors`, `{b}_errors`, and the discordant pairs
    `{a}_only_right`, `{b}_only_right` (the examples one gets right and the other wrong), for `predictions` {a, b}."""
    (a, pred_a), (b, pred_b) = predictions.items()
    right_a, right_b = torch.as_tensor(pred_a) == labels, torch.as_tensor(pred_b) == labels
    return {f"{a}_errors": int((~right_a).sum()), f"{b}_errors": int((~right_b).sum()),
            f"{a}_only_right": int((right_a & ~right_b).sum()), f"{b}_only_right": int((right_b & ~right_a).sum())}


def comparison_metrics(ds: str, results: dict[str, dict], best: str, baseline: dict[str, float],
                       paired: dict[str, int]) -> dict[str, float]:
    """One dataset's metrics, flat: each model's test metrics from `results` (`{ds}_{model}_{metric}`), the TF-IDF
    `baseline`'s (`{ds}_tfidf_*`), which model validation picked (`{ds}_{model}_picked`: 1 or 0, so its mean over
    seeds is how often) and its macro-F1 beside the baseline's, and the `paired_counts` of the two."""
    out = {f"{ds}_tfidf_{k}": v for k, v in baseline.items()}
    for name, r in results.items():
        for key in ("accuracy", "macro_precision", "macro_recall", "macro_f1", "val_macro_f1", "params", "train_s"):
            out[f"{ds}_{name}_{key}"] = r[key]
        if name.endswith("ensemble"):  # its members alone: how much the average gains over one of them
            out[f"{ds}_{name}_member_macro_f1_mean"] = sum(r["member_macro_f1"]) / len(r["member_macro_f1"])
            out[f"{ds}_{name}_member_val_macro_f1_mean"] = sum(r["member_val_macro_f1"]) / len(r["member_val_macro_f1"])
        out[f"{ds}_{name}_picked"] = int(name == best)
    out[f"{ds}_best_neural_macro_f1"] = results[best]["macro_f1"]
    out[f"{ds}_best_neural_minus_tfidf_macro_f1"] = results[best]["macro_f1"] - baseline["macro_f1"]
    return {**out, **{f"{ds}_{k}": n for k, n in paired.items()}}


TFIDF_CS = (1.0, 3.0, 10.0, 30.0, 100.0)  # the grid `tfidf_choose` is given in a fair comparison
TFIDF_NGRAMS = (1, 2)  # the longest word n-gram: words alone, or words and word pairs


def tfidf_predict(texts: list[str], labels: torch.Tensor, fit: torch.Tensor, predict: torch.Tensor,
                  c: float, ngram: int = 2) -> torch.Tensor:
    """TF-IDF (word 1- to `ngram`-grams, sublinear tf) + logistic regression fit on texts[fit]; labels for
    texts[predict]."""
    return tfidf_choose(texts, labels, fit, predict, predict, (c,), (ngram,))[0]


def tfidf_choose(texts: list[str], labels: torch.Tensor, fit: torch.Tensor, val: torch.Tensor, predict: torch.Tensor,
                 cs: tuple[float, ...] = TFIDF_CS, ngrams: tuple[int, ...] = TFIDF_NGRAMS) -> tuple[torch.Tensor, dict]:
    """Every (C, n-gram) setting of the grid fit on texts[fit]; the one with the best macro-F1 on texts[val] (on a
    tie the first: the smaller C, the shorter n-grams) gives the labels of texts[predict]. Returns them and the
    choice: {"c_chosen", "ngram_chosen", "val_macro_f1"}."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    best: tuple[float, torch.Tensor, dict] | None = None
    y_fit = labels[fit].numpy()
    for ngram in ngrams:
        vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, ngram), min_df=2)
        x_fit = vec.fit_transform([texts[i] for i in fit])
        x_val, x_predict = (vec.transform([texts[i] for i in rows]) for rows in (val, predict))
        for c in cs:
            # One BLAS thread: on a small shared CPU, OpenBLAS's spinning worker threads make lbfgs many times slower.
            with threadpool_limits(1):
                clf = LogisticRegression(C=c, max_iter=2000).fit(x_fit, y_fit)
            score = classification_metrics(torch.from_numpy(clf.predict(x_val)), labels[val],
                                           int(labels.max()) + 1)["macro_f1"]
            if best is None or score > best[0]:
                best = score, torch.from_numpy(clf.predict(x_predict)), {"c_chosen": c, "ngram_chosen": ngram,
                                                                          "val_macro_f1": score}
    return best[1], best[2]
