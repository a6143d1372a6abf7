"""Style transfer: Gram matrix by hand, the HED → torchvision weight conversion, the losses, bad input."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from torch_cookbook.data import images, vgg16_hed
from torch_cookbook.nn.style import VGG16_LAYERS, VGGFeatures, gram_matrix, make_vgg16_features, total_variation
from torch_cookbook.recipes import style


def test_gram_matrix_matches_a_hand_computed_example():
    # two channels over a 1×2 image: F = [[1, 2], [3, 4]]; F Fᵀ = [[5, 11], [11, 25]]; divided by C·H·W = 4
    features = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    expected = torch.tensor([[1.25, 2.75], [2.75, 6.25]])
    assert torch.allclose(gram_matrix(features)[0], expected)
    # and it is the same for every item of a batch, independent of the others
    batch = torch.cat([features, 2 * features])
    assert torch.allclose(gram_matrix(batch)[1], 4 * expected)


def test_style_loss_is_the_mean_of_per_layer_gram_distances_over_their_start_values():
    torch.manual_seed(0)
    features = {"a": torch.rand(1, 2, 3, 3), "b": torch.rand(1, 4, 2, 2)}
    targets = {"a": torch.rand(1, 2, 2), "b": torch.rand(1, 4, 4)}
    start = {"a": 2.0, "b": 0.5}
    by_hand = [((gram_matrix(features[n]) - targets[n]) ** 2).sum() / start[n] for n in ("a", "b")]
    got = style.style_loss(features, targets, start, ["a", "b"])
    assert got.item() == pytest.approx(((by_hand[0] + by_hand[1]) / 2).item())


def test_total_variation_of_a_constant_image_is_zero_and_of_a_step_is_known():
    assert total_variation(torch.ones(1, 3, 5, 5)).item() == 0
    step = torch.zeros(1, 1, 2, 2)
    step[..., 1] = 1.0  # columns 0 | 1: each of the 2 horizontal pairs differs by 1, vertical pairs by 0
    assert total_variation(step).item() == pytest.approx(1.0)


@pytest.fixture(scope="module")
def hed_state():
    return vgg16_hed.convert_hed(vgg16_hed.hed_weights_path())


def test_conversion_maps_a_known_kernel_hwio_to_oihw(hed_state):
    with h5py.File(vgg16_hed.hed_weights_path(), "r") as f:
        kernel = f["block3/layers/conv2d_1/vars/0"][()]  # conv3_2: (3, 3, 256, 256) HWIO
        bias = f["block3/layers/conv2d_1/vars/1"][()]
    converted = hed_state["12.weight"]  # conv3_2 is index 12 of torchvision's vgg16().features
    assert converted.shape == (256, 256, 3, 3)
    for ky, kx, cin, cout in [(0, 0, 0, 0), (0, 2, 5, 17), (2, 1, 200, 3), (1, 1, 255, 254)]:
        assert converted[cout, cin, ky, kx].item() == kernel[ky, kx, cin, cout]
    assert np.array_equal(hed_state["12.bias"].numpy(), bias)


def test_converted_weights_fit_torchvision_vgg16_features(hed_state):
    from torchvision.models.vgg import cfgs, make_layers  # how torchvision builds vgg16().features

    reference = make_layers(cfgs["D"]).state_dict()
    assert {k: v.shape for k, v in hed_state.items()} == {k: v.shape for k, v in reference.items()}
    assert list(make_vgg16_features().state_dict()) == list(reference)
    assert VGG16_LAYERS[12] == "conv3_2" and VGG16_LAYERS[25] == "relu5_1"


def test_first_layer_computes_the_keras_cross_correlation_on_bgr_minus_mean(hed_state):
    """One output pixel of conv1_1 computed by hand from the HWIO kernel equals the converted layer's output."""
    with h5py.File(vgg16_hed.hed_weights_path(), "r") as f:
        kernel, bias = f["block1/layers/conv2d/vars/0"][()], f["block1/layers/conv2d/vars/1"][()]
    torch.manual_seed(0)
    image = torch.rand(1, 3, 6, 6)  # RGB in [0, 1]
    feats = VGGFeatures(hed_state, ["conv1_1"], "bgr255", vgg16_hed.HED_MEAN_BGR)
    out = feats(image)["conv1_1"]
    bgr = image[0].permute(1, 2, 0).numpy()[..., ::-1] * 255.0 - np.array(vgg16_hed.HED_MEAN_BGR)  # HWC, BGR
    y, x = 3, 2
    by_hand = np.einsum("hwi,hwio->o", bgr[y - 1:y + 2, x - 1:x + 2], kernel) + bias
    assert np.allclose(out[0, :, y, x].numpy(), by_hand, rtol=1e-4, atol=1e-3)


