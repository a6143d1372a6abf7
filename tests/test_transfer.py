"""Transfer-learning pieces: grey ResNet-18, ImageNet conv1 conversion, freezing, learning rates, the digit
splits, and one-line errors (including --weights imagenet without cached weights); the Fashion-MNIST study's paired
label draws and its pooled paired comparison (`across_seeds`); EfficientNet-Lite0 and the user's own class folders
of images (--data): a run -> eval -> predict round trip, the splits, bad images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision

from torch_cookbook import recipes
from torch_cookbook.data import fashion_mnist, mnist_digits, transfer_data, transfer_draws
from torch_cookbook.errors import DataError
from torch_cookbook.nn.backbones import freeze_backbone, replace_head
from torch_cookbook.nn.resnet import grey_state_dict, resnet18_grey
from torch_cookbook.recipes import transfer


def test_grey_resnet18_shapes():
    model = resnet18_grey(num_classes=10).eval()
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)
    head = replace_head(model, 7)
    assert model.fc is head and model(torch.zeros(2, 1, 28, 28)).shape == (2, 7)


def test_summed_rgb_kernels_give_the_rgb_models_output_on_grey_images():
    """The conversion used for ImageNet weights: a grey image through the grey model equals the same image
    repeated over RGB through the original model (tested on random weights, nothing downloaded)."""
    torch.manual_seed(0)
    rgb = torchvision.models.resnet18(num_classes=1000).eval()
    grey = resnet18_grey(num_classes=1000)
    grey.load_state_dict(grey_state_dict(rgb.state_dict()))
    grey.eval()
    x = torch.rand(2, 1, 28, 28)
    assert torch.allclose(grey(x), rgb(x.repeat(1, 3, 1, 1)), atol=1e-4)


def test_linear_probe_changes_only_the_head_and_keeps_bn_statistics():
    torch.manual_seed(0)
    cfg = transfer.Config(seed=0)
    model = resnet18_grey(num_classes=10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = transfer.make_optimizer(cfg, model, "probe")
    model.eval()  # what the recipe does for the probe: BatchNorm's running statistics stay put
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"fc.weight", "fc.bias"}


def test_freeze_alone_does_not_freeze_batchnorm_statistics():
    """The erratum the probe avoids: requires_grad=False, but train mode still moves running_mean."""
    model = resnet18_grey(num_classes=10)
    freeze_backbone(model)
    mean = model.bn1.running_mean.clone()
    model.train()
    model(torch.randn(8, 1, 28, 28) + 3)
    assert not torch.equal(mean, model.bn1.running_mean)


def test_each_method_trains_at_its_own_learning_rate():
    cfg = transfer.Config(lr=0.1, scratch_lr=0.03, probe_lr=0.3, resnet18_scratch_lr=0.05)
    lrs = {m: [g["lr"] for g in transfer.make_optimizer(cfg, resnet18_grey(num_classes=10), m).param_groups]
           for m in transfer.METHODS}
    assert lrs == {"scratch": [0.03], "probe": [0.3], "finetune": [0.1], "lpft": [0.1],  # LP-FT's fine-tuning
                   "scratch_resnet18": [0.05]}  # phase; its probe phase uses head_optimizer at probe_lr
    assert transfer.make_optimizer(transfer.Config(), resnet18_grey(), "scratch_resnet18").param_groups[0]["lr"] == \
        transfer.BACKBONE_DEFAULTS["resnet18"]["scratch_lr"]


def test_zero_rates_and_size_are_the_backbones_own_whatever_the_flags_order():
    """The CLI builds a config from the defaults (resnet18's) and then applies --backbone: 0 must still mean
    lite0's values, resolved when used."""
    from torch_cookbook.nn.backbones import Lite0Classifier

    cfg = recipes.get("transfer").config("smoke", {"backbone": "lite0", "task": "digits"})
    assert cfg.lr == 0 and cfg.effective("image_size") == transfer.BACKBONE_DEFAULTS["lite0"]["image_size"]
    model = Lite0Classifier(3, pretrained=False)
    lrs = {m: [g["lr"] for g in transfer.make_optimizer(cfg, model, m).param_groups] for m in ("scratch", "finetune")}
    lite0 = transfer.BACKBONE_DEFAULTS["lite0"]
    assert lrs == {"scratch": [lite0["scratch_lr"]], "finetune": [lite0["lr"]]}
    assert transfer.head_optimizer(cfg, model).param_groups[0]["lr"] == lite0["probe_lr"]
    digits = recipes.get("transfer").config("smoke", {"task": "digits"})  # auto: resnet18 for the digits, as before
    assert digits.network == "resnet18" and digits.effective("lr") == 0.05
    assert recipes.get("transfer").config("smoke").network == "lite0"  # ... and lite0 for Fashion-MNIST


def test_lpft_trains_the_head_alone_first_then_everything(cli, tmp_path, monkeypatch):
    from conftest import only_run_dir
    from torch_cookbook.engine import trainer
    from torch_cookbook.engine.checkpoint import load_checkpoint

    sizes = []  # parameters in the optimizer of every training step, in order
    real_update = trainer.apply_update

    def spy(loss, optimizer, *args, **kwargs):
        sizes.append(sum(p.numel() for g in optimizer.param_groups for p in g["params"]))
        return real_update(loss, optimizer, *args, **kwargs)

    monkeypatch.setattr(trainer, "apply_update", spy)  # every Trainer.backward goes through it
    code, _, err = cli("run", "transfer", "--profile", "smoke", "--task", "digits", "--steps", "5",
                       "--lpft_probe_steps", "3", "--runs-root", tmp_path, "--threads", "1")
    assert code == 0, err
    head, full = 10 * 512 + 10, sum(p.numel() for p in resnet18_grey(num_classes=10).parameters())
    assert sizes[-5:] == [head, head, head, full, full]  # lpft is the last method: 3 probe steps, then all
    run = only_run_dir(tmp_path, "transfer")
    source = load_checkpoint(run / "variants" / "source" / "checkpoints" / "last.pt", "transfer")["state"]["model"]
    tuned = load_checkpoint(run / "variants" / "lpft_10" / "checkpoints" / "last.pt", "transfer")["state"]["model"]
    assert not torch.equal(source["layer1.0.conv1.weight"], tuned["layer1.0.conv1.weight"])  # fine-tuned
    assert not torch.equal(source["bn1.running_mean"], tuned["bn1.running_mean"])  # train mode in phase 2
    digit, _, _ = digit_png(tmp_path)  # the digits study's predict: a digit and its probabilities
    code, out, err = cli("predict", "transfer", run, str(digit), "--method", "lpft")
    line = out.strip().splitlines()[-1]
    assert code == 0 and line.startswith(f"{digit}: ") and 0 <= int(line.split(": ")[1].split("  (")[0]) <= 9, err


def test_lpft_probe_steps_must_leave_fine_tuning_steps(cli, tmp_path):
    code, _, err = cli("run", "transfer", "--profile", "smoke", "--lpft_probe_steps", "4", "--runs-root", tmp_path)
    assert code == 2 and "--lpft_probe_steps 4: must be below --steps 4" in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_digit_splits_are_balanced_disjoint_and_nested():
    images, labels = mnist_digits.load()
    assert images.shape == (5000, 28, 28) and images.dtype == torch.uint8
    assert torch.equal(torch.bincount(labels), torch.full((10,), 500))
    train10, test = mnist_digits.split(labels, 10, 100, seed=1)
    train50, test_again = mnist_digits.split(labels, 50, 100, seed=1)
    _, test_other_seed = mnist_digits.split(labels, 10, 100, seed=2)
    assert torch.equal(torch.bincount(labels[train10]), torch.full((10,), 10))
    assert torch.equal(torch.bincount(labels[test]), torch.full((10,), 100))
    assert not set(train50.tolist()) & set(test.tolist())
    assert set(train10.tolist()) <= set(train50.tolist())
    assert torch.equal(test, test_again) and torch.equal(test, test_other_seed)


def test_imagenet_weights_missing_is_one_line_and_writes_nothing(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))
    runs = tmp_path / "runs"
    code, _, err = cli("run", "transfer", "--profile", "smoke", "--task", "digits", "--weights", "imagenet",
                       "--runs-root", runs)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--weights imagenet" in err and "--download" in err
    assert not runs.exists()


