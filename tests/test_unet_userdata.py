"""unet on your own data: DIR/images + DIR/masks read, checked, resized and split; a run -> eval -> predict round trip;
each bad folder refused in one line naming the file, before a run directory exists."""

from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import only_run_dir
from torch_cookbook.data.segmentation_folder import read_folder, resize_short_side
from torch_cookbook.engine import faults
from torch_cookbook.errors import ConfigError, DataError
from torch_cookbook.nn.unet import confusion_matrix
from torch_cookbook.recipes import unet


def write_pair(root, name, mask, image=None, suffix=".png"):
    """images/NAME<suffix> and masks/NAME.png; the image defaults to a dim noisy background with bright objects."""
    for part in ("images", "masks"):
        (root / part).mkdir(parents=True, exist_ok=True)
    if image is None:
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        image = (40 + 20 * rng.random(mask.shape) + 150 * (mask > 0)).astype(np.uint8)
    Image.fromarray(image).save(root / "images" / f"{name}{suffix}")
    Image.fromarray(np.asarray(mask, dtype=np.uint8)).save(root / "masks" / f"{name}.png")


def square_mask(shape, top, left, side, value=1):
    mask = np.zeros(shape, dtype=np.uint8)
    mask[top:top + side, left:left + side] = value
    return mask


def write_squares(root, n=12):
    """n pairs with a bright square (class 1): 16 × 16 grey PNGs, one of them RGB, and one 16 × 24."""
    for i in range(n):
        shape = (16, 24) if i == 5 else (16, 16)
        mask = square_mask(shape, i % 8, (3 * i) % 8, 6 + i % 3)
        image = None
        if i == 7:  # an RGB image: grey is replicated, colour is kept
            image = np.stack([(40 + 150 * mask).astype(np.uint8)] * 3, axis=-1)
            image[..., 0] //= 2
        write_pair(root, f"img{i:02d}", mask, image)
    return root


USER_ARGS = ("run", "unet", "--profile", "smoke", "--image_size", "16", "--threads", "1")


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    from torch_cookbook.cli import main

    root = tmp_path_factory.mktemp("unet_user")
    data = write_squares(root / "squares")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COOKBOOK_CACHE", str(root / "cache"))
        assert main([*USER_ARGS, "--data", str(data), "--runs-root", str(root / "runs")]) == 0
    return only_run_dir(root / "runs", "unet"), data


def test_a_user_folder_runs_evaluates_and_predicts(user_run, cli, tmp_path):
    from torch_cookbook.data.userdata import fingerprint

    run_dir, data = user_run
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = summary["metrics"]
    assert {(t["met"], str(t["for"])) for t in summary["targets"]} == {(None, "{'data': ''}")}  # not judged
    expected = {"mean_iou", "pixel_accuracy", "fg_dice", "iou_class_0", "iou_class_1", "otsu_fg_dice", "otsu_mean_iou",
                "majority_mean_iou", "val_mean_iou", "val_fg_dice", "val_mean_iou_flip", "val_fg_dice_flip"}
    assert set(metrics) == expected
    assert metrics["otsu_fg_dice"] > 0.9  # bright squares on a dim background: Otsu's home ground
    assert json.loads((run_dir / "classes.json").read_text()) == ["class_0", "class_1"]
    assert json.loads((run_dir / "data.json").read_text())["data"] == {**fingerprint(data), "columns": {}}
    code, out, err = cli("eval", run_dir)
    assert code == 0, err
    assert json.loads(out)["metrics"] == pytest.approx(metrics, abs=1e-6)

    photo = np.stack([(40 + 150 * square_mask((30, 40), 5, 9, 12)).astype(np.uint8)] * 3, axis=-1)
    Image.fromarray(photo).save(tmp_path / "new.png")
    for scale in ("0", "1"):  # short side to --image_size as in training, or as is
        overlay, mask = tmp_path / f"overlay{scale}.png", tmp_path / f"mask{scale}.png"
        code, out, err = cli("predict", "unet", run_dir, tmp_path / "new.png", "--out", overlay, "--mask", mask,
                             "--scale", scale)
        assert code == 0, err
        assert f"wrote {overlay} and {mask}" in out and overlay.is_file()
        predicted = np.asarray(Image.open(mask))
        assert predicted.shape == (30, 40) and set(np.unique(predicted)) <= {0, 1}


