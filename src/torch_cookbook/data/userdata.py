"""Your own data: the one reader layer behind every recipe's `--data FILE|DIR`.

Tables     CSV (`.csv`), TSV (`.tsv`) or JSON lines (`.jsonl`), optionally compressed (`.gz`, `.bz2`), UTF-8 with a
           header line (CSV/TSV) or one JSON object per line. `read_table` streams them row by row: it holds one
           row at a time, never the whole file, so what a recipe keeps is what bounds memory.
Folders    one subfolder per class of files with given extensions (`class_folders` lists them, sorted, without
           reading them); hidden files and folders (names starting with '.') are ignored everywhere.
Images     class folders of images (`image_class_folders`), a plain folder of images (`image_folder`), images/ and
           masks/ matched by file stem (`image_mask_pairs`); any size, grey or RGB, read one at a time
           (`read_image`, `load_images` to a square size, `read_mask` for integer-class masks).
Splits     a table's `split` column (train / val / test) if it has one, otherwise `stratified_split`, seeded.
Fingerprint  SHA-256 over the file, or every file under the folder in sorted order (its path relative to the
           folder, then its bytes), read in 1 MiB chunks: a run records it, and eval, predict and resume refuse
           data that changed since.

Every mistake in the data is one `DataError` line that names the file, the line (or the file in a folder) and the
column: a missing column, an empty file, one class only, a label seen only in a validation or test split, text
that is not UTF-8, an empty value, a malformed JSON line, an unknown extension.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import json
import os
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from torch_cookbook.errors import DataError

TABLES = {".csv": ",", ".tsv": "\t", ".jsonl": None}  # extension -> delimiter (None: JSON lines)
COMPRESSED = {".gz": gzip.open, ".bz2": bz2.open}
SPLIT_COLUMN = "split"
SPLITS = ("train", "val", "test")
CHUNK = 1 << 20


# ---- fingerprint -----------------------------------------------------------------------------------------
def data_files(path: str | Path) -> list[tuple[str, Path]]:
    """(path relative to `path`, file) for a file, or for every non-hidden file under a folder, in sorted order."""
    root = Path(path)
    if os.path.isfile(root):  # os.path's tests say False, where Path's raise, on a name the OS refuses
        return [(root.name, root)]
    if not os.path.isdir(root):
        raise DataError(f"{root}: no such file or folder")
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [(Path(folder, f).relative_to(root).as_posix(), Path(folder, f)) for f in files if f[0] != "."]
    return sorted(found)


def fingerprint(path: str | Path) -> dict:
    """{"path", "kind" (file or folder), "files", "bytes", "sha256"} of a user's data, read in chunks."""
    h, size = hashlib.sha256(), 0
    files = data_files(path)
    for relative, file in files:
        try:
            h.update(f"{relative}\x00{file.stat().st_size}\x00".encode())
            with open(file, "rb") as f:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
                    size += len(chunk)
        except OSError as e:
            raise DataError(f"{file}: cannot read it ({e.strerror or e})") from None
    return {"path": str(Path(path).resolve()), "kind": "folder" if Path(path).is_dir() else "file",
            "files": len(files), "bytes": size, "sha256": h.hexdigest()}


# ---- tables ----------------------------------------------------------------------------------------------
def table_format(path: str | Path) -> str:
    """The table extension of `path` (.csv, .tsv or .jsonl), compression suffix aside; anything else is refused."""
    suffixes = [s.lower() for s in Path(path).suffixes[-2:]]
    if suffixes and suffixes[-1] in COMPRESSED:
        suffixes.pop()
    if not suffixes or suffixes[-1] not in TABLES:
        found = "".join(Path(path).suffixes[-2:]) or "none"
        raise DataError(f"{path}: unknown extension '{found}'; use .csv, .tsv or .jsonl (optionally .gz or .bz2)")
    return suffixes[-1]


def lines_of(path: Path) -> Iterator[str]:
    """The file's lines, decoded one at a time, with their line endings (what the csv module expects)."""
    opener = COMPRESSED.get(path.suffix.lower(), open)
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(f"{path} line {number}: not UTF-8 text (byte 0x{raw[e.start]:02x} at character "
                                    f"{e.start + 1}); save the file as UTF-8") from None
    except (OSError, EOFError) as e:  # unreadable, or a truncated or corrupt .gz/.bz2
        raise DataError(f"{path}: cannot read it ({getattr(e, 'strerror', None) or e})") from None


