"""Your own data (data/userdata.py): tables and class folders read in every format, the file's split, the
fingerprint, and every malformed input refused by the CLI in one line with nothing written under runs/."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json

import numpy as np
import pytest

from torch_cookbook.data import userdata
from torch_cookbook.errors import DataError

ROWS = [("the market rallied", "business"), ("a late goal won it", "sport"), ("shares fell, again", "business"),
        ("the keeper saved two", "sport")]


def write_table(path, rows=ROWS, header=("text", "label"), extra=None):
    """A table of `rows` in the format its name says (.csv, .tsv, .jsonl, optionally .gz or .bz2)."""
    kind = userdata.table_format(path)
    if kind == ".jsonl":
        body = "".join(json.dumps(dict(zip(header, row))) + "\n" for row in rows)
    else:
        import csv
        import io

        out = io.StringIO()
        writer = csv.writer(out, delimiter=userdata.TABLES[kind], lineterminator="\n")
        writer.writerows([header, *rows])
        body = out.getvalue()
    data = body.encode()
    if path.suffix == ".gz":
        data = gzip.compress(data)
    elif path.suffix == ".bz2":
        data = bz2.compress(data)
    path.write_bytes(data)
    return path


def write_folder(root, texts=None):
    texts = texts or {"neg": ["dull and slow", "a waste"], "pos": ["a delight", "sharp, funny"]}
    for label, items in texts.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for i, text in enumerate(items):
            (root / label / f"{i:03d}.txt").write_text(text)
    return root


@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.jsonl", "d.csv.gz", "d.tsv.bz2", "d.JSONL"])
def test_tables_in_every_format_read_the_same(tmp_path, name):
    data = userdata.read_labelled_texts(write_table(tmp_path / name))
    assert data.texts == [text for text, _ in ROWS]
    assert data.classes == ("business", "sport") and data.labels.tolist() == [0, 1, 0, 1]
    assert data.split is None
    assert data.origin(2) == f"{tmp_path / name} line {4 if 'sv' in name else 3}"  # CSV/TSV: a header first


def test_columns_are_chosen_and_extra_ones_ignored(tmp_path):
    rows = [(str(i), text, label, "x") for i, (text, label) in enumerate(ROWS)]
    path = write_table(tmp_path / "d.csv", rows, header=("id", "body", "topic", "note"))
    data = userdata.read_labelled_texts(path, text_column="body", label_column="topic")
    assert data.texts[1] == "a late goal won it" and data.classes == ("business", "sport")


def test_csv_fields_may_hold_quotes_commas_newlines_and_long_texts(tmp_path):
    long = "word " * 60_000  # 300 kB: over the csv module's default field limit
    rows = [('he said "no", twice\nthen left', "a"), (long, "b"), ("plain", "a")]
    data = userdata.read_labelled_texts(write_table(tmp_path / "d.csv", rows))
    assert data.texts == [rows[0][0], long, "plain"]
    assert data.origin(2) == f"{tmp_path / 'd.csv'} line 5"  # the first row spans lines 2 and 3


def test_jsonl_numbers_and_booleans_are_labels_and_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "one", "label": 1}\n\n{"text": "two", "label": 0}\n{"text": "three", "label": 1}\n')
    data = userdata.read_labelled_texts(path)
    assert data.classes == ("0", "1") and data.labels.tolist() == [1, 0, 1] and data.origin(1) == f"{path} line 3"


def test_a_bom_and_windows_line_endings_are_fine(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes("\ufefftext,label\r\nhello there,a\r\ngood bye,b\r\n".encode())
    data = userdata.read_labelled_texts(path)
    assert data.texts == ["hello there", "good bye"] and data.classes == ("a", "b")


def test_class_folders_are_read_in_sorted_order_and_hidden_files_ignored(tmp_path):
    root = write_folder(tmp_path / "reviews")
    (root / "pos" / ".DS_Store").write_bytes(b"\xff\x00")
    (root / ".git").mkdir()
    (root / "README").write_text("top-level files are not data")
    data = userdata.read_labelled_texts(root)
    assert data.classes == ("neg", "pos") and data.labels.tolist() == [0, 0, 1, 1]
    assert data.texts == ["dull and slow", "a waste", "a delight", "sharp, funny"]
    assert data.origin(3) == str(root / "pos" / "001.txt")


def test_the_split_column_is_used_and_val_is_carved_from_train_when_absent(tmp_path):
    rows = [(f"text {i}", "ab"[i % 2], "test" if i >= 16 else "train") for i in range(20)]
    data = userdata.read_labelled_texts(write_table(tmp_path / "d.csv", rows, ("text", "label", "split")))
    train, val, test = userdata.split_indices(data, seed=0, val_fraction=0.25, test_fraction=0.2)
    assert test.tolist() == [16, 17, 18, 19]
    assert len(val) == 4 and set(data.labels[val].tolist()) == {0, 1}  # a stratified quarter of the 16 train rows
    assert sorted([*train, *val]) == list(range(16))
    rows = [(text, label, "val" if i in (2, 3) else split) for i, (text, label, split) in enumerate(rows)]
    data = userdata.read_labelled_texts(write_table(tmp_path / "e.csv", rows, ("text", "label", "split")))
    assert userdata.split_indices(data, 0, 0.25, 0.2)[1].tolist() == [2, 3]  # given: used as it is


def test_without_a_split_column_the_split_is_stratified_and_seeded(tmp_path):
    rows = [(f"text {i}", "abc"[i % 3]) for i in range(60)]
    data = userdata.read_labelled_texts(write_table(tmp_path / "d.csv", rows))
    parts = userdata.split_indices(data, 3, 0.1, 0.2)
    expected = userdata.stratified_split(data.labels, 3, 0.1, 0.2)
    assert all(np.array_equal(a, b) for a, b in zip(parts, expected))


def test_read_table_streams_rows(tmp_path):
    """The reader yields each row as it reads it: a bad line far down the file is not reached by the first row."""
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n' * 1000 + "not json\n")
    rows = userdata.read_table(path, {"text_column": "text"})
    assert next(rows).line == 1
    with pytest.raises(DataError, match="line 1001: not valid JSON"):
        list(rows)


# ---- fingerprint -------------------------------------------------------------------------------------------
def test_fingerprint_of_a_file_is_sha256_of_its_name_size_and_bytes(tmp_path):
    path = write_table(tmp_path / "d.csv")
    body = path.read_bytes()
    expected = hashlib.sha256(f"d.csv\x00{len(body)}\x00".encode() + body).hexdigest()
    got = userdata.fingerprint(path)
    assert got == {"path": str(path.resolve()), "kind": "file", "files": 1, "bytes": len(body), "sha256": expected}


def test_fingerprint_changes_when_a_file_changes_and_not_otherwise(tmp_path):
    path = write_table(tmp_path / "d.csv")
    before = userdata.fingerprint(path)["sha256"]
    assert userdata.fingerprint(path)["sha256"] == before
    path.write_bytes(path.read_bytes().replace(b"rallied", b"rallies"))
    assert userdata.fingerprint(path)["sha256"] != before


def test_fingerprint_of_a_folder_covers_every_file_in_sorted_order(tmp_path, monkeypatch):
    root = write_folder(tmp_path / "reviews")
    first = userdata.fingerprint(root)
    assert first["kind"] == "folder" and first["files"] == 4
    monkeypatch.setattr(userdata, "CHUNK", 3)  # read in tiny chunks: the same digest
    assert userdata.fingerprint(root) == first
    (root / "pos" / ".hidden").write_text("ignored")
    assert userdata.fingerprint(root)["sha256"] == first["sha256"]
    (root / "pos" / "001.txt").write_text("sharp, funny!")  # an edit
    edited = userdata.fingerprint(root)["sha256"]
    (root / "pos" / "001.txt").rename(root / "neg" / "009.txt")  # the same bytes, moved to another class
    moved = userdata.fingerprint(root)["sha256"]
    (root / "neg" / "010.txt").write_text("new")  # one more file
    assert len({first["sha256"], edited, moved, userdata.fingerprint(root)["sha256"]}) == 4


# ---- every bad input: one line, exit 2, nothing written ---------------------------------------------------------
def _raw(content: bytes | str):
    return lambda path: path.write_bytes(content if isinstance(content, bytes) else content.encode())


BAD_FILES = {
    "missing column": ("d.csv", _raw("body,label\nhello,a\nbye,b\n"), "d.csv line 1: no column 'text' (--text_column)"),
    "missing key": ("d.jsonl", _raw('{"text": "a", "label": "x"}\n{"text": "b"}\n'),
                    "d.jsonl line 2: no column 'label' (--label_column)"),
    "empty file": ("d.csv", _raw(""), "d.csv: empty file"),
    "header only": ("d.tsv", _raw("text\tlabel\n"), "d.tsv: empty file"),
    "empty jsonl": ("d.jsonl", _raw("\n\n"), "d.jsonl: empty file"),
    "one class": ("d.csv", _raw("text,label\na,x\nb,x\nc,x\n"), "d.csv: column 'label' has one label ('x'"),
    "label only in test": ("d.csv", _raw("text,label,split\na,x,train\nb,y,train\nc,x,val\nd,z,test\ne,y,test\n"),
                           "d.csv line 5: label 'z' (column 'label') is in the test split but not in train"),
    "label only in val": ("d.jsonl", _raw("".join(json.dumps({"text": t, "label": lab, "split": s}) + "\n" for t, lab, s
                                                  in [("a", "x", "train"), ("b", "y", "train"), ("c", "z", "val"),
                                                      ("d", "x", "test")])),
                          "d.jsonl line 3: label 'z' (column 'label') is in the val split but not in train"),
    "no test rows": ("d.csv", _raw("text,label,split\na,x,train\nb,y,train\n"),
                     "d.csv: column 'split' leaves no test rows"),
    "bad split value": ("d.csv", _raw("text,label,split\na,x,train\nb,y,dev\n"),
                        "d.csv line 3: column 'split' is 'dev'"),
    "not utf-8": ("d.csv", _raw(b"text,label\nfine,a\ncaf\xe9 au lait,b\n"), "d.csv line 3: not UTF-8 text (byte 0xe9"),
    "not utf-8 gz": ("d.csv.gz", _raw(gzip.compress(b"text,label\nfine,a\n\xff,b\n")), "d.csv.gz line 3: not UTF-8"),
    "truncated gz": ("d.csv.gz", _raw(gzip.compress(b"text,label\n" + b"".join(b"%x,a\n" % (i * 2654435761 % 2**32)
                                                                           for i in range(2000)))[:2000]),
                     "d.csv.gz: cannot read it"),
    "empty text": ("d.csv", _raw("text,label\nfine,a\n  ,b\n"), "d.csv line 3: column 'text' (--text_column) is empty"),
    "null label": ("d.jsonl", _raw('{"text": "a", "label": null}\n'), "d.jsonl line 1: column 'label' (--label_column)"
                                                                       " is empty"),
    "malformed json line": ("d.jsonl", _raw('{"text": "a", "label": "x"}\n{"text": "b", "label": }\n'),
                            "d.jsonl line 2: not valid JSON (Expecting value at character 24)"),
    "json list": ("d.jsonl", _raw('["a", "x"]\n'), "d.jsonl line 1: expected a JSON object, got list"),
    "ragged row": ("d.csv", _raw("text,label\na,x\nb,y,extra\n"), "d.csv line 3: 3 fields where the header has 2"),
    "unknown extension": ("d.xlsx", _raw("text,label\na,x\n"), "d.xlsx: unknown extension '.xlsx'"),
    "no extension": ("data", _raw("text,label\na,x\n"), "data: unknown extension 'none'"),
}


def _folder(layout: dict[str, bytes]):
    def make(root):
        for name, content in layout.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(content)
    return make


BAD_FOLDERS = {
    "folder not utf-8": (_folder({"neg/000.txt": b"fine", "pos/000.txt": b"line one\nna\xefve"}),
                         "pos/000.txt line 2: not UTF-8 text"),
    "folder empty text": (_folder({"neg/000.txt": b"fine", "pos/000.txt": b" \n"}), "pos/000.txt: empty text"),
    "folder unknown extension": (_folder({"neg/000.txt": b"fine", "pos/000.md": b"# hi"}),
                                 "pos/000.md: unknown extension '.md' in class folder 'pos'"),
    "folder one class": (_folder({"pos/000.txt": b"fine", "pos/001.txt": b"good"}), "docs: one class folder ('pos'"),
    "folder no classes": (_folder({"notes.txt": b"fine"}), "docs: empty folder: no class subfolders"),
    "folder empty class": (_folder({"neg/000.txt": b"fine", "pos/.keep": b""}), "docs/pos: empty class folder"),
}


def _assert_refused(cli, root, args, words):
    code, out, err = cli("run", "textclass", "--profile", "smoke", "--models", "bow", "--runs-root", root,
                         "--threads", "1", *args)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert words in err, err
    assert not (root / "textclass").exists() or not any((root / "textclass").iterdir())  # nothing half-written


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_is_refused_in_one_line_naming_file_line_and_column(tmp_path, cli, case):
    name, write, words = BAD_FILES[case]
    write(tmp_path / name)
    _assert_refused(cli, tmp_path / "runs", ["--data", tmp_path / name], words)


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_a_bad_folder_is_refused_in_one_line_naming_the_file(tmp_path, cli, case):
    make, words = BAD_FOLDERS[case]
    (tmp_path / "docs").mkdir()
    make(tmp_path / "docs")
    _assert_refused(cli, tmp_path / "runs", ["--data", tmp_path / "docs"], words)


def test_a_missing_path_and_a_missing_chosen_column_are_refused(tmp_path, cli):
    _assert_refused(cli, tmp_path / "runs", ["--data", tmp_path / "nowhere.csv"], "nowhere.csv: no such file or folder")
    path = write_table(tmp_path / "d.csv")
    _assert_refused(cli, tmp_path / "runs", ["--data", path, "--label_column", "topic"],
                    "d.csv line 1: no column 'topic' (--label_column); it has: text, label")


# ---- images ----------------------------------------------------------------------------------------------
def _png(path, array, mode=None):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(path)
    return path


def test_image_class_folders_of_any_size_grey_or_rgb_load_to_one_square_size(tmp_path):
    rng = np.random.default_rng(0)
    _png(tmp_path / "dog" / "a.png", rng.integers(0, 256, (40, 30, 3)))
    _png(tmp_path / "cat" / "b.png", rng.integers(0, 256, (20, 50)))
    _png(tmp_path / "cat" / "c.jpg", rng.integers(0, 256, (16, 16, 3)))
    (tmp_path / "cat" / ".DS_Store").write_bytes(b"x")
    found = userdata.image_class_folders(tmp_path)
    assert found.classes == ("cat", "dog") and found.labels.tolist() == [0, 0, 1]
    assert [f.name for f in found.files] == ["b.png", "c.jpg", "a.png"]
    rgb, grey = userdata.load_images(found.files, 8), userdata.load_images(found.files, 8, channels=1)
    assert rgb.shape == (3, 3, 8, 8) and grey.shape == (3, 1, 8, 8) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == rgb[0, 1]).all()  # the grey file, replicated to RGB


def test_square_resize_crops_the_centre(tmp_path):
    image = np.zeros((10, 30), dtype=np.uint8)
    image[:, 10:20] = 255  # the centre square is white, the sides black
    assert (userdata.square_resize(image, 5) == 255).all()


@pytest.mark.parametrize("case", ["truncated", "not_an_image", "extension", "one_class"])
def test_a_bad_image_folder_is_one_line_naming_the_file(tmp_path, case):
    rng = np.random.default_rng(0)
    good = _png(tmp_path / "a" / "ok.png", rng.integers(0, 256, (32, 32, 3)))
    if case != "one_class":
        _png(tmp_path / "b" / "ok.png", rng.integers(0, 256, (32, 32, 3)))
    if case == "truncated":
        bad = tmp_path / "b" / "cut.png"
        bad.write_bytes(good.read_bytes()[:60])
    elif case == "not_an_image":
        bad = tmp_path / "b" / "text.jpg"
        bad.write_text("hello")
    elif case == "extension":
        bad = tmp_path / "b" / "notes.txt"
        bad.write_text("hello")
    with pytest.raises(DataError) as e:
        userdata.load_images(userdata.image_class_folders(tmp_path).files, 8)
    message = str(e.value)
    assert "\n" not in message
    assert (str(bad) if case != "one_class" else "one class folder") in message


def test_images_and_masks_pair_by_stem_and_masks_are_checked(tmp_path):
    rng = np.random.default_rng(0)
    for stem in ("x1", "x2"):
        _png(tmp_path / "images" / f"{stem}.jpg", rng.integers(0, 256, (12, 10, 3)))
        _png(tmp_path / "masks" / f"{stem}.png", rng.integers(0, 3, (12, 10)))
    pairs = userdata.image_mask_pairs(tmp_path)
    assert [(i.name, m.name) for i, m in pairs] == [("x1.jpg", "x1.png"), ("x2.jpg", "x2.png")]
    mask = userdata.read_mask(pairs[0][1], (12, 10), num_classes=3)
    assert mask.dtype == np.int64 and mask.shape == (12, 10) and mask.max() <= 2
    with pytest.raises(DataError, match=r"x1.png: mask value 2 is out of range; classes are 0..1"):
        userdata.read_mask(pairs[0][1], (12, 10), num_classes=2)
    with pytest.raises(DataError, match=r"x1.png: mask is 12×10 but its image is 10×12"):
        userdata.read_mask(pairs[0][1], (10, 12))
    rgb = _png(tmp_path / "masks" / "x3.png", rng.integers(0, 3, (12, 10, 3)))
    with pytest.raises(DataError, match=r"x3.png: a RGB mask; save masks as single-channel PNGs"):
        userdata.read_mask(rgb)
    with pytest.raises(DataError, match=r"x3.png: no matching file 'x3.\*' in .*images"):
        userdata.image_mask_pairs(tmp_path)
    (tmp_path / "masks" / "x3.png").unlink()
    (tmp_path / "images" / "x1.jpg").rename(tmp_path / "images" / "x4.jpg")
    with pytest.raises(DataError, match=r"x1.png: no matching file 'x1.\*' in .*images"):
        userdata.image_mask_pairs(tmp_path)


def test_a_plain_image_folder_is_read_recursively_and_refuses_other_files(tmp_path):
    rng = np.random.default_rng(0)
    _png(tmp_path / "b.png", rng.integers(0, 256, (9, 9)))
    _png(tmp_path / "sub" / "a.png", rng.integers(0, 256, (9, 9, 3)))
    assert [f.name for f in userdata.image_folder(tmp_path).files] == ["b.png", "a.png"]
    (tmp_path / "sub" / "readme.md").write_text("x")
    with pytest.raises(DataError, match=r"readme.md: unknown extension '.md' in an image folder"):
        userdata.image_folder(tmp_path)
    with pytest.raises(DataError, match="no images in this folder"):
        userdata.image_folder((tmp_path / "empty").mkdir() or tmp_path / "empty")