def test_the_folder_is_resized_split_and_counted_from_its_masks(tmp_path):
    for i in range(10):  # class 2 in two masks: the rarest class, stratified into train first
        mask = square_mask((20, 40), 2, 4 * i % 20, 8, value=1)
        if i in (3, 8):
            mask[12:18, 30:36] = 2
        write_pair(tmp_path, f"p{i}", mask, suffix=".jpg" if i == 4 else ".png")
    folder = read_folder(tmp_path, size=16, seed=0, val_fraction=0.1, test_fraction=0.2)
    assert folder.num_classes == 3 and folder.classes == ("class_0", "class_1", "class_2")
    train, val, test = folder.split
    assert sorted([*train, *val, *test]) == list(range(10)) and len(test) == 2 and len(val) == 1
    assert {3, 8} <= set(train.tolist())  # the two masks with class 2 train
    pairs = folder.pairs
    assert all(im.shape == (3, 16, 32) and m.shape == (16, 32) for im, m in zip(pairs.images, pairs.masks))
    assert set(np.unique(pairs.masks[3])) == {0, 1, 2}  # nearest neighbour: no blended class values
    again = read_folder(tmp_path, size=16, seed=0, val_fraction=0.1, test_fraction=0.2)
    assert all(np.array_equal(a, b) for a, b in zip(folder.split, again.split))
    x, y = folder.part("train").crops([0, 1], 16, np.random.default_rng(0))
    assert x.shape == (2, 3, 16, 16) and y.shape == (2, 16, 16) and 0 <= x.min() and x.max() <= 1


def test_resizing_keeps_the_aspect_and_mask_values():
    mask = np.zeros((30, 90), dtype=np.uint8)
    mask[:, 45:] = 7
    small = resize_short_side(mask, 10, nearest=True)
    assert small.shape == (10, 30) and set(np.unique(small)) == {0, 7}
    assert resize_short_side(np.zeros((8, 12, 3), dtype=np.uint8), 16).shape == (16, 24, 3)  # small ones grow


def test_scores_from_summed_confusion_matrices_match_the_stacked_metrics():
    torch.manual_seed(0)
    pred, truth = torch.randint(0, 3, (4, 9, 7)), torch.randint(0, 3, (4, 9, 7))
    classes = ("class_0", "class_1", "class_2")
    stacked = unet.segmentation_metrics(pred, truth, classes)
    confusion = sum(confusion_matrix(p, t, 3) for p, t in zip(pred, truth))
    assert unet.confusion_metrics(confusion, classes) == pytest.approx(stacked, abs=1e-6)
    confusion[2] = 0  # class 2 neither true nor predicted: no IoU, and left out of the mean
    confusion[:, 2] = 0
    scores = unet.confusion_metrics(confusion, classes)
    assert scores["iou_class_2"] is None
    assert scores["mean_iou"] == pytest.approx((scores["iou_class_0"] + scores["iou_class_1"]) / 2)


# ---- bad folders: one line naming the file, before anything is written ------------------------------------
def bad_folder(root, problem):
    write_squares(root, n=6)
    images, masks = root / "images", root / "masks"
    if problem == "no_masks":
        for f in masks.iterdir():
            f.unlink()
        masks.rmdir()
    elif problem == "unmatched":
        (masks / "img03.png").rename(masks / "other.png")
    elif problem == "truncated":
        (images / "img02.png").write_bytes((images / "img02.png").read_bytes()[:60])
    elif problem == "colour_mask":
        Image.new("RGB", (16, 16)).save(masks / "img01.png")
    elif problem == "size":
        Image.fromarray(np.zeros((16, 20), dtype=np.uint8)).save(masks / "img04.png")
    elif problem == "out_of_range":
        Image.fromarray(np.full((16, 16), 300, dtype=np.uint16)).save(masks / "img00.png")  # a 16-bit PNG
    elif problem == "one_class":
        for f in masks.iterdir():
            Image.fromarray(np.zeros((16, 24) if f.stem == "img05" else (16, 16), dtype=np.uint8)).save(f)
    elif problem == "too_few":
        for name in ("img02", "img03", "img04", "img05"):
            (images / f"{name}.png").unlink()
            (masks / f"{name}.png").unlink()
    elif problem == "gap":  # a binary mask saved as 0/255
        Image.fromarray(square_mask((16, 16), 2, 2, 5, value=255)).save(masks / "img00.png")
    elif problem == "only_in_test":
        Image.fromarray(square_mask((16, 16), 2, 2, 5, value=2)).save(masks / "img00.png")
    return root


