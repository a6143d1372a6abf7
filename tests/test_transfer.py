"""Transfer-learning pieces: grey ResNet-18, ImageNet conv1 conversion, freezing, parameter groups, the digit
splits, and one-line errors (including --weights imagenet without cached weights)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from torch_cookbook import recipes
from torch_cookbook.data import mnist_digits
from torch_cookbook.nn.resnet import freeze_backbone, grey_state_dict, replace_head, resnet18_grey
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


def test_lower_backbone_learning_rate_uses_two_parameter_groups():
    cfg = transfer.Config(lr=0.02, backbone_lr_factor=0.1)
    model = resnet18_grey(num_classes=10)
    groups = transfer.make_optimizer(cfg, model, "lowlr").param_groups
    assert [g["lr"] for g in groups] == pytest.approx([0.002, 0.02])
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    assert groups[1]["params"] == list(model.fc.parameters())


def test_each_method_trains_at_its_own_learning_rate():
    cfg = transfer.Config(lr=0.1, scratch_lr=0.03, probe_lr=0.3, backbone_lr_factor=0.1)
    lrs = {m: [g["lr"] for g in transfer.make_optimizer(cfg, resnet18_grey(num_classes=10), m).param_groups]
           for m in transfer.METHODS}
    assert lrs == {"scratch": [0.03], "probe": [0.3], "finetune": [0.1], "lowlr": pytest.approx([0.01, 0.1]),
                   "lpft": [0.1]}  # LP-FT's fine-tuning phase; its probe phase uses head_optimizer at probe_lr


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
    code, _, err = cli("run", "transfer", "--profile", "smoke", "--steps", "5", "--lpft_probe_steps", "3",
                       "--runs-root", tmp_path, "--threads", "1")
    assert code == 0, err
    head, full = 10 * 512 + 10, sum(p.numel() for p in resnet18_grey(num_classes=10).parameters())
    assert sizes[-5:] == [head, head, head, full, full]  # lpft is the last method: 3 probe steps, then all
    run = only_run_dir(tmp_path, "transfer")
    source = load_checkpoint(run / "variants" / "source" / "checkpoints" / "last.pt", "transfer")["state"]["model"]
    tuned = load_checkpoint(run / "variants" / "lpft_10" / "checkpoints" / "last.pt", "transfer")["state"]["model"]
    assert not torch.equal(source["layer1.0.conv1.weight"], tuned["layer1.0.conv1.weight"])  # fine-tuned
    assert not torch.equal(source["bn1.running_mean"], tuned["bn1.running_mean"])  # train mode in phase 2


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
    code, _, err = cli("run", "transfer", "--profile", "smoke", "--weights", "imagenet", "--runs-root", runs)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--weights imagenet" in err and "--download" in err
    assert not runs.exists()


@pytest.mark.parametrize("args, fragment", [
    (["--weights", "coco"], "--weights coco: not one of the allowed values (source, imagenet)"),
    (["--labels_per_class", "50"], "must include 10"),
    (["--labels_per_class", "10", "450"], "--labels_per_class 450: out of range"),
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
    cfg = transfer.Config()
    cpu = torch.device("cpu")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    one = transfer.source_cache_name(cfg, cpu)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    two = transfer.source_cache_name(cfg, cpu)
    assert one != two and one.endswith("cpu1") and two.endswith("cpu2")
    assert transfer.source_cache_name(cfg, torch.device("cuda")).endswith("cuda")  # threads do not matter there
    assert transfer.source_cache_name(transfer.Config(source_seed=1), cpu) != two


def test_lpft_killed_inside_its_probe_phase_resumes_to_the_same_result(smoke_runs, tmp_path):
    """Both LP-FT phases' optimizers and schedules are in the checkpoint, and the phase follows the step."""
    from conftest import assert_same_metrics, only_run_dir, read_summary, run_subprocess
    from torch_cookbook.data.cache import cache_dir
    from torch_cookbook.engine.checkpoint import load_checkpoint

    whole, _ = smoke_runs("transfer")  # the uninterrupted reference, two threads
    cfg = recipes.get("transfer").config("smoke")
    torch.set_num_threads(2)  # the cache key of the source holds the thread count
    cached = (cache_dir() / f"{transfer.source_cache_name(cfg, torch.device('cpu'))}.pt").is_file()
    # Finished steps before LP-FT: the source's (unless cached), then 4 methods x 4; LP-FT is last. SIGKILL at
    # its 2nd step, before that step's save: the last checkpoint is step 1 of its 2-step probe phase.
    crash_at = (0 if cached else cfg.source_steps) + 4 * cfg.steps + 2
    crashed = run_subprocess("run", "transfer", "--profile", "smoke", "--threads", "2", "--runs-root", tmp_path,
                             env={"COOKBOOK_CRASH_AT_CALL": str(crash_at)})
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    run_dir = only_run_dir(tmp_path, "transfer")
    lpft_ckpt = run_dir / "variants" / "lpft_10" / "checkpoints" / "last.pt"
    assert load_checkpoint(lpft_ckpt, "transfer")["step"] == 1 < cfg.lpft_probe_steps  # inside the probe phase
    resumed = run_subprocess("run", "--resume", run_dir, "--threads", "2")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_metrics(read_summary(run_dir)["metrics"], read_summary(whole)["metrics"])
    expected = load_checkpoint(whole / "variants" / "lpft_10" / "checkpoints" / "last.pt", "transfer")["state"]
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
    x = transfer.digit_tensor(load_image(path))
    assert torch.equal(x, transfer.to_float(digit[None])[0])  # the same tensor the model was trained on
    paper = tmp_path / "paper.png"  # dark ink on white, larger, off-centre: how a user's scan looks
    Image.open(path).point(lambda v: 255 - v).resize((112, 112)).save(tmp_path / "big.png")
    canvas = Image.new("L", (220, 160), 255)
    canvas.paste(Image.open(tmp_path / "big.png"), (90, 30))
    canvas.save(paper)
    y = transfer.digit_tensor(load_image(paper))
    assert y.shape == (1, 28, 28)
    ink = (y[0] * transfer.STD + transfer.MEAN).clamp(min=0)
    rows, cols = torch.arange(28.0), torch.arange(28.0)
    centre = ((ink.sum(1) * rows).sum() / ink.sum(), (ink.sum(0) * cols).sum() / ink.sum())
    assert abs(centre[0] - 13.5) < 3 and abs(centre[1] - 13.5) < 3  # inverted, cropped and centred
    assert ink[0].max() < 0.05 and ink[:, 0].max() < 0.05  # black border, as in MNIST