@pytest.mark.parametrize("args, fragment", [
    (["--weights", "coco"], "--weights coco: not one of the allowed values (source, imagenet)"),
    (["--labels_per_class", "50"], "must include 10"),
    (["--task", "digits", "--labels_per_class", "10", "495"], "--labels_per_class 495 + --test_per_class 10: more"),
    (["--image_size", "8"], "--image_size 8: use 0 (the backbone's own) or at least 16"),
    (["--backbone", "vgg"], "--backbone vgg: not one of the allowed values (auto, resnet18, lite0)"),
    (["--backbone", "resnet18"], "--task fashion --backbone resnet18 --weights source: the source would be"),
    (["--draws", "6"], "--draws"),
])
def test_bad_input_is_one_line(cli, tmp_path, args, fragment):
    code, _, err = cli("run", "transfer", "--profile", "smoke", "--runs-root", tmp_path, *args)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_damaged_cached_imagenet_weights_are_a_one_line_error(tmp_path, monkeypatch):
    from torch_cookbook.errors import ConfigError
    from torch_cookbook.nn.resnet import imagenet_weights_path, load_imagenet_resnet18

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    path = imagenet_weights_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"half a download" * 100)
    with pytest.raises(ConfigError, match="could not load") as err:
        load_imagenet_resnet18()
    assert "\n" not in str(err.value) and str(path) in str(err.value)