BAD = {  # problem: (the file the message names, what it says)
    "no_masks": ("", "no 'masks/' folder"),
    "unmatched": ("images/img03.png", "no matching file 'img03.*'"),
    "truncated": ("images/img02.png", "not a readable image"),
    "colour_mask": ("masks/img01.png", "a RGB mask"),
    "size": ("masks/img04.png", "mask is 16×20 but its image is 16×16"),
    "out_of_range": ("masks/img00.png", "mask value 300 is out of range; classes are 0..255"),
    "one_class": ("masks", "every mask is all 0 (one class"),
    "too_few": ("", "2 image/mask pairs; a train/val/test split needs at least 3"),
    "gap": ("masks", "class 2 is in no mask, but values go up to 255 (seen: 0, 1, 255)"),
    "only_in_test": ("masks/img00.png", "class 2 is in the test split but in no training mask"),
}


@pytest.mark.parametrize("problem", sorted(BAD))
def test_a_bad_folder_is_refused_in_one_line_naming_the_file(tmp_path, problem):
    root = bad_folder(tmp_path / "data", problem)
    fractions = {"val_fraction": 0.2, "test_fraction": 0.6} if problem == "only_in_test" else {}  # class 2 to test
    cfg = unet.Config(data=str(root), image_size=16, batch_size=2, depth=2, **fractions)
    with pytest.raises(DataError) as e:
        unet.check_launch(cfg)
    where, what = BAD[problem]
    message = str(e.value)
    assert "\n" not in message and what in message
    assert message.startswith(str(root / where).rstrip("/"))


def test_settings_the_folder_cannot_meet_are_refused(tmp_path):
    root = write_squares(tmp_path / "data", n=6)
    with pytest.raises(ConfigError, match=r"--batch_size 8: larger than the 4 training pairs"):
        unet.check_launch(unet.Config(data=str(root), image_size=16, batch_size=8, depth=2))
    with pytest.raises(ConfigError, match=r"--image_size 16: smaller than 2\*\*depth = 32"):
        unet.check_launch(unet.Config(data=str(root), image_size=16, depth=5))


def test_bad_data_leaves_no_run_directory(tmp_path, cli):
    root = bad_folder(tmp_path / "data", "size")
    code, _, err = cli(*USER_ARGS, "--data", root, "--runs-root", tmp_path / "runs")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "img04.png" in err
    assert not (tmp_path / "runs" / "unet").exists() or not any((tmp_path / "runs" / "unet").iterdir())


def test_a_run_stopped_part_way_resumes_to_the_same_metrics(user_run, tmp_path, cli, monkeypatch):
    """Training crops are placed by (seed, step), so a run stopped at step 6 of 12 and resumed ends where an
    uninterrupted one did (the fixture's run, on a copy of the same folder)."""
    from conftest import assert_same_metrics, read_summary

    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path / "cache"))
    data = write_squares(tmp_path / "squares")
    finished = faults.step_finished

    def stop_at_6(step):
        finished(step)
        if step == 6:
            raise KeyboardInterrupt

    monkeypatch.setattr(faults, "step_finished", stop_at_6)
    assert cli(*USER_ARGS, "--data", data, "--runs-root", tmp_path / "runs")[0] == 130
    monkeypatch.setattr(faults, "step_finished", finished)
    run_dir = only_run_dir(tmp_path / "runs", "unet")
    assert cli("run", "--resume", run_dir)[0] == 0
    assert_same_metrics(read_summary(run_dir)["metrics"], read_summary(user_run[0])["metrics"])