def test_a_few_lbfgs_steps_reduce_the_style_loss():
    cfg = style.Config(size=32)
    feats = style.load_vgg(cfg, torch.device("cpu"))
    content, style_img = style.load_pair("chelsea", "immunohistochemistry", 32)
    objective = style.StyleObjective(feats, content, style_img, cfg)
    _, start = objective(content.unsqueeze(0))
    assert start["style_loss"] == pytest.approx(1.0, rel=1e-4)  # normalised to 1 at the content image
    assert start["content_ratio"] == pytest.approx(0.0, abs=1e-6)
    canvas = style.Canvas(content)
    optimizer = style.make_optimizer(cfg, canvas)
    for step in range(5):
        _, evaluated, parts = style.pixel_step(optimizer, canvas, objective, torch.device("cpu"), "off")
        assert 0 <= canvas.image.min() and canvas.image.max() <= 1  # projected back onto valid pixels
        if step == 0:  # each step reports the losses of the image it started from
            assert torch.equal(evaluated, content.unsqueeze(0))
            assert parts["style_loss"] == pytest.approx(start["style_loss"], rel=1e-6)
    assert style.measure(objective, canvas.image.detach())["style_loss"] < 0.8


# ---- the result is the best image seen, measured as saved -------------------------------------------
@pytest.fixture(scope="module")
def small_transfer(tmp_path_factory):
    """Run `transfer` in-process at 32 px; returns a function (overrides) -> (cfg, run, result)."""
    from torch_cookbook.engine.runs import Run

    feats = style.load_vgg(style.Config(), torch.device("cpu"))

    def go(**overrides):
        cfg = style.Config(size=32, steps=8, log_every=1, grid_steps=0, **overrides)
        run = Run(tmp_path_factory.mktemp("style"), "style", cfg, "smoke", torch.device("cpu"))
        torch.manual_seed(0)
        result = style.transfer(cfg, run, feats, "chelsea", "immunohistochemistry", cfg.size, cfg.steps)
        return cfg, run, result

    return go


def _remeasure(cfg, run):
    content, style_img = style.load_pair("chelsea", "immunohistochemistry", cfg.size)
    objective = style.StyleObjective(style.load_vgg(cfg, torch.device("cpu")), content, style_img, cfg)
    image = style.saved_image(run)
    return image, style.measure(objective, image.unsqueeze(0))


def _records(run):
    import json

    return [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]


def test_reported_metrics_are_a_remeasurement_of_the_saved_image(small_transfer):
    cfg, run, result = small_transfer()
    image, again = _remeasure(cfg, run)
    assert 0 <= image.min() and image.max() <= 1  # projected every step: the saved image needs no clamping
    for key in ("style_loss", "style_loss_reduction", "content_ratio"):
        assert result[key] == again[key], key
    # and it is the best image: iteration k logs, at step k + 1, the losses of the image it started from (image k);
    # the last image (k = steps) is measured after the loop
    seen = {r["step"] - 1: (r["train/style_loss"], r["train/content_ratio"]) for r in _records(run) if r["step"]}
    feasible = [s for s, c in seen.values() if c <= cfg.max_content_ratio]
    assert result["style_loss"] <= min(feasible) * (1 + 1e-5)
    if result["result_step"] < cfg.steps:
        assert result["style_loss"] == pytest.approx(seen[result["result_step"]][0], rel=1e-5)


def test_the_result_keeps_the_content_limit_when_later_images_break_it(small_transfer):
    # a tight content limit: the optimiser soon moves past it, so the last image is not the result
    cfg, run, result = small_transfer(max_content_ratio=0.02)
    seen = [r["train/content_ratio"] for r in _records(run)]
    assert max(seen) > 0.02, "the test needs images that break the limit"
    assert result["content_ratio"] <= 0.02
    assert result["result_step"] < cfg.steps
    image, again = _remeasure(cfg, run)
    assert again["content_ratio"] == result["content_ratio"]


