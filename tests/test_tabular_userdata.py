"""regression and multitask on your own table (data/tabular.py): a run -> eval -> predict round trip for each, the
encoding (standardised on train only, one-hot over training categories, missing values filled), the split, and
every refusal as one line naming the file, the line and the column, with nothing left under runs/."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from conftest import only_run_dir, read_summary
from torch_cookbook.data import tabular
from torch_cookbook.errors import CookbookError, DataError
from torch_cookbook.recipes import multitask, regression

HEADER = ["size", "rooms", "city", "kind", "price"]
CITIES = ("north", "south", "west")


def house_rows(n: int = 60) -> list[list[str]]:
    """size and rooms (two missing), a city (categorical), a kind (the class) and a price that depends on all."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        size, rooms, city = 40 + 3 * i % 97, 1 + i % 5, CITIES[i % 3]
        price = 2.0 * size + 15 * rooms + 40 * CITIES.index(city) + rng.normal(0, 5)
        rows.append([str(size), "" if i in (7, 30) else str(rooms), city, "house" if size > 80 else "flat",
                     f"{price:.2f}"])
    return rows


def write_csv(path, rows, header=HEADER):
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return path


REG_ARGS = ["--profile", "smoke", "--threads", "1", "--steps", "200", "--sgd_steps", "400", "--mlp_steps", "20",
            "--target", "price"]