def test_source_cache_is_kept_per_cpu_thread_count(monkeypatch):
    cfg = transfer.Config(task="digits")
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    one = transfer_data.source_cache_name(cfg, cpu)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    two = transfer_data.source_cache_name(cfg, cpu)
    assert one != two and one.endswith("cpu1") and two.endswith("cpu2")
    assert transfer_data.source_cache_name(cfg, torch.device("cuda")).endswith("cuda")  # threads do not matter there
    assert transfer_data.source_cache_name(transfer.Config(task="digits", source_seed=1), cpu) != two


def test_lpft_killed_inside_its_probe_phase_resumes_to_the_same_result(smoke_runs, tmp_path):
    """Both LP-FT phases' optimizers and schedules are in the checkpoint, and the phase follows the step."""
    from conftest import assert_same_metrics, only_run_dir, read_summary, run_subprocess
    from torch_cookbook.engine.checkpoint import load_checkpoint

    whole, _ = smoke_runs("transfer")  # the uninterrupted reference (Fashion-MNIST, Lite0), two threads
    cfg = recipes.get("transfer").config("smoke")
    # Finished steps before LP-FT: 3 methods x 4 (no source to pre-train for Lite0). SIGKILL at its 2nd step,
    # before that step's save: the last checkpoint is step 1 of its 2-step probe phase.
    assert transfer.methods(cfg).index("lpft") == 3
    crash_at = 3 * cfg.steps + 2
    crashed = run_subprocess("run", "transfer", "--profile", "smoke", "--threads", "2", "--runs-root", tmp_path,
                             env={"COOKBOOK_CRASH_AT_CALL": str(crash_at)})
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    run_dir = only_run_dir(tmp_path, "transfer")
    lpft_ckpt = run_dir / "variants" / "lpft_10_draw0" / "checkpoints" / "last.pt"
    assert load_checkpoint(lpft_ckpt, "transfer")["step"] == 1 < cfg.lpft_probe_steps  # inside the probe phase
    resumed = run_subprocess("run", "--resume", run_dir, "--threads", "2")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_metrics(read_summary(run_dir)["metrics"], read_summary(whole)["metrics"])
    expected = load_checkpoint(whole / "variants" / "lpft_10_draw0" / "checkpoints" / "last.pt", "transfer")["state"]
    got = load_checkpoint(lpft_ckpt, "transfer")["state"]
    assert all(torch.equal(got["model"][k], expected["model"][k]) for k in expected["model"])
    for name in ("head_optimizer", "optimizer"):  # both phases' momentum buffers, bit for bit
        buffers = [(s["momentum_buffer"], expected[name]["state"][i]["momentum_buffer"])
                   for i, s in got[name]["state"].items()]
        assert buffers and all(torch.equal(a, b) for a, b in buffers), name


def digit_png(tmp_path, index: int = 0):
    import numpy as np
    from PIL import Image

    images, labels = mnist_digits.load()
    path = tmp_path / f"digit{index}.png"
    Image.fromarray(images[index].numpy().astype(np.uint8)).save(path)
    return path, images[index], int(labels[index])