def table_columns(path: str | Path) -> list[str]:
    """A CSV/TSV file's header, or the keys of a JSONL file's first object; the rest of the file is not read."""
    path = Path(path)
    kind = table_format(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    lines = lines_of(path)
    try:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if kind != ".jsonl":
                return [name.strip() for name in next(csv.reader([line], delimiter=TABLES[kind]))]
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path} line {number}: not valid JSON ({e.msg} at character {e.colno})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path} line {number}: expected a JSON object, got {type(record).__name__}")
            return list(record)
    finally:
        lines.close()
    raise DataError(f"{path}: empty file: no {'JSON lines' if kind == '.jsonl' else 'header line'}")


@dataclass(frozen=True)
class Row:
    line: int  # the line the row starts on, counting from 1
    values: dict[str, str]  # column -> value, for the columns asked for (and the optional ones the file has)


def read_table(path: str | Path, columns: Mapping[str, str], optional: Sequence[str] = (),
               may_be_empty: Sequence[str] = ()) -> Iterator[Row]:
    """Stream the rows of a CSV, TSV or JSONL file. `columns` maps the flag that chose each required column to its
    name ({"text_column": "text"}): a missing one, or an empty value in one (unless its flag is in `may_be_empty`:
    a missing number, say), is refused naming the flag. Columns in `optional` are read where the file has them (a
    CSV header or the first JSON object decides); others are ignored. JSON numbers and booleans become their JSON
    text."""
    path = Path(path)
    kind, rows = table_format(path), 0
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    reader = _csv_rows if TABLES[kind] else _json_rows
    for row in reader(path, TABLES[kind], dict(columns), tuple(optional)):
        for flag, column in columns.items():
            if flag not in may_be_empty and not row.values[column].strip():
                raise DataError(f"{path} line {row.line}: column '{column}' (--{flag}) is empty")
        rows += 1
        yield row
    if rows == 0:
        raise DataError(f"{path}: empty file: no {'rows' if kind != '.jsonl' else 'JSON lines'} to read")


def _missing(path: Path, line: int, flag: str, column: str, have: Sequence[str]) -> DataError:
    return DataError(f"{path} line {line}: no column '{column}' (--{flag}); it has: {', '.join(have) or 'none'}")


def _csv_rows(path: Path, delimiter: str, columns: dict[str, str], optional: tuple[str, ...]) -> Iterator[Row]:
    limit = csv.field_size_limit()
    csv.field_size_limit(1 << 30)  # a long text in one field is fine: the default limit is 128 KiB
    try:
        reader = csv.reader(lines_of(path), delimiter=delimiter)
        header: list[str] | None = None
        while True:
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as e:
                raise DataError(f"{path} line {start}: not valid {path.suffix.lstrip('.').upper()} ({e})") from None
            if not fields or fields == [""]:  # a blank line
                continue
            if header is None:
                header = [name.strip() for name in fields]
                for flag, column in columns.items():
                    if column not in header:
                        raise _missing(path, start, flag, column, header)
                wanted = [c for c in (*columns.values(), *optional) if c in header]
                where = {c: header.index(c) for c in wanted}
                continue
            if len(fields) != len(header):
                raise DataError(f"{path} line {start}: {len(fields)} fields where the header has {len(header)}"
                                f" (a delimiter or quote out of place?)")
            yield Row(start, {c: fields[i] for c, i in where.items()})
    finally:
        csv.field_size_limit(limit)
    if header is None:
        raise DataError(f"{path}: empty file: no header line")


def _json_rows(path: Path, _: None, columns: dict[str, str], optional: tuple[str, ...]) -> Iterator[Row]:
    present: tuple[str, ...] | None = None
    for number, line in enumerate(lines_of(path), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path} line {number}: not valid JSON ({e.msg} at character {e.colno})") from None
        if not isinstance(record, dict):
            raise DataError(f"{path} line {number}: expected a JSON object, got {type(record).__name__}")
        if present is None:  # the first record decides which optional keys the file has
            present = tuple(c for c in optional if c in record)
        values = {}
        for flag, column in [*columns.items(), *((None, c) for c in present)]:
            if column not in record and flag is None:
                raise DataError(f"{path} line {number}: no column '{column}' (the first line has one)")
            if column not in record:
                raise _missing(path, number, flag, column, list(record))
            value = record[column]
            if isinstance(value, (dict, list)):
                raise DataError(f"{path} line {number}: column '{column}' holds a JSON {type(value).__name__};"
                                f" expected text or a number")
            values[column] = value if isinstance(value, str) else "" if value is None else json.dumps(value)
        yield Row(number, values)