MT_ARGS = ["--profile", "smoke", "--threads", "1", "--steps", "20", "--target", "kind,price"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One smoke run of each recipe on the same small CSV."""
    from torch_cookbook.cli import main

    root = tmp_path_factory.mktemp("tabular_user")
    data = write_csv(root / "houses.csv", house_rows())
    assert main(["run", "regression", *REG_ARGS, "--data", str(data), "--runs-root", str(root / "runs")]) == 0
    assert main(["run", "multitask", *MT_ARGS, "--data", str(data), "--runs-root", str(root / "runs")]) == 0
    return data, only_run_dir(root / "runs", "regression"), only_run_dir(root / "runs", "multitask")


def test_regression_on_a_user_table_runs_evaluates_and_predicts(runs, cli):
    data, run_dir, _ = runs
    metrics = read_summary(run_dir)["metrics"]
    assert not any(k.startswith("poly") for k in metrics)  # the CO2 sweep belongs to the bundled demo
    assert metrics["data_rows_train"] == 36 and metrics["data_rows_val"] == metrics["data_rows_test"] == 12
    assert metrics["data_inputs"] == 2 + len(CITIES) + 2 and metrics["data_filled_values"] == 2  # kind: one-hot
    assert metrics["closed_form_test_mse"] < 0.2 * metrics["mean_test_mse"]  # the features explain the price
    assert metrics["full_batch_vs_closed_form"] < 0.05 and metrics["minibatch_sgd_vs_closed_form"] < 1.05
    assert (run_dir / "plots" / "fits.png").exists()
    recorded = json.loads((run_dir / "data.json").read_text())["data"]["columns"]
    assert recorded == {"target": "price", "features": "", "drop": "", "max_categories": 50}
    code, out, err = cli("eval", run_dir)
    assert code == 0, err
    evaluated = json.loads(out)["metrics"]
    assert evaluated == {k: metrics[k] for k in evaluated} and "mean_test_mse" in evaluated
    code, out, err = cli("predict", "regression", run_dir, "size=100", "rooms=3", "city=south", "kind=house")
    assert code == 0, err
    value = float(out.split("price ")[1].split()[0])
    assert abs(value - (200 + 45 + 40)) < 25  # the price the rows were made from, within their noise and fit
    code, out, err = cli("predict", "regression", run_dir, "size=100", "rooms=", "city=east", "kind=house", "--arm",
                         "mlp_mse")
    assert code == 0 and "city 'east' not seen in training: all zeros" in out and "(mlp_mse)" in out, err
    code, out, err = cli("predict", "regression", run_dir, "--rows", data)
    assert code == 0 and len(out.strip().splitlines()) == 60 and f"{data} line 61: price" in out, err


def test_multitask_on_a_user_table_runs_evaluates_and_predicts(runs, cli):
    data, _, run_dir = runs
    metrics = read_summary(run_dir)["metrics"]
    assert not any("persistence" in k for k in metrics)  # rows of a table have no time order
    assert {"majority_accuracy", "mean_mae", "multihead_mae_over_mean", "multihead_accuracy"} <= metrics.keys()
    assert metrics["data_rows_val"] == 0 and metrics["data_rows_train"] + metrics["data_rows_test"] == 60
    assert metrics["multihead_mae"] < metrics["mean_mae"]
    judged = {t["metric"]: t for t in read_summary(run_dir)["targets"]}
    assert judged["multihead_accuracy_over_persistence"]["for"] == {"data": ""}  # not judged on a table
    assert judged["multihead_accuracy_ratio"]["met"] is not None
    code, out, err = cli("eval", run_dir)
    assert code == 0, err
    evaluated = json.loads(out)["metrics"]
    assert evaluated == {k: metrics[k] for k in evaluated}
    code, out, err = cli("predict", "multitask", run_dir, "size=100", "rooms=3", "city=south")
    assert code == 0, err
    assert out.startswith("row: kind ") and "price " in out and "(multihead)" in out
    code, out, err = cli("predict", "multitask", run_dir, "size=100", "rooms=3", "city=south", "--variant",
                         "single_class")
    assert code == 0 and "price" not in out, err


def test_numeric_inputs_are_standardised_on_train_only_and_categories_come_from_train(tmp_path):
    rows = house_rows()
    split = ["test" if i % 5 == 0 else "train" for i in range(60)]
    rows[5][2] = "east"  # a test row's city that training never shows
    path = write_csv(tmp_path / "h.csv", [r + [s] for r, s in zip(rows, split)], HEADER + ["split"])
    t = tabular.read_user_table(path, {"price": tabular.NUMBER}, seed=0)
    train, val, test = t.parts
    assert len(test) == 12 and len(val) == round(0.2 * 48) and 0 < len(train)  # no val rows: held out of train
    assert t.encoding.categories == {"city": CITIES, "kind": ("flat", "house")}
    assert list(t.encoding.means) == ["size", "rooms"] and t.x.shape[1] == 2 + 3 + 2
    assert t.x[5, 2:5].tolist() == [0.0, 0.0, 0.0]  # the unseen city: all zeros
    assert t.x[30, 1] == pytest.approx(t.encoding.means["rooms"]) and t.filled == 2
    sizes = np.array([float(r[0]) for r in rows])
    assert t.encoding.means["size"] == pytest.approx(sizes[train].mean())  # the training rows' mean only
    scaled = t.scaler()(torch.from_numpy(t.x))
    assert scaled[train, 0].mean().item() == pytest.approx(0, abs=1e-9)
    assert set(scaled[:, 2:].unique().tolist()) == {0.0, 1.0}  # one-hot inputs are not standardised


def test_formats_and_column_choices(tmp_path):
    rows = house_rows()
    csv = write_csv(tmp_path / "h.csv", rows)
    jsonl = tmp_path / "h.jsonl.gz"
    with gzip.open(jsonl, "wt") as f:
        for r in rows:
            f.write(json.dumps({**dict(zip(HEADER, r)), "size": float(r[0]), "rooms": None if not r[1] else int(r[1])})
                    + "\n")
    a = tabular.read_user_table(csv, {"price": tabular.NUMBER})
    b = tabular.read_user_table(jsonl, {"price": tabular.NUMBER})
    assert np.array_equal(a.x, b.x) and np.array_equal(a.targets["price"], b.targets["price"])
    chosen = tabular.read_user_table(csv, {"price": tabular.NUMBER}, features=("city", "size"), drop=("size",))
    assert chosen.encoding.columns == ("city",)
    both = tabular.read_user_table(csv, {"kind": tabular.CLASS, "price": tabular.NUMBER}, val_fraction=0.0)
    assert both.classes == {"kind": ("flat", "house")} and both.encoding.columns == ("size", "rooms", "city")
    labels = both.targets["kind"]
    assert abs(labels[both.parts[2]].mean() - labels.mean()) < 0.05  # stratified on the class


def bad(rows, header=HEADER):
    def write(tmp_path):
        return write_csv(tmp_path / "bad.csv", rows, header)
    return write


GOOD = house_rows(20)
CASES = {
    "missing column": (bad([r[:4] for r in GOOD], HEADER[:4]), {}, "bad.csv line 1: no column 'price' (--target);"
                       " it has: size, rooms, city, kind"),
    "no target given": (bad(GOOD), {"target": ""}, "bad.csv: --data needs --target; the columns: size, rooms"),
    "empty file": (lambda p: (p / "bad.csv").write_text("") or p / "bad.csv", {}, "bad.csv: empty file"),
    "header only": (bad([]), {}, "bad.csv: empty file: no rows to read"),
    "too few rows": (bad(GOOD[:6]), {}, "bad.csv: 6 rows; at least 10 are needed"),
    "missing target": (bad(GOOD[:3] + [GOOD[3][:4] + ["NA"]] + GOOD[4:]), {},
                       "bad.csv line 5: column 'price' (--target) is missing ('NA')"),
    "non-numeric target": (bad(GOOD[:2] + [GOOD[2][:4] + ["cheap"]] + GOOD[3:]), {},
                           "bad.csv line 4: column 'price' (--target) is 'cheap', not a number"),
    "too many categories": (bad([[f"s{i}"] + r[1:] for i, r in enumerate(GOOD)]), {"max_categories": 5},
                            "bad.csv line 2: column 'size' is 's0', not a number, so it would be one-hot encoded, and"
                            " it has over 5 distinct values (--max_categories); leave it out with --drop size"),
    "unknown feature": (bad(GOOD), {"features": "size,colour"}, "bad.csv line 1: no column 'colour' (--features)"),
    "unknown drop": (bad(GOOD), {"drop": "colour"}, "bad.csv line 1: no column 'colour' (--drop)"),
    "nothing left": (bad(GOOD), {"drop": "size,rooms,city,kind"}, "bad.csv: no feature columns left"),
    "constant target": (bad([r[:4] + ["7"] for r in GOOD]), {},
                        "bad.csv: column 'price' (--target) is 7 on every training row"),
    "a column without values": (bad([r[:1] + [""] + r[2:] for r in GOOD]), {},
                                "bad.csv: column 'rooms' has no values in the training split; leave it out with"
                                " --drop rooms"),
    "ragged row": (bad(GOOD[:4] + [GOOD[4][:3]] + GOOD[5:]), {}, "bad.csv line 6: 3 fields where the header has 5"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_tables_are_refused_in_one_line_by_check_launch(case, tmp_path):
    write, flags, fragment = CASES[case]
    cfg = regression.Config(data=str(write(tmp_path)), **{"target": "price", **flags})
    with pytest.raises(CookbookError) as error:
        regression.check_launch(cfg)
    message = str(error.value)
    assert fragment in message and "\n" not in message, message


MT_CASES = {
    "one target": ({"target": "kind"}, "--target 'kind': --data needs two targets, CLASS_COLUMN,NUMERIC_COLUMN"),
    "one class": ({"target": "city,price", "features": "size", "data_rows": [r[:2] + ["north"] + r[3:] for r in GOOD]},
                  "bad.csv: column 'city' (--target) has one class ('north', 20 rows); a classifier needs two or more"),
    "a class only in test": ({"target": "kind,price", "split": True},
                             "bad.csv line 22: class 'castle' (column 'kind', --target) is in the test split but not"
                             " in train"),
}


@pytest.mark.parametrize("case", sorted(MT_CASES))
def test_bad_multitask_targets_are_refused_in_one_line(case, tmp_path):
    flags, fragment = MT_CASES[case]
    rows = flags.pop("data_rows", GOOD)
    header = HEADER
    if flags.pop("split", False):
        rows = [r + ["train"] for r in GOOD] + [["50", "2", "north", "castle", "180", "test"]]
        rows += [r[:5] + ["test"] for r in GOOD[:3]]
        header = HEADER + ["split"]
    cfg = multitask.Config(data=str(write_csv(tmp_path / "bad.csv", rows, header)), **flags)
    with pytest.raises(CookbookError) as error:
        multitask.check_launch(cfg)
    assert fragment in str(error.value) and "\n" not in str(error.value), str(error.value)


def test_bad_data_leaves_no_run_directory(cli, tmp_path):
    data = write_csv(tmp_path / "bad.csv", GOOD[:2] + [GOOD[2][:4] + ["cheap"]] + GOOD[3:])
    for name, args in (("regression", REG_ARGS), ("multitask", MT_ARGS)):
        code, _, err = cli("run", name, *args, "--data", data, "--runs-root", tmp_path / "runs")
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"{data} line 4: column 'price' (--target) is 'cheap', not a number" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))


def test_predict_refuses_bad_rows_in_one_line(runs, cli, tmp_path):
    data, run_dir, mt_dir = runs
    cases = [
        (("size=100", "rooms=3"), "no value for city, kind: give COLUMN=VALUE for every feature"),
        (("size=big", "rooms=3", "city=north", "kind=flat"), "row: column 'size' is 'big', not a number; it is"
                                                              " numeric in this data"),
        (("colour=red",), "'colour=red': expected COLUMN=VALUE with COLUMN one of the run's features: size, rooms,"),
        ((), "give one row as COLUMN=VALUE pairs, or a file of rows with --rows FILE"),
    ]
    for values, fragment in cases:
        code, _, err = cli("predict", "regression", run_dir, *values)
        assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
    rows = write_csv(tmp_path / "rows.csv", [["100", "3"]], ["size", "rooms"])
    code, _, err = cli("predict", "multitask", mt_dir, "--rows", rows)
    assert code == 2 and f"{rows} line 1: no column 'city'; the run's features: size, rooms, city" in err, err


def test_the_bundled_data_still_predicts_from_feature_values():
    """A diabetes run's predict takes the ten named variables (the encoding is all numeric)."""
    data = regression.load_data(regression.Config())
    assert data.encoding.columns == tabular.DIABETES_FEATURES and not data.encoding.categories
    where, x = tabular.rows_to_predict(data.encoding, [f"{c}={v}" for c, v in
                                                       zip(tabular.DIABETES_FEATURES, data.split.x_test[0].tolist())],
                                       None)
    assert where == ["row"] and torch.equal(x[0], data.split.x_test[0])
    with pytest.raises(DataError, match="trained on the bundled weather windows"):
        multitask.predict(multitask.Config(), type("R", (), {"dir": "runs/multitask/x"})(), None)