def test_a_saved_28px_digit_is_exactly_the_training_input_and_paper_digits_are_inverted(tmp_path):
    from PIL import Image

    from torch_cookbook.data.images import load_image

    path, digit, _ = digit_png(tmp_path)
    x = transfer_data.digit_image(load_image(path))
    assert torch.equal(x, digit[None])  # the same pixels the model was trained on
    paper = tmp_path / "paper.png"  # dark ink on white, larger, off-centre: how a user's scan looks
    Image.open(path).point(lambda v: 255 - v).resize((112, 112)).save(tmp_path / "big.png")
    canvas = Image.new("L", (220, 160), 255)
    canvas.paste(Image.open(tmp_path / "big.png"), (90, 30))
    canvas.save(paper)
    y = transfer_data.digit_image(load_image(paper))
    assert y.shape == (1, 28, 28) and y.dtype == torch.uint8
    ink = y[0].float() / 255
    rows, cols = torch.arange(28.0), torch.arange(28.0)
    centre = ((ink.sum(1) * rows).sum() / ink.sum(), (ink.sum(0) * cols).sum() / ink.sum())
    assert abs(centre[0] - 13.5) < 3 and abs(centre[1] - 13.5) < 3  # inverted, cropped and centred
    assert ink[0].max() < 0.05 and ink[:, 0].max() < 0.05  # black border, as in MNIST


def clothes_png(tmp_path, index: int = 0):
    from PIL import Image

    path = tmp_path / f"clothes{index}.png"
    Image.fromarray(fashion_mnist.load().test_images[index].numpy()).save(path)
    return path


def test_predict_prints_a_class_and_probabilities_per_image(smoke_runs, cli, tmp_path):
    run_dir, _ = smoke_runs("transfer")
    first, second = clothes_png(tmp_path, 0), clothes_png(tmp_path, 1)
    code, out, err = cli("predict", "transfer", run_dir, str(first), str(second), "--method", "lpft")
    assert code == 0, err
    lines = out.strip().splitlines()
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("model: ")):]  # after the smoke run's
    assert lines[0].startswith("model: lpft, 10 labels per class") and "lpft_10_draw0" in lines[0]
    for line, path in zip(lines[1:], (first, second)):
        name, rest = line.split(": ", 1)
        assert name == str(path)
        label, probs = rest.split("  (")
        top = [float(item.split(": ")[1]) for item in probs.rstrip(")").split(", ")]
        assert label in fashion_mnist.CLASSES and top == sorted(top, reverse=True) and 0 < sum(top) <= 1.0 + 1e-3
    code, out, err = cli("predict", "transfer", run_dir, str(first), "--method", "scratch_resnet18")  # 28 px
    assert code == 0 and out.strip().splitlines()[-1].split(": ")[1].split("  (")[0] in fashion_mnist.CLASSES, err


@pytest.mark.parametrize("extra, fragment", [
    (["--labels", "50"], "--labels 50: this run trained models for 10 labels per class"),
    (["/nonexistent/seven.png"], "image /nonexistent/seven.png does not exist"),
    (["--method", "magic"], "invalid choice: 'magic'"),
])
def test_predict_bad_input_is_one_line(smoke_runs, cli, tmp_path, extra, fragment):
    run_dir, _ = smoke_runs("transfer")
    code, _, err = cli("predict", "transfer", run_dir, str(clothes_png(tmp_path)), *extra)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and fragment in err, err


# ---- your own images: class folders (--data), EfficientNet-Lite0 ----------------------------------------
CLASSES = ("bright", "dark", "stripes")
USER_ARGS = ("run", "transfer", "--profile", "smoke", "--backbone", "lite0", "--image_size", "32", "--threads", "1")


