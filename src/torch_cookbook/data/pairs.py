"""The string pairs of seq2seq's tasks (`load`), and your own (`--data`): read, checked and split by source string.

Formats  A header-less file of `source<TAB>target` lines (`.tsv` or `.txt`, optionally `.gz` or `.bz2`), UTF-8:
         exactly one tab per line, no quoting, blank lines skipped. Or, with `--source_column` and
         `--target_column`, a table with a header that `data.userdata.read_table` reads (CSV, TSV, JSONL).
         Each text is stripped of surrounding whitespace and NFC-normalised (one code point per accented letter).
Split    By source string, fixed by the seed: the distinct sources, sorted, are shuffled once and cut into
         test, validation and training sources, so no source is in two splits and all the targets of one source
         go to the same split (`userdata.split_by_source`, shared with the names task).
Memory   The file is streamed line by line, but every pair is kept: training needs all of them as tensors.

Every mistake is one `DataError` line naming the file, the line and the column: a line without a tab (or with
two), an empty source or target, text that is not UTF-8, an empty file, too few pairs to split.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch_cookbook.data import userdata
from torch_cookbook.errors import ConfigError, DataError

PLAIN = (".tsv", ".txt")  # header-less source<TAB>target files
SIDES = ("source", "target")


@dataclass
class Pairs:
    """Parallel lists: source texts, target texts, and the line of the file each pair was read from."""

    src: list[str]
    tgt: list[str]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.src)

    def subset(self, keep: Sequence[int]) -> Pairs:
        return Pairs([self.src[i] for i in keep], [self.tgt[i] for i in keep], [self.lines[i] for i in keep])


@dataclass
class SplitPairs:
    """A task's training, validation and held-out pairs (dates and names hold their own pair lists, with .src and
    .tgt too); `too_long` counts your pairs left out for a source or target over `max_len` characters."""

    train: Pairs
    val: Pairs
    test: Pairs
    too_long: int
    max_len: int


def read_pairs(path: str | Path, source_column: str = "", target_column: str = "") -> Pairs:
    """Every (source, target) pair of the file, in file order: header-less source<TAB>target lines, or the
    named columns of a table with a header when the columns are given."""
    path = Path(path)
    if bool(source_column) != bool(target_column):
        raise ConfigError("--source_column and --target_column go together (for a table with a header line)")
    if source_column:
        rows = userdata.read_table(path, {"source_column": source_column, "target_column": target_column})
        found: Iterator[tuple[int, str, str]] = ((r.line, r.values[source_column], r.values[target_column])
                                                 for r in rows)
    else:
        found = _plain_pairs(path)
    pairs = Pairs([], [], [])
    for line, source, target in found:
        pairs.src.append(unicodedata.normalize("NFC", source.strip()))
        pairs.tgt.append(unicodedata.normalize("NFC", target.strip()))
        pairs.lines.append(line)
    return pairs


def _plain_pairs(path: Path) -> Iterator[tuple[int, str, str]]:
    """(line, source, target) of a header-less source<TAB>target file, streamed."""
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if suffixes and suffixes[-1] in userdata.COMPRESSED:
        suffixes.pop()
    if not suffixes or suffixes[-1] not in PLAIN:
        found = "".join(path.suffixes[-2:]) or "none"
        raise DataError(f"{path}: extension '{found}' for source<TAB>target lines; use .tsv or .txt (optionally .gz"
                        f" or .bz2), or give a table with a header and --source_column/--target_column")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    pairs = 0
    for number, line in enumerate(userdata.lines_of(path), 1):
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        fields = text.split("\t")
        if len(fields) != 2:
            what = "no tab" if len(fields) == 1 else f"{len(fields) - 1} tabs"
            raise DataError(f"{path} line {number}: {what}; expected one: source<TAB>target (for a table with more"
                            f" columns, give it a header line and --source_column/--target_column)")
        for column, (side, value) in enumerate(zip(SIDES, fields), 1):
            if not value.strip():
                raise DataError(f"{path} line {number}: column {column} ({side}) is empty")
        pairs += 1
        yield number, fields[0], fields[1]
    if pairs == 0:
        raise DataError(f"{path}: empty file: no source<TAB>target lines")


def split_file(path: str | Path, seed: int, test_fraction: float, val_fraction: float, max_len: int,
               source_column: str = "", target_column: str = "", min_train: int = 1) -> SplitPairs:
    """A user's pairs, split by source string. Pairs longer than `max_len` characters on either side are left
    out (counted). Refused: no test (or, with `val_fraction` > 0, no validation) source, or fewer than
    `min_train` training pairs (one batch)."""
    pairs = read_pairs(path, source_column, target_column)
    keep = [i for i in range(len(pairs)) if len(pairs.src[i]) <= max_len and len(pairs.tgt[i]) <= max_len]
    if not keep:
        raise DataError(f"{path}: all {len(pairs)} pairs have a source or target longer than {max_len} characters"
                        f" (line {pairs.lines[0]} for one); raise --max_src_len")
    kept = pairs.subset(keep)
    parts = userdata.split_by_source(kept.src, seed, test_fraction, val_fraction)
    train, val, test = (kept.subset(part) for part in parts)
    sources = len(set(kept.src))
    for name, part, flag, fraction in (("test", test, "data_test_fraction", test_fraction),
                                       ("validation", val, "data_val_fraction", val_fraction)):
        if not part and fraction > 0:
            raise DataError(f"{path}: too few pairs to split: --{flag} {fraction:g} of {sources} distinct sources"
                            f" ({len(kept)} pairs) leaves no {name} source; give more pairs or raise --{flag}")
    if len(train) < min_train:
        raise DataError(f"{path}: too few pairs to split: {len(train)} training pairs, fewer than one batch"
                        f" (--batch_size {min_train}); give more pairs or lower --batch_size")
    return SplitPairs(train, val, test, len(pairs) - len(kept), max_len)


def load(task: str, cfg: Any) -> SplitPairs:
    """The pairs of a seq2seq task, from a config's settings: "dates", "names" or "user" (your own, `cfg.data`).
    Inputs and outputs are at most `cfg.max_src_len - 1` characters long."""
    max_len = cfg.max_src_len - 1
    if task == "dates":  # the held-out dates are calendar days never seen in training; nothing is chosen on them
        from torch_cookbook.data import dates

        train, test = dates.load(cfg.dates_train, cfg.dates_test, seed=cfg.seed)
        return SplitPairs(train, Pairs([], [], []), test, 0, max_len)
    if task == "names":
        from torch_cookbook.data import names

        parts = names.split(cfg.seed, cfg.names_test_fraction, cfg.names_val_fraction, max_len)
        limits = (cfg.names_train_limit, cfg.names_val_limit, cfg.names_test_limit)
        return SplitPairs(*(part.first(n) for part, n in zip(parts, limits)), 0, max_len)
    return split_file(cfg.data, cfg.seed, cfg.data_test_fraction, cfg.data_val_fraction, max_len, cfg.source_column,
                      cfg.target_column, min_train=cfg.batch_size)