# ---- class folders -----------------------------------------------------------------------------------------
def class_folders(root: str | Path, extensions: Sequence[str]) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """(class names, [(file, class index)]) of a folder with one subfolder per class, both sorted; the files are
    listed, not read. A file with another extension, or a folder inside a class folder, is refused."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not classes:
        raise DataError(f"{root}: empty folder: no class subfolders (expected {root}/CLASS/FILE)")
    files = []
    for label, name in enumerate(classes):
        found = sorted(p for p in (root / name).iterdir() if not p.name.startswith("."))
        for path in found:
            if path.is_dir() or path.suffix.lower() not in extensions:
                what = "a folder" if path.is_dir() else f"unknown extension '{path.suffix or 'none'}'"
                raise DataError(f"{path}: {what} in class folder '{name}'; expected {' or '.join(extensions)} files")
        if not found:
            raise DataError(f"{root / name}: empty class folder; expected {' or '.join(extensions)} files")
        files += [(path, label) for path in found]
    return classes, files


def read_text(path: Path) -> str:
    """A UTF-8 text file's contents; not UTF-8 or empty is refused naming the file and line."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"{path} line {line}: not UTF-8 text (byte 0x{raw[e.start]:02x}); save it as UTF-8") from None
    if not text.strip():
        raise DataError(f"{path}: empty text")
    return text



# ---- images ----------------------------------------------------------------------------------------------
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MASK_MODES = ("1", "L", "P", "I", "I;16")  # single-channel PIL modes whose values are class indices


def read_image(path: Path, mode: str = "RGB") -> np.ndarray:
    """One image file as uint8, (H, W, 3) for mode "RGB" or (H, W) for "L". Grey files are replicated to RGB, an
    alpha channel is dropped. Unreadable or truncated files are refused naming the file."""
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(path):
        raise DataError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            im.load()  # decodes the whole file here, so a truncated one fails now, not halfway through training
            return np.asarray(im.convert(mode))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: not a readable image ({type(e).__name__}: {str(e)[:80]});"
                        f" expected {'/'.join(x[1:] for x in IMAGE_EXTENSIONS)}") from None


