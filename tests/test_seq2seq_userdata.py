"""seq2seq on your own pairs (`--data`): the reader's formats, the split by source string, vocabularies from the
training pairs only, every malformed case as one line naming file, line and column (nothing written under runs/),
and a smoke run -> eval -> predict round trip on a tiny file."""

from __future__ import annotations

import bz2
import gzip
import json
import random

import pytest

from conftest import only_run_dir, read_summary
from torch_cookbook.data import pairs
from torch_cookbook.errors import ConfigError, DataError
from torch_cookbook.recipes import seq2seq as recipe


def tiny_pairs(n: int = 80, seed: int = 0) -> list[tuple[str, str]]:
    """`n` made-up (word, reversed word) pairs; the first source has a second target."""
    rng = random.Random(seed)
    words = sorted({"".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 8))) for _ in range(3 * n)})[:n]
    return [(w, w[::-1]) for w in words] + [(words[0], words[0].upper())]


def write_tsv(path, rows: list[tuple[str, str]]) -> str:
    path.write_text("".join(f"{s}\t{t}\n" for s, t in rows), encoding="utf-8")
    return str(path)


def config(path: str, **flags) -> recipe.Config:
    return recipe.Config(**{**recipe.profiles["smoke"], "data": path, **flags})


# ---- reading --------------------------------------------------------------------------------------------
def test_formats_read_the_same_pairs(tmp_path):
    rows = [("Germany", "Deutschland"), ("Cafe\u0301", "Café"), ("North Gaza", "Nord-Gaza")]
    text = "".join(f" {s}\t{t} \r\n\n" for s, t in rows)  # CRLF, blank lines, surrounding spaces
    (tmp_path / "p.tsv").write_text(text, encoding="utf-8")
    (tmp_path / "p.txt").write_text(text, encoding="utf-8")
    (tmp_path / "p.tsv.gz").write_bytes(gzip.compress(text.encode()))
    (tmp_path / "p.tsv.bz2").write_bytes(bz2.compress(text.encode()))
    (tmp_path / "h.csv").write_text("id,en,de\n" + "".join(f'{i},"{s}",{t}\n' for i, (s, t) in enumerate(rows)))
    (tmp_path / "h.jsonl").write_text("".join(json.dumps({"en": s, "de": t}) + "\n" for s, t in rows))
    expected = (["Germany", "Café", "North Gaza"], ["Deutschland", "Café", "Nord-Gaza"])  # stripped, NFC
    for name in ("p.tsv", "p.txt", "p.tsv.gz", "p.tsv.bz2"):
        found = pairs.read_pairs(tmp_path / name)
        assert (found.src, found.tgt) == expected and found.lines == [1, 3, 5], name
    for name in ("h.csv", "h.jsonl"):
        found = pairs.read_pairs(tmp_path / name, "en", "de")
        assert (found.src, found.tgt) == expected, name


def test_split_by_source_string(tmp_path):
    rows = tiny_pairs(200)
    path = write_tsv(tmp_path / "p.tsv", rows)
    split = pairs.split_file(path, seed=3, test_fraction=0.1, val_fraction=0.05, max_len=63)
    sides = [set(part.src) for part in (split.train, split.val, split.test)]
    assert not sides[0] & sides[1] and not sides[0] & sides[2] and not sides[1] & sides[2]
    assert (len(sides[2]), len(sides[1])) == (20, 10) and len(split.train) + len(split.val) + len(split.test) == 201
    first = rows[0][0]  # the source with two targets: both in one split
    assert sorted(part.src.count(first) for part in (split.train, split.val, split.test)) == [0, 0, 2]
    again = pairs.split_file(path, seed=3, test_fraction=0.1, val_fraction=0.05, max_len=63)
    assert again.test.src == split.test.src  # fixed by the seed ...
    assert pairs.split_file(path, seed=4, test_fraction=0.1, val_fraction=0.05, max_len=63).test.src != split.test.src
    shuffled = write_tsv(tmp_path / "q.tsv", sorted(rows, key=lambda r: r[1]))  # ... not by the order of the file
    assert set(pairs.split_file(shuffled, 3, 0.1, 0.05, 63).test.src) == sides[2]
    long = write_tsv(tmp_path / "long.tsv", rows + [("x" * 64, "y")])
    assert pairs.split_file(long, 3, 0.1, 0.05, 63).too_long == 1


def test_vocabularies_come_from_the_training_pairs(tmp_path):
    rows = [(f"w{chr(0x410 + i)}", f"W{chr(0x410 + i)}") for i in range(100)]  # one character of its own each
    task = recipe.load_task(config(write_tsv(tmp_path / "p.tsv", rows)), recipe.USER)
    train_chars = set("".join(task.train_src))
    assert set(task.src_vocab.itos[4:]) == train_chars and set(task.tgt_vocab.itos[4:]) == set("".join(task.train_tgt))
    held_out_only = set("".join(task.test_src + task.val_src)) - train_chars
    assert len(held_out_only) == 15  # 10 held-out and 5 validation sources, each with its own character ...
    for c in held_out_only:  # ... read as <unk>: never seen in training
        assert task.src_vocab.encode(c, eos=False) == [task.src_vocab.unk_id]


