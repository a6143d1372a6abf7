"""UNet: output size for odd and even inputs, Dice loss, the composed data set, the Otsu baseline, predict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torch_cookbook.data import fashion_mnist, images, segmentation
from torch_cookbook.nn.unet import UNet, dice_loss, otsu_confusion, overlap_scores
from torch_cookbook.recipes.unet import (
    class_weights,
    predict_masks,
    segmentation_loss,
    segmentation_metrics,
)


@pytest.mark.parametrize("size", [(32, 32), (33, 33), (45, 38), (16, 17)])
def test_output_has_the_input_size_for_odd_and_even_sizes(size):
    torch.manual_seed(0)
    model = UNet(in_channels=3, num_classes=11, width=4, depth=3).eval()
    out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, 11, *size)


def test_input_smaller_than_the_depth_allows_is_refused():
    model = UNet(width=2, depth=3)
    with pytest.raises(ValueError, match="smaller than 8×8"):
        model(torch.rand(1, 3, 7, 20))


def test_dice_loss_is_zero_for_a_confident_correct_prediction_and_matches_the_formula():
    target = torch.tensor([[[0, 1], [1, 1]]])
    perfect = torch.nn.functional.one_hot(target, 2).permute(0, 3, 1, 2).float() * 50
    assert dice_loss(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    logits = torch.zeros(1, 2, 2, 2)  # p = 0.5 everywhere
    # class 0: |P∩T| = 0.5, |P| + |T| = 2 + 1; class 1: 1.5, 2 + 3  (eps = 1)
    expected = 1 - ((2 * 0.5 + 1) / (3 + 1) + (2 * 1.5 + 1) / (5 + 1)) / 2
    assert dice_loss(logits, target).item() == pytest.approx(expected)


def test_training_loss_is_weighted_cross_entropy_plus_weighted_dice():
    torch.manual_seed(0)
    logits, masks = torch.randn(2, 11, 6, 5), torch.randint(0, 11, (2, 6, 5))
    weight = torch.rand(11) + 0.5
    loss, ce = segmentation_loss(logits, masks, weight, dice_weight=0.5)
    expected_ce = torch.nn.functional.cross_entropy(logits, masks, weight=weight)
    assert ce.item() == pytest.approx(expected_ce.item())
    assert loss.item() == pytest.approx(expected_ce.item() + 0.5 * dice_loss(logits, masks).item())
    assert segmentation_loss(logits, masks, weight, dice_weight=0.0)[0].item() == pytest.approx(expected_ce.item())


def test_metrics_match_a_confusion_matrix_by_hand():
    truth = torch.tensor([[0, 0, 1, 2]])
    pred = torch.tensor([[0, 1, 1, 2]])
    m = segmentation_metrics(pred, truth)
    assert m["iou_background"] == pytest.approx(0.5)  # class 0: TP 1, FN 1
    assert m["iou_t_shirt_top"] == pytest.approx(0.5)  # class 1: TP 1, FP 1
    assert m["iou_trouser"] == pytest.approx(1.0)
    assert m["fg_dice"] == pytest.approx(2 * 2 / (2 * 2 + 1))  # foreground: TP 2, FP 1, FN 0
    assert m["pixel_accuracy"] == pytest.approx(0.75)


def test_class_weights_favour_rare_classes_and_average_one_per_pixel():
    masks = torch.tensor([[0] * 12 + [1] * 3 + [2]])  # shares 12/16, 3/16, 1/16; classes 3..10 absent
    counts = torch.bincount(masks.flatten(), minlength=11)
    w = class_weights(counts, power=0.5)
    share = counts.float() / masks.numel()
    assert (w * share).sum().item() == pytest.approx(1.0)
    assert w[2] / w[1] == pytest.approx(3 ** 0.5) and w[1] / w[0] == pytest.approx(4 ** 0.5)
    assert torch.allclose(class_weights(counts, power=0.0), torch.ones(11))


def test_composed_set_is_reproducible_and_masks_follow_the_items():
    fm = fashion_mnist.load()
    items, labels = fm.test_images[:50], fm.test_labels[:50]
    a = segmentation.compose(items, labels, n=6, size=32, max_items=2, seed=3, test=True)
    b = segmentation.compose(items, labels, n=6, size=32, max_items=2, seed=3, test=True)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert a.images.shape == (6, 3, 32, 32) and a.masks.shape == (6, 32, 32)
    assert 0 <= a.images.min() and a.images.max() <= 1
    present = set(a.masks.unique().tolist())
    assert 0 in present and present <= set(range(11)) and len(present) > 1
    assert all((m > 0).any() for m in a.masks)  # every image holds at least one item


def test_otsu_finds_a_bright_square_on_a_dark_background():
    img = torch.full((1, 3, 16, 16), 0.1)
    img[:, :, 4:10, 4:10] = 0.9
    mask = torch.zeros(1, 16, 16, dtype=torch.long)
    mask[:, 4:10, 4:10] = 3
    scores = overlap_scores(otsu_confusion(zip(img, mask)))
    assert scores["fg_dice"] == pytest.approx(1.0) and scores["mean_iou"] == pytest.approx(1.0)


# ---- predict and bad input -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def smoke_run(smoke_runs):
    return smoke_runs("unet")[0]  # the session's smoke run, shared with the contract tests (read only)


def test_predict_writes_a_segmentation_of_a_bundled_photo(smoke_run, cli, tmp_path):
    out, mask = tmp_path / "seg.png", tmp_path / "mask.png"
    code, stdout, err = cli("predict", "unet", smoke_run, "coffee", "--resize", "40", "--out", out, "--mask", mask)
    assert code == 0, err
    assert out.is_file() and "wrote" in stdout
    from PIL import Image

    with Image.open(mask) as im:  # the classes, at the size the image was segmented at
        assert im.size == (40, 40) and np.asarray(im).max() <= 10


@pytest.mark.parametrize("problem", ["missing", "not_image", "too_small"])
def test_bad_predict_input_is_a_one_line_error(smoke_run, cli, tmp_path, problem):
    path = tmp_path / "x.png"
    if problem == "not_image":
        path.write_bytes(b"\x00\x01 definitely not a PNG")
    elif problem == "too_small":
        images.save_png(torch.rand(3, 3, 3), path)  # the smoke UNet has depth 2: at least 4×4
    code, _, err = cli("predict", "unet", smoke_run, path)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1
    expected = {"missing": "does not exist", "not_image": "is not an image", "too_small": "at least 4×4"}[problem]
    assert expected in err


# ---- validation split and flip averaging -------------------------------------------------------------
def test_validation_scenes_are_reproducible_and_not_the_training_scenes():
    a = segmentation.load_validation(n=8, size=32, max_items=2)
    b = segmentation.load_validation(n=8, size=32, max_items=2)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    fm = fashion_mnist.load()
    train = segmentation.compose(fm.train_images, fm.train_labels, n=8, size=32, max_items=2, seed=1, test=False)
    assert not torch.equal(a.images, train.images)  # another generator seed than the training set


def test_flip_averaged_prediction_is_mirror_equivariant():
    torch.manual_seed(0)
    model = UNet(in_channels=3, num_classes=11, width=4, depth=2).eval()
    x = torch.rand(3, 3, 16, 20)
    plain = predict_masks(model, x, torch.device("cpu"))
    flipped = predict_masks(model, x, torch.device("cpu"), flip=True)
    # averaging a view and its mirror answers the mirrored input with the mirrored answer
    assert torch.equal(predict_masks(model, x.flip(-1), torch.device("cpu"), flip=True), flipped.flip(-1))
    assert plain.shape == flipped.shape == (3, 16, 20)


def test_a_run_reports_validation_metrics_with_and_without_flip(smoke_run):
    import json

    metrics = json.loads((smoke_run / "summary.json").read_text())["metrics"]
    for key in ("val_mean_iou", "val_fg_dice", "val_mean_iou_flip", "val_fg_dice_flip"):
        assert 0 <= metrics[key] <= 1, key