def square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop uint8 (H, W[, C]) to a square and resize it to size × size (PIL, antialiased bilinear)."""
    from PIL import Image

    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = Image.fromarray(np.ascontiguousarray(image[top:top + side, left:left + side]))
    return np.asarray(crop.resize((size, size), Image.BILINEAR))


@dataclass
class ImageFiles:
    """Image files, listed and not yet read; `labels[i]` indexes `classes` (None for an unlabelled folder)."""

    source: Path
    files: list[Path]
    labels: np.ndarray | None = None
    classes: tuple[str, ...] = ()


def image_class_folders(path: str | Path) -> ImageFiles:
    """root/CLASS/IMAGE: one subfolder per class (sorted names are the labels), any image size, grey or RGB."""
    classes, files = class_folders(path, IMAGE_EXTENSIONS)
    if len(classes) < 2:
        raise DataError(f"{path}: one class folder ({classes[0]!r}); a classifier needs two or more")
    return ImageFiles(Path(path), [f for f, _ in files], np.array([c for _, c in files], dtype=np.int64), classes)


def image_folder(path: str | Path) -> ImageFiles:
    """Every image under a folder, subfolders included, sorted; unlabelled. Another kind of file is refused."""
    files = [file for _, file in data_files(path)]
    if Path(path).is_file():
        raise DataError(f"{path}: a file; expected a folder of images")
    for file in files:
        if file.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(f"{file}: unknown extension '{file.suffix or 'none'}' in an image folder;"
                            f" expected {'/'.join(x[1:] for x in IMAGE_EXTENSIONS)}")
    if not files:
        raise DataError(f"{path}: no images in this folder")
    return ImageFiles(Path(path), files)


def load_images(files: Sequence[Path], size: int, channels: int = 3) -> np.ndarray:
    """uint8 (N, channels, size, size): each file read, centre-cropped to a square and resized, one at a time, so
    memory holds the result (N·channels·size² bytes) and one decoded image, never the folder."""
    out = np.empty((len(files), channels, size, size), dtype=np.uint8)
    for i, file in enumerate(files):
        image = square_resize(read_image(file, "L" if channels == 1 else "RGB"), size)
        out[i] = image[None] if channels == 1 else image.transpose(2, 0, 1)
    return out


def image_mask_pairs(path: str | Path) -> list[tuple[Path, Path]]:
    """[(image, mask)] from root/images/ and root/masks/, matched by file stem (a.jpg with a.png), sorted. An image
    without its mask, or a mask without its image, is refused naming the file."""
    root = Path(path)
    found = {}
    for part in ("images", "masks"):
        folder = root / part
        if not folder.is_dir():
            raise DataError(f"{root}: no '{part}/' folder; expected {root}/images/NAME.png and {root}/masks/NAME.png")
        files = image_folder(folder).files
        by_stem: dict[str, Path] = {}
        for file in files:
            stem = file.relative_to(folder).with_suffix("").as_posix()
            if stem in by_stem:
                raise DataError(f"{file}: two files named '{stem}' in {folder} ({by_stem[stem].name}, {file.name})")
            by_stem[stem] = file
        found[part] = by_stem
    images, masks = found["images"], found["masks"]
    for stem in sorted(set(images) ^ set(masks)):
        have, lacks = ("images", "masks") if stem in images else ("masks", "images")
        raise DataError(f"{found[have][stem]}: no matching file '{stem}.*' in {root / lacks}")
    return [(images[stem], masks[stem]) for stem in sorted(images)]


def read_mask(path: Path, shape: tuple[int, int] | None = None, num_classes: int | None = None) -> np.ndarray:
    """An integer-class mask (H, W) as int64 from a single-channel image (PNG of class indices 0..K-1). A colour
    mask, a size that differs from its image's `shape`, or a value >= `num_classes` is refused naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode not in MASK_MODES:
                raise DataError(f"{path}: a {im.mode} mask; save masks as single-channel PNGs whose values are class"
                                f" indices 0, 1, ... (PIL modes {', '.join(MASK_MODES)})")
            mask = np.asarray(im, dtype=np.int64)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: not a readable mask image ({type(e).__name__})") from None
    if shape is not None and mask.shape != tuple(shape):
        raise DataError(f"{path}: mask is {mask.shape[0]}×{mask.shape[1]} but its image is {shape[0]}×{shape[1]}")
    if num_classes is not None and (mask.min() < 0 or mask.max() >= num_classes):
        raise DataError(f"{path}: mask value {int(mask.max())} is out of range; classes are 0..{num_classes - 1}")
    return mask


# ---- labelled texts ----------------------------------------------------------------------------------------
@dataclass
class LabelledTexts:
    """Texts with integer labels (label i is classes[i]), where each came from, and the file's split if it has
    one (0 train, 1 val, 2 test)."""

    source: Path
    texts: list[str]
    labels: np.ndarray
    classes: tuple[str, ...]
    origins: np.ndarray | list[str]  # a table's line numbers, or a folder's file paths
    split: np.ndarray | None = None
    label_column: str | None = "label"  # None: the labels are class folders

    def origin(self, i: int) -> str:
        o = self.origins[i]
        return str(o) if isinstance(o, str) else f"{self.source} line {o}"


def read_labelled_texts(path: str | Path, text_column: str = "text", label_column: str = "label") -> LabelledTexts:
    """Texts and labels from a table (with those columns, and `split` if it has one) or from class folders of .txt
    files. Labels are sorted by name, so their numbering never depends on the order of the rows."""
    path = Path(path)
    if path.is_dir():
        classes, files = class_folders(path, (".txt",))
        texts = [read_text(file) for file, _ in files]
        labels = np.array([label for _, label in files], dtype=np.int64)
        data = LabelledTexts(path, texts, labels, classes, [str(file) for file, _ in files], label_column=None)
    else:
        texts, names, lines, splits = [], [], [], []
        columns = {"text_column": text_column, "label_column": label_column}
        for row in read_table(path, columns, optional=(SPLIT_COLUMN,)):
            texts.append(row.values[text_column])
            names.append(row.values[label_column].strip())
            lines.append(row.line)
            if SPLIT_COLUMN in row.values:
                splits.append(split_code(path, row))
        classes = tuple(sorted(set(names)))
        index = {name: i for i, name in enumerate(classes)}
        data = LabelledTexts(path, texts, np.array([index[n] for n in names], dtype=np.int64), classes,
                             np.array(lines, dtype=np.int64), np.array(splits, dtype=np.int64) if splits else None,
                             label_column)
    if len(data.classes) < 2:
        what = "one class folder" if path.is_dir() else f"column '{label_column}' has one label"
        raise DataError(f"{path}: {what} ({data.classes[0]!r}, {len(data.texts)} texts); a classifier needs two or"
                        f" more")
    return data