def write_images(root, per_class=15):
    """Class folders of small images in three easy classes, of mixed sizes: grey PNGs and RGB JPEGs."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            h, w = 20 + 4 * (i % 3), 24 + 6 * (i % 4)
            base = {"bright": 200, "dark": 40, "stripes": 0}[name]
            image = np.clip(base + rng.normal(0, 20, (h, w)), 0, 255)
            if name == "stripes":
                image[::4] = 255
            if i % 2:
                rgb = np.stack([image, image * 0.8, image * 0.6], -1).astype(np.uint8)
                Image.fromarray(rgb).save(root / name / f"{i:02d}.jpg")
            else:
                Image.fromarray(image.astype(np.uint8)).save(root / name / f"{i:02d}.png")
    return root


def user_cfg(data, **kw):
    return transfer.Config(**{"data": str(data), "backbone": "lite0", "image_size": 32, "labels_per_class": (10,),
                              **kw})


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    from conftest import only_run_dir
    from torch_cookbook.cli import main

    root = tmp_path_factory.mktemp("transfer_user")
    data = write_images(root / "images")
    assert main([*USER_ARGS, "--data", str(data), "--runs-root", str(root / "runs")]) == 0
    return only_run_dir(root / "runs", "transfer"), data


def test_user_images_run_evaluate_and_predict_with_class_names(user_run, cli):
    from torch_cookbook.data.userdata import fingerprint

    run_dir, data = user_run
    metrics = json.loads((run_dir / "summary.json").read_text())["metrics"]
    assert "source_accuracy" not in metrics  # lite0 starts from ImageNet: no Fashion-MNIST pre-training
    arms = ("scratch", "probe", "finetune", "lpft")  # no ResNet-18 scratch arm beside Lite0's outside Fashion-MNIST
    assert {f"{m}_10_val_accuracy" for m in arms} <= metrics.keys() and "scratch_resnet18_10_accuracy" not in metrics
    best = list(transfer.METHODS)[metrics["best_method_chosen"]]
    assert metrics["best_val_accuracy"] == max(metrics[f"{m}_10_val_accuracy"] for m in arms)
    assert metrics["best_accuracy"] == metrics[f"{best}_10_accuracy"]
    assert json.loads((run_dir / "data.json").read_text())["data"] == {**fingerprint(data), "columns": {}}
    code, out, err = cli("eval", run_dir)
    assert code == 0, err
    for key, value in json.loads(out)["metrics"].items():
        assert value == pytest.approx(metrics[key], abs=1e-6), key
    images = [data / "stripes" / "00.png", data / "bright" / "01.jpg"]
    code, out, err = cli("predict", "transfer", run_dir, *images)
    assert code == 0, err
    lines = out.strip().splitlines()[-3:]
    assert lines[0].startswith(f"model: {best}, 10 labels per class")  # the method chosen on validation
    for line, path in zip(lines[1:], images):
        name, rest = line.split(": ", 1)
        assert name == str(path) and rest.split("  (")[0] in CLASSES
        assert [part.split(": ")[0] for part in rest.split("  (")[1].rstrip(")").split(", ")][0] in CLASSES


def test_cached_lite0_features_are_what_the_head_reads_in_eval_mode(user_run):
    """The probe trains the head on features computed once; the saved model must give the same logits."""
    from torch_cookbook.engine.config import from_dict
    from torch_cookbook.engine.runs import Run, open_run_dir
    from torch_cookbook.nn.backbones import head, lite0_imagenet_features

    run_dir, data = user_run
    cfg = from_dict(transfer.Config, open_run_dir(run_dir)["config"])
    target = transfer_data.target_images(cfg)
    run = Run(run_dir, "transfer", cfg, "smoke", torch.device("cpu"))
    run.is_main = False
    features = lite0_imagenet_features(target.images, torch.device("cpu"))
    train = target.train[10]
    assert features.abs().sum(1).min() > 0 and len(train) == 30 and len(features) == len(target.images)
    model = transfer.load_target_model(cfg, run, "probe", 10, len(CLASSES), None)
    with torch.no_grad():
        full = model(transfer_data.to_input(target.images[train[:6]], "lite0"))
        torch.testing.assert_close(head(model)(features[train[:6]]), full, atol=1e-4, rtol=1e-4)


def test_user_images_are_read_at_the_backbones_size_and_split_fixed_across_seeds(tmp_path):
    data = write_images(tmp_path / "images", per_class=20)
    grey = transfer_data.target_images(transfer.Config(data=str(data), labels_per_class=(10,)))
    assert grey.images.shape[1:] == (1, 28, 28) and grey.images.dtype == torch.uint8  # resnet18: grey, 28 px
    rgb = transfer_data.target_images(user_cfg(data, labels_per_class=(10, 12), seed=1))
    assert rgb.images.shape[1:] == (3, 32, 32) and rgb.classes == CLASSES
    assert torch.equal(torch.bincount(rgb.labels[rgb.train[12]]), torch.full((3,), 12))
    assert set(rgb.train[10].tolist()) <= set(rgb.train[12].tolist())  # nested label budgets
    assert not set(rgb.train[12].tolist()) & (set(rgb.val.tolist()) | set(rgb.test.tolist()))
    other = transfer_data.target_images(user_cfg(data, labels_per_class=(10, 12), seed=2))
    files = lambda t, idx: sorted(str(t.files[i]) for i in idx)  # noqa: E731
    assert files(rgb, rgb.test) == files(other, other.test) and files(rgb, rgb.val) == files(other, other.val)
    assert files(rgb, rgb.train[10]) != files(other, other.train[10])  # --seed draws the labelled images


def test_split_folders_are_used_and_val_is_held_out_of_train(tmp_path):
    write_images(tmp_path / "train", per_class=16)
    write_images(tmp_path / "test", per_class=3)
    listed, codes = transfer_data.listing(tmp_path)
    assert listed.classes == CLASSES and np.bincount(codes).tolist() == [48, 0, 9]
    pool, val, test = transfer_data.split(listed.labels, codes, 0.1, 0.2)
    assert len(test) == 9 and len(val) == 6 and len(pool) == 42  # round(0.1 * 16) of each class's train images
    (tmp_path / "test" / "blurry").mkdir()
    (tmp_path / "test" / "stripes" / "00.png").rename(tmp_path / "test" / "blurry" / "00.png")
    with pytest.raises(DataError, match=r"test/blurry: class 'blurry' is not in .*train; give it training images"):
        transfer_data.listing(tmp_path)


def truncate(path):
    path.write_bytes(path.read_bytes()[:60])


@pytest.mark.parametrize("damage, fragment", [
    (lambda d: truncate(d / "dark" / "04.png"), "dark/04.png: not a readable image"),
    (lambda d: (d / "bright" / "02.png").write_text("not a picture"), "bright/02.png: not a readable image"),
    (lambda d: (d / "dark" / "notes.txt").write_text("x"), "notes.txt: unknown extension '.txt' in class folder"),
    (lambda d: [p.unlink() for p in list((d / "dark").iterdir())[:6]],
     "dark: 9 images, 6 of them for training after the val/test split; --labels_per_class 10 needs 10"),
    (lambda d: [__import__("shutil").rmtree(d / c) for c in ("dark", "stripes")], "one class folder ('bright')"),
])
def test_bad_user_images_are_refused_in_one_line_naming_the_file(tmp_path, damage, fragment):
    transfer_data.user_images.cache_clear()
    data = write_images(tmp_path / "images")
    damage(data)
    with pytest.raises(DataError) as err:
        transfer.check_launch(user_cfg(data))
    assert fragment in str(err.value) and "\n" not in str(err.value) and str(data) in str(err.value)


def test_bad_user_images_write_no_run_directory(tmp_path, cli):
    data = write_images(tmp_path / "images")
    truncate(data / "stripes" / "06.png")
    code, _, err = cli(*USER_ARGS, "--data", data, "--runs-root", tmp_path / "runs")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "stripes/06.png: not a readable image" in err
    assert not (tmp_path / "runs").exists()


# ---- the Fashion-MNIST study: paired label draws, the comparison pooled over runs ---------------------------
def test_fashion_draws_are_paired_distinct_and_apart_from_validation_and_test():
    draws = transfer_draws.fashion_draws((10, 20), seed=1, draws=2, val_per_class=5, test_per_class=3, size=32)
    assert [t.draw for t in draws] == [5, 6]  # a run with --seed s owns draws 5s .. 5s+4
    first, second = draws
    assert first.images is second.images and torch.equal(first.val, second.val)  # one set of images, fixed splits
    assert first.images.shape[1:] == (1, 32, 32) and first.native.shape[1:] == (1, 28, 28)
    for t in draws:
        assert torch.equal(torch.bincount(t.labels[t.train[20]]), torch.full((10,), 20))
        assert set(t.train[10].tolist()) <= set(t.train[20].tolist())  # nested budgets
        assert not set(t.train[20].tolist()) & (set(t.val.tolist()) | set(t.test.tolist()))
        # every arm reads the same labelled images: Lite0's resized ones are the ResNet-18's originals, enlarged
        resized = transfer_data.resize(t.pixels("resnet18")[t.train[10]].numpy(), 32)
        assert np.array_equal(resized, t.pixels("lite0")[t.train[10]].numpy())
    assert set(first.train[20].tolist()) != set(second.train[20].tolist())  # draws differ
    data = fashion_mnist.load()
    chosen, _ = transfer_draws.fixed_per_class(data.test_labels, 3, transfer_draws.SPLIT_SEED)
    assert torch.equal(first.native[first.test, 0], data.test_images[chosen])  # 3 of each class of the test set
    other = transfer_draws.fashion_draws((10,), seed=2, draws=1, val_per_class=5, test_per_class=3, size=32)[0]
    assert torch.equal(other.native[other.val], first.native[first.val])  # the same validation images every seed
    assert torch.equal(other.native[other.test], first.native[first.test])


def fake_run(root, name, draws):
    """A run directory whose draws.json holds, per draw, (val, test) accuracy of each arm at 10 labels."""
    arms = ("scratch", "scratch_resnet18", "probe", "finetune", "lpft")
    rows = [{"draw": j, "results": {"10": {a: {"val_accuracy": v, "accuracy": t} for a, (v, t) in zip(arms, r)}}}
            for j, r in draws]
    (root / name).mkdir()
    (root / name / transfer_draws.DRAWS_FILE).write_text(json.dumps({"seed": 0, "draws": rows}))
    return root / name


def test_across_seeds_pools_the_draws_with_choices_on_validation(tmp_path):
    # Per draw (val, test) for scratch, scratch_resnet18, probe, finetune, lpft; validation picks the arms.
    a = fake_run(tmp_path, "a", [(0, [(.6, .60), (.7, .65), (.5, .9), (.8, .70), (.7, .75)]),    # 0.70 - 0.65
                                 (1, [(.7, .62), (.6, .70), (.9, .72), (.5, .80), (.6, .90)])])   # 0.72 - 0.62
    b = fake_run(tmp_path, "b", [(5, [(.6, .50), (.5, .60), (.6, .60), (.7, .55), (.9, .65)]),    # 0.65 - 0.50
                                 (6, [(.5, .70), (.6, .55), (.7, .70), (.6, .90), (.6, .80)])])   # 0.70 - 0.55
    out = transfer.across_seeds([a, b])
    differences = [0.05, 0.10, 0.15, 0.15]
    mean = sum(differences) / 4
    sd = (sum((d - mean) ** 2 for d in differences) / 3) ** 0.5
    half = 3.182446305 * sd / 2  # t(0.975, 3 degrees of freedom) * sd / sqrt(4)
    assert out["pretrained_minus_scratch_10_mean"] == pytest.approx(mean)
    assert out["pretrained_minus_scratch_10_ci_low"] == pytest.approx(mean - half)
    assert out["pretrained_minus_scratch_10_ci_high"] == pytest.approx(mean + half)
    assert out["pretrained_minus_scratch_10_draws"] == 4
    assert out["finetune_10_accuracy"] == pytest.approx((.70 + .80 + .55 + .90) / 4)
    assert out["best_scratch_10_accuracy"] == pytest.approx((.65 + .62 + .50 + .55) / 4)
    assert out["pretrained_vs_scratch_10_mean"] == pytest.approx((.10 + .10 + .15 + 0.0) / 4)  # Lite0's own scratch
    met = {t.metric: t.met(out) for t in transfer.targets}
    assert met == {"pretrained_minus_scratch_10_mean": True, "pretrained_minus_scratch_10_ci_low": True}


@pytest.mark.parametrize("runs, fragment", [
    (lambda r: [fake_run(r, "a", [(0, [(.5, .5)] * 5)])], "1 draw(s) in 1 run(s): the paired t-interval needs"),
    (lambda r: [fake_run(r, "a", [(0, [(.5, .5)] * 5)]), fake_run(r, "b", [(0, [(.5, .5)] * 5)])],
     "draw 0 is also in"),
    (lambda r: [(r / "empty").mkdir() or r / "empty"], "no draws.json; not a run of the Fashion-MNIST study"),
])
def test_across_seeds_refuses_too_few_or_repeated_draws_in_one_line(tmp_path, runs, fragment):
    with pytest.raises(DataError) as err:
        transfer.across_seeds(runs(tmp_path))
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_smoke_run_saves_its_draws_and_the_paired_difference(smoke_runs):
    run_dir, _ = smoke_runs("transfer")
    metrics = json.loads((run_dir / "summary.json").read_text())["metrics"]
    saved = json.loads((run_dir / transfer_draws.DRAWS_FILE).read_text())
    assert saved["seed"] == 0 and [d["draw"] for d in saved["draws"]] == [0]
    assert set(saved["draws"][0]["results"]["10"]) == set(transfer.methods(transfer.Config()))
    assert metrics["pretrained_minus_scratch_10_mean"] == pytest.approx(
        metrics["best_pretrained_10_accuracy"] - metrics["best_scratch_10_accuracy"])