def test_predict_prints_a_digit_and_probabilities_per_image(smoke_runs, cli, tmp_path):
    run_dir, _ = smoke_runs("transfer")
    first, _, _ = digit_png(tmp_path, 0)
    second, _, _ = digit_png(tmp_path, 1)
    code, out, err = cli("predict", "transfer", run_dir, str(first), str(second), "--method", "lpft")
    assert code == 0, err
    lines = out.strip().splitlines()
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("model: ")):]  # after the smoke run's
    assert lines[0].startswith("model: lpft, 10 labels per class")
    for line, path in zip(lines[1:], (first, second)):
        name, rest = line.split(": ", 1)
        assert name == str(path)
        digit, probs = rest.split("  (")
        top = [float(item.split(": ")[1]) for item in probs.rstrip(")").split(", ")]
        assert 0 <= int(digit) <= 9 and top == sorted(top, reverse=True) and 0 < sum(top) <= 1.0 + 1e-3


@pytest.mark.parametrize("extra, fragment", [
    (["--labels", "50"], "--labels 50: this run trained models for 10 labels per class"),
    (["/nonexistent/seven.png"], "image /nonexistent/seven.png does not exist"),
    (["--method", "magic"], "invalid choice: 'magic'"),
])
def test_predict_bad_input_is_one_line(smoke_runs, cli, tmp_path, extra, fragment):
    run_dir, _ = smoke_runs("transfer")
    path, _, _ = digit_png(tmp_path)
    code, _, err = cli("predict", "transfer", run_dir, str(path), *extra)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and fragment in err, err