# ---- bad input: one line naming file, line and column ---------------------------------------------------
BAD = {  # file contents -> what the message says
    "notab.tsv": (b"a\tb\nhello world\n", "notab.tsv line 2: no tab; expected one: source<TAB>target"),
    "tabs.tsv": (b"a\tb\nx\ty\tz\n", "tabs.tsv line 2: 2 tabs"),
    "nosource.tsv": (b"a\tb\n\t b\n", "nosource.tsv line 2: column 1 (source) is empty"),
    "notarget.tsv": (b"a\tb\nc\t  \n", "notarget.tsv line 2: column 2 (target) is empty"),
    "latin1.tsv": (b"a\tb\ncaf\xe9\tb\n", "latin1.tsv line 2: not UTF-8 text (byte 0xe9 at character 4)"),
    "empty.tsv": (b"", "empty.tsv: empty file: no source<TAB>target lines"),
    "blank.tsv.gz": (gzip.compress(b"\n\n"), "blank.tsv.gz: empty file"),
    "few.tsv": (b"a\tb\nc\td\n", "few.tsv: too few pairs to split: --data_test_fraction 0.1 of 2 distinct sources"),
    "table.csv": (b"en,de\na,b\n", "table.csv: extension '.csv' for source<TAB>target lines"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_files_are_one_line(tmp_path, name):
    content, message = BAD[name]
    (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError) as e:
        recipe.check_launch(config(str(tmp_path / name)))
    assert message in str(e.value) and "\n" not in str(e.value)


def test_too_few_for_validation_or_a_batch(tmp_path):
    path = write_tsv(tmp_path / "p.tsv", tiny_pairs(15))  # 10% of 15 sources is 1 test source, 5% is none
    with pytest.raises(DataError, match=r"p.tsv: too few pairs to split: --data_val_fraction 0.05 of 15 distinct"):
        recipe.check_launch(config(path))
    with pytest.raises(DataError, match=r"p.tsv: too few pairs to split: 1\d training pairs, fewer than one batch"):
        recipe.check_launch(config(path, data_val_fraction=0.0))
    recipe.check_launch(config(path, data_val_fraction=0.0, batch_size=8))


def test_header_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("en,de\n" + "".join(f"{s},{t}\n" for s, t in tiny_pairs(40)))
    recipe.check_launch(config(str(path), source_column="en", target_column="de"))
    with pytest.raises(DataError, match=r"t.csv line 1: no column 'target' \(--target_column\); it has: en, de"):
        recipe.check_launch(config(str(path), source_column="en", target_column="target"))
    with pytest.raises(ConfigError, match="--source_column and --target_column go together"):
        recipe.check_launch(config(str(path), source_column="en"))
    path.write_text("en,de\na,\n")
    with pytest.raises(DataError, match=r"t.csv line 2: column 'de' \(--target_column\) is empty"):
        recipe.check_launch(config(str(path), source_column="en", target_column="de"))


def test_bad_data_writes_nothing(cli, tmp_path):
    (tmp_path / "bad.tsv").write_bytes(b"a\tb\nno tab here\n")
    code, _, err = cli("run", "seq2seq", "--profile", "smoke", "--data", tmp_path / "bad.tsv", "--runs-root",
                       tmp_path / "runs", "--threads", "1")
    assert code == 2 and "bad.tsv line 2: no tab" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))


# ---- the round trip ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    from torch_cookbook.cli import main

    root = tmp_path_factory.mktemp("s2s-user")
    data = write_tsv(root / "words.tsv", tiny_pairs(80))
    code = main(["run", "seq2seq", "--profile", "smoke", "--data", data, "--runs-root", str(root / "runs"),
                 "--threads", "1"])
    assert code == 0
    return only_run_dir(root / "runs", "seq2seq"), root / "words.tsv"


def test_run_reports_models_and_copy_baseline(user_run):
    run_dir, data = user_run
    metrics = read_summary(run_dir)["metrics"]
    for key in ("user_exact_all", "user_exact_all_greedy", "user_chrf_all", "user_chrf_all_greedy",
                "user_plain_chrf_all", "user_copy_chrf_all", "user_copy_exact_all", "user_chrf_changed_gain_vs_plain",
                "user_chrf_changed_gain_vs_copy", "user_length_alpha_chosen"):
        assert key in metrics, key
    split = pairs.split_file(data, seed=0, test_fraction=0.1, val_fraction=0.05, max_len=63)
    assert (metrics["user_test_size"], metrics["user_val_size"]) == (len(split.test), len(split.val))
    assert not any(k.startswith(("names", "dates")) for k in metrics)
    recorded = json.loads((run_dir / "data.json").read_text())["data"]
    assert recorded["path"] == str(data) and recorded["columns"] == {"source_column": "", "target_column": ""}
    assert {p.name for p in (run_dir / "variants").iterdir()} == {"user_attention", "user_plain"}


def test_eval_and_predict(user_run, cli):
    run_dir, data = user_run
    code, out, err = cli("eval", run_dir)
    assert code == 0, err
    recomputed = json.loads(out[out.index("{"):])["metrics"]
    summary = read_summary(run_dir)["metrics"]
    assert {k: recomputed[k] for k in summary if not k.endswith("_s")} == {
        k: v for k, v in summary.items() if not k.endswith("_s")}
    code, out, err = cli("predict", "seq2seq", run_dir, "abcdef")
    assert code == 0 and "output" in out and "beam (width 2)" in out, err
    code, out, _ = cli("predict", "seq2seq", run_dir, "abc☃")
    assert code == 0 and "never seen in training" in out
    code, _, err = cli("predict", "seq2seq", run_dir, "abc", "--task", "names")
    assert code == 2 and "trained only --data" in err
    original = data.read_bytes()
    data.write_bytes(original + b"zz\tzz\n")
    try:
        code, _, err = cli("predict", "seq2seq", run_dir, "abc")
        assert code == 2 and "changed since the run" in err
    finally:
        data.write_bytes(original)