@pytest.mark.parametrize("reduction", [0.1, 0.99])
def test_time_to_target_is_set_exactly_when_the_result_meets_both_targets(small_transfer, reduction):
    cfg, _, result = small_transfer(target_reduction=reduction)
    met = result["style_loss_reduction"] >= reduction and result["content_ratio"] <= cfg.max_content_ratio
    assert (result["time_to_target_s"] is not None) == met
    assert met == (reduction == 0.1)  # 8 steps at 32 px reach a 10% reduction, not 99%


# ---- bad input: one line, exit code 2 ---------------------------------------------------------------
def _run_style(cli, tmp_path, *flags):
    return cli("run", "style", "--profile", "smoke", "--runs-root", tmp_path, "--threads", "1", *flags)


def test_missing_image_path_is_a_one_line_error(cli, tmp_path):
    code, _, err = _run_style(cli, tmp_path, "--content", tmp_path / "nope.png")
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1


def test_a_file_that_is_not_an_image_is_a_one_line_error(cli, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    code, _, err = _run_style(cli, tmp_path, "--style", bad)
    assert code == 2 and "is not an image" in err and len(err.strip().splitlines()) == 1


def test_an_image_too_small_for_vgg_is_a_one_line_error(cli, tmp_path):
    tiny = images.save_png(torch.rand(3, 8, 8), tmp_path / "tiny.png")
    code, _, err = _run_style(cli, tmp_path, "--content", tiny)
    assert code == 2 and "at least 16×16" in err and len(err.strip().splitlines()) == 1


def test_missing_hed_weights_file_is_a_one_line_error(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("COOKBOOK_HED_WEIGHTS", str(tmp_path / "missing.weights.h5"))
    code, _, err = _run_style(cli, tmp_path)
    assert code == 2 and "missing.weights.h5 is missing" in err and len(err.strip().splitlines()) == 1


def test_torchvision_weights_absent_without_download_is_a_one_line_error(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    code, _, err = _run_style(cli, tmp_path, "--vgg", "torchvision")
    assert code == 2 and "--download" in err and len(err.strip().splitlines()) == 1


# ---- the adaptive content weight -----------------------------------------------------------------------
def test_content_weight_falls_while_the_content_budget_is_unused_and_is_never_raised():
    cfg = style.Config(max_content_ratio=0.5, content_floor=0.6, adapt_factor=0.5)
    assert style.adapt_content_weight(cfg, 2.0, 0.2) == pytest.approx(1.0)  # 0.2 < 0.3: content budget unused
    assert style.adapt_content_weight(cfg, 2.0, 0.4) == 2.0
    assert style.adapt_content_weight(cfg, 2.0, 0.7) == 2.0  # over the limit: the selection rule handles it


def test_transfer_moves_the_content_weight_every_n_iterations_by_the_rule(small_transfer):
    cfg, run, _ = small_transfer(adapt_every=2, content_floor=0.6, max_content_ratio=0.5)
    logged = {r["step"]: r for r in _records(run) if "train/content_weight" in r}
    weight = cfg.content_weight
    for step in range(1, cfg.steps + 1):
        if step % 2 == 0:  # after iterations 2, 4, ...: the rule, on the ratio of the image just evaluated
            weight = style.adapt_content_weight(cfg, weight, logged[step]["train/content_ratio"])
        assert logged[step]["train/content_weight"] == pytest.approx(weight), step
    assert weight < cfg.content_weight  # the ratio starts at 0, under the floor: the weight fell


def test_a_fixed_weight_is_kept_with_adapt_every_0(small_transfer):
    cfg, run, _ = small_transfer(adapt_every=0)
    assert {r["train/content_weight"] for r in _records(run) if "train/content_weight" in r} == {cfg.content_weight}


def test_damaged_torchvision_vgg_file_is_a_one_line_data_error(tmp_path, monkeypatch):
    from torch_cookbook.errors import DataError

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    hub = tmp_path / "checkpoints" / vgg16_hed.TORCHVISION_FILE
    hub.parent.mkdir()
    hub.write_bytes(b"not a checkpoint" * 64)
    with pytest.raises(DataError, match="is unreadable") as err:
        vgg16_hed.load_torchvision()
    assert "\n" not in str(err.value) and str(hub) in str(err.value)