def split_code(path: Path, row: Row) -> int:
    value = row.values[SPLIT_COLUMN].strip().lower()
    if value not in SPLITS:
        raise DataError(f"{path} line {row.line}: column '{SPLIT_COLUMN}' is {value!r}; use {', '.join(SPLITS)}")
    return SPLITS.index(value)


# ---- splits ----------------------------------------------------------------------------------------------
def stratified_split(labels: np.ndarray, seed: int, val_fraction: float = 0.1,
                     test_fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (train, val, test), each class split in the same proportions, shuffled by `seed`.

    Per-class: shuffle that class's indices with a generator seeded by (seed, class), then cut. The same
    seed gives the same split on any machine (no dependence on a library's internal shuffling).
    """
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng = np.random.default_rng([seed, int(c)])
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(test_fraction * len(idx)))
        n_val = int(round(val_fraction * len(idx)))
        parts[2].extend(idx[:n_test])
        parts[1].extend(idx[n_test:n_test + n_val])
        parts[0].extend(idx[n_test + n_val:])
    return tuple(np.sort(np.array(p, dtype=np.int64)) for p in parts)  # type: ignore[return-value]


def split_by_source(sources: Sequence[str], seed: int, test_fraction: float,
                    val_fraction: float = 0.0) -> tuple[list[int], list[int], list[int]]:
    """Indices (train, validation, test) of the pairs whose sources are `sources`, fixed by `seed`.

    One shuffle of the distinct sources (sorted first, so the order of the file does not matter): the first
    `test_fraction` of them are held out, the next `val_fraction` are the validation split, the rest train.
    The held-out pairs are therefore the same whatever `val_fraction` is.
    """
    distinct = sorted(set(sources))
    random.Random(seed).shuffle(distinct)
    n_test, n_val = int(len(distinct) * test_fraction), int(len(distinct) * val_fraction)
    held_out, val = set(distinct[:n_test]), set(distinct[n_test:n_test + n_val])
    parts: tuple[list[int], list[int], list[int]] = ([], [], [])
    for i, source in enumerate(sources):
        parts[2 if source in held_out else 1 if source in val else 0].append(i)
    return parts


def split_indices(data: LabelledTexts, seed: int, val_fraction: float,
                  test_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test): the file's split column if it has one (without val rows, a stratified `val_fraction` of
    the train rows is held out), otherwise `stratified_split`. Refused: an empty split, or a label in val or test
    that train never shows (a model cannot learn it, and the scores would not say why)."""
    if data.split is None:
        parts = stratified_split(data.labels, seed, val_fraction, test_fraction)
    else:
        parts = tuple(np.flatnonzero(data.split == code) for code in range(3))
        if len(parts[1]) == 0:
            train, val, _ = stratified_split(data.labels[parts[0]], seed, val_fraction, 0.0)
            parts = (parts[0][train], parts[0][val], parts[2])
    where = f"column '{SPLIT_COLUMN}'" if data.split is not None else "the split (--val_fraction, --test_fraction)"
    for name, idx in sorted(zip(SPLITS, parts), key=lambda part: part[0] == "val"):  # a missing test split first
        if len(idx) == 0:
            raise DataError(f"{data.source}: {where} leaves no {name} rows; {len(data.texts)} texts in all")
    seen = set(data.labels[parts[0]].tolist())
    for name, idx in zip(SPLITS[1:], parts[1:]):
        unseen = [i for i in idx if data.labels[i] not in seen]
        if unseen:
            i, column = min(unseen), f" (column '{data.label_column}')" if data.label_column else ""
            raise DataError(f"{data.origin(i)}: label {data.classes[data.labels[i]]!r}{column} is in the {name} split"
                            f" but not in train; give it train rows or leave it out")
    return parts  # type: ignore[return-value]
