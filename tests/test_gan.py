"""The gan recipe: DCGAN and MLP GAN shapes, the D and G steps, FID against a reference formula, k-NN precision and
recall on a hand-computed case, the calibration ladder's degradations, the smoke run (both GANs, the ladder, the
target's ratio), predict and its bad input; a folder of your own images (--data): Lite0 FID, run -> eval -> predict,
bad folders refused in one line."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from scipy import linalg

from conftest import comparable, only_run_dir, read_summary
from torch_cookbook.nn.fid import fids
from torch_cookbook.nn.fmnist_features import FashionClassifier, FeatureExtractor
from torch_cookbook.nn.gan import Discriminator, Generator, MLPDiscriminator, MLPGenerator, dcgan_init
from torch_cookbook.nn.sample_quality import gaussian_blur, knn_precision_recall, knn_radii, pixel_noise
from torch_cookbook.recipes import gan


@pytest.fixture(scope="module")
def smoke_run(smoke_runs):
    return smoke_runs("gan")[0]  # the session's smoke run, shared with the contract tests (these only read it)


def test_generator_and_discriminator_shapes():
    torch.manual_seed(0)
    g, d = Generator(latent_dim=10, width=4), Discriminator(width=4)
    g.apply(dcgan_init)
    images = g(torch.randn(5, 10))
    assert images.shape == (5, 1, 28, 28)
    assert images.min() >= -1 and images.max() <= 1  # tanh output, like the data scaled to [-1, 1]
    assert d(images).shape == (5,)  # one logit per image


@pytest.mark.parametrize("size, channels", [(28, 1), (32, 3)])
def test_mlp_gan_shapes(size, channels):
    g, d = MLPGenerator(latent_dim=10, width=8, image_size=size, channels=channels), MLPDiscriminator(8, size, channels)
    images = g(torch.randn(5, 10))
    assert images.shape == (5, channels, size, size) and images.abs().max() <= 1
    assert d(images).shape == (5,)
    assert [m.out_features for m in g.net if isinstance(m, torch.nn.Linear)][:4] == [8, 16, 32, 64]  # w, 2w, 4w, 8w
    assert not any(isinstance(m, torch.nn.Conv2d) for m in [*g.modules(), *d.modules()])  # fully connected


def test_knn_precision_recall_on_a_hand_computed_case():
    """Real points on the x axis, k = 2: each real ball reaches its second-nearest other real point."""
    real = torch.tensor([[0.0, 0], [1, 0], [3, 0], [10, 0]])
    assert knn_radii(real, k=2).tolist() == [3, 2, 3, 9]
    # Three fakes inside the real balls; (0, -21) outside every one (its nearest real point is 21 away, radii <= 9).
    fake = torch.tensor([[0.5, 0], [1.5, 0], [2.5, 0], [0, -21]])
    # Fake radii (k = 2): 2, 1, 2 and 21.05 for the outlier, whose second-nearest fake is (1.5, 0). Real (10, 0) is
    # 7.5 from (2.5, 0) (radius 2) and 23.3 from (0, -21) (radius 21.05): no fake ball covers it.
    precision, recall = knn_precision_recall(real, fake, k=2)
    assert (precision, recall) == (0.75, 0.75)
    assert knn_precision_recall(real, torch.tensor([[6.0, 0], [7, 0], [20, 20]]), k=1)[0] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="k = 4"):
        knn_radii(real, k=4)  # the k-th *other* point must exist


def test_ladder_degradations_are_seeded_clipped_and_blur_keeps_mass():
    images = torch.rand(3, 1, 28, 28)
    noisy = pixel_noise(images, 0.2, seed=5)
    assert torch.equal(noisy, pixel_noise(images, 0.2, seed=5)) and 0 <= noisy.min() and noisy.max() <= 1
    assert torch.allclose(gaussian_blur(torch.full((1, 1, 9, 9), 0.7), 1.0), torch.full((1, 1, 9, 9), 0.7))
    dot = torch.zeros(1, 3, 15, 15)
    dot[:, :, 7, 7] = 1
    spread = gaussian_blur(dot, 1.0)
    assert spread.sum().item() == pytest.approx(3.0) and spread[0, 0, 7, 7] < 0.2  # each channel: mass kept, spread


def test_non_saturating_loss_has_the_larger_gradient_where_g_is_bad():
    """Where D confidently rejects a fake (D(G(z)) ≈ 0), -log D still pushes G; log(1 - D) barely does."""
    logit = torch.tensor([-6.0], requires_grad=True)
    non_saturating = torch.nn.functional.binary_cross_entropy_with_logits(logit, torch.ones(1))
    (grad_ns,) = torch.autograd.grad(non_saturating, logit)
    minimax = torch.log1p(-torch.sigmoid(logit)).sum()  # G minimises log(1 - D(G(z)))
    (grad_mm,) = torch.autograd.grad(minimax, logit)
    assert grad_ns.abs().item() > 100 * grad_mm.abs().item()


def params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def test_d_step_moves_only_d_and_g_step_moves_only_g(tmp_path):
    from torch_cookbook.engine.runs import Run
    from torch_cookbook.engine.trainer import Trainer

    cfg = gan.Config(**gan.profiles["smoke"])
    g, d = gan.build_models(cfg, torch.device("cpu"))
    opt_g, opt_d = torch.optim.Adam(g.parameters(), lr=1e-2), torch.optim.Adam(d.parameters(), lr=1e-2)
    trainer = Trainer(Run(tmp_path, "gan", cfg, "smoke", torch.device("cpu")), 1, g=g, d=d, opt_g=opt_g, opt_d=opt_d)
    real = torch.rand(8, 1, 28, 28) * 2 - 1
    fake = g(torch.randn(8, cfg.latent_dim))
    g0, d0 = params(g), params(d)

    d_loss, d_real, d_fake = gan.d_step(trainer, d, opt_d, None, real, fake, "off")
    assert same(params(g), g0) and all(p.grad is None for p in g.parameters())  # the fakes were detached
    assert not same(params(d), d0)
    expected = torch.nn.functional.binary_cross_entropy_with_logits
    assert d_loss.item() == pytest.approx((expected(d_real, torch.ones(8)) + expected(d_fake, torch.zeros(8))).item())

    d1 = params(d)
    gan.g_step(trainer, d, opt_g, None, fake, "off")
    assert same(params(d), d1)  # G's loss reaches D's gradients, but only G's optimizer steps
    assert not same(params(g), g0)


def _reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance with scipy's matrix square root: ||mu_a - mu_b||² + Tr(Sa + Sb - 2 (Sa Sb)^½)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(sa @ sb).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sa + sb - 2 * covmean))


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")  # random features: near-singular covariances
def test_fid_with_the_classifier_features_matches_the_reference_formula():
    torch.manual_seed(0)
    classifier = FashionClassifier(width=4, features=16).eval()
    extractor = FeatureExtractor(classifier)
    real = torch.rand(300, 1, 28, 28)
    other = (torch.rand(300, 1, 28, 28) * 0.6).clamp(0, 1)
    got, itself = fids(extractor, real, other, real, batch=128)
    with torch.no_grad():
        expected = _reference_fid(extractor(real).double().numpy(), extractor(other).double().numpy())
    assert got == pytest.approx(expected, rel=1e-3)
    assert itself == pytest.approx(0.0, abs=1e-3)  # a set is at distance 0 from itself


def test_smoke_run_saves_grids_losses_histogram_ladder_and_both_gans(smoke_run):
    plots = {p.name for p in (smoke_run / "plots").glob("*.png")}
    assert {"samples.png", "losses.png", "class_histogram.png", "samples_epoch01.png", "mlp_samples.png",
            "fid_ladder.png"} <= plots
    for where in (smoke_run, smoke_run / "variants" / "mlp"):  # the DCGAN in the run, the MLP GAN in its variant
        ckpt = torch.load(where / "checkpoints" / "last.pt", weights_only=True)
        assert {"g", "d", "opt_g", "opt_d"} <= set(ckpt["state"]) and ckpt["extra"]["train_cpu_s"] > 0
    m = read_summary(smoke_run)["metrics"]
    assert sum(m[f"class_fraction_{i}"] for i in range(10)) == pytest.approx(1.0)
    assert m["fid_ratio"] == pytest.approx(m["fid"] / m["fid_floor"])
    assert m["fid"] > m["fid_floor"] > 0  # 24 smoke steps do not reach real data
    assert m["fid_ratio_to_mlp_gan"] == pytest.approx(m["fid"] / m["mlp_fid"])
    # The ladder climbs with the noise and the blur, from the floor up.
    assert m["fid_floor"] < m["fid_real_noise_0p05"] < m["fid_real_noise_0p1"] < m["fid_real_noise_0p2"]
    assert m["fid_floor"] < m["fid_real_blur_0p5"] < m["fid_real_blur_1"]
    for prefix in ("", "mlp_"):
        assert all(0 <= m[f"{prefix}{k}"] <= 1 for k in ("precision", "recall", "min_class_fraction"))
    assert m["dcgan_train_cpu_s"] > 0 and m["mlp_train_cpu_s"] > 0


def test_models_train_in_a_fixed_order():
    assert gan.Config(models=["mlp", "dcgan"]).models == ["dcgan", "mlp"]  # the DCGAN first: its RNG stream is fixed


def test_dev_fid_is_logged_and_changes_nothing_else(smoke_run, tmp_path):
    import json

    from torch_cookbook.cli import main

    assert main(["run", "gan", "--profile", "smoke", "--dev_fid_every", "8", "--dev_fid_samples", "300",
                 "--runs-root", str(tmp_path), "--threads", "2"]) == 0
    run = only_run_dir(tmp_path, "gan")
    for where in (run, run / "variants" / "mlp"):
        rows = [json.loads(line) for line in (where / "metrics.jsonl").open()]
        dev = [(r["step"], r["eval/dev_fid"]) for r in rows if "eval/dev_fid" in r]
        assert [s for s, _ in dev] == [8, 16, 24] and all(v > 0 for _, v in dev)
    # Its samples come from their own noise stream with G in eval mode: the training run is the same run.
    assert comparable(read_summary(run)["metrics"]) == comparable(read_summary(smoke_run)["metrics"])
    for where in ("", "variants/mlp"):
        a = torch.load(run / where / "checkpoints" / "last.pt", weights_only=True)["state"]["g"]
        b = torch.load(smoke_run / where / "checkpoints" / "last.pt", weights_only=True)["state"]["g"]
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_predict_writes_a_grid_of_new_samples(smoke_run, cli, tmp_path):
    out = tmp_path / "grid.png"
    code, stdout, err = cli("predict", "gan", smoke_run, "--n", "9", "--out", out)
    assert code == 0, err
    image = __import__("matplotlib.pyplot").pyplot.imread(out)
    assert image.shape[:2] == (3 * 30 + 2, 3 * 30 + 2)  # 3×3 grid of 28-pixel images, 2-pixel padding


@pytest.mark.parametrize("args, expected", [
    (["--n", "0"], "--n 0: out of range, allowed [1, 1024]"),
    (["--n", "5000"], "--n 5000: out of range"),
    (["--out", "/nonexistent/folder/grid.png"], "folder /nonexistent/folder does not exist"),
    (["--out", "grid.jpg"], "give a path ending in .png"),
])
def test_predict_bad_input_is_one_line_exit_2(smoke_run, cli, args, expected):
    code, _, err = cli("predict", "gan", smoke_run, *args)
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and expected in err


def test_predict_without_a_checkpoint_is_one_line_exit_2(smoke_run, cli, tmp_path):
    broken = tmp_path / "run"
    shutil.copytree(smoke_run, broken)
    (broken / "checkpoints" / "last.pt").unlink()
    code, _, err = cli("predict", "gan", broken, "--out", tmp_path / "x.png")
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, expected", [
    (["--fid_real", "20000"], "--fid_real 20000: out of range"),
    (["--batch_size", "512", "--train_subset", "100"], "larger than --train_subset 100"),
    (["--latent_dim", "0"], "--latent_dim 0: out of range"),
])
def test_bad_config_is_one_line_exit_2(cli, tmp_path, args, expected):
    code, _, err = cli("run", "gan", "--profile", "smoke", "--runs-root", tmp_path, *args)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


# ---- your own images (--data DIR) ----------------------------------------------------------------------------
def write_images(folder, n=12, size=16, grey=True):
    """n random size×size PNGs under `folder`, every third in a subfolder; grey (mode L) or RGB."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        where = folder / "more" if i % 3 == 0 else folder
        where.mkdir(parents=True, exist_ok=True)
        pixels = (rng.random((size, size) if grey else (size, size, 3)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(where / f"{i:02d}.png")
    return folder


OWN = ("run", "gan", "--profile", "smoke", "--batch_size", "4", "--eval_samples", "20", "--threads", "2")


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    from torch_cookbook.cli import main

    root = tmp_path_factory.mktemp("gan_own")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COOKBOOK_CACHE", str(root / "cache"))
        data = write_images(root / "photos")
        assert main([*OWN, "--data", str(data), "--runs-root", str(root / "runs")]) == 0
    return only_run_dir(root / "runs", "gan"), data, root / "cache"


@pytest.mark.parametrize("size, channels", [(32, 1), (32, 3), (64, 1), (64, 3)])
def test_networks_take_32_or_64_pixels_grey_or_rgb(size, channels):
    g, d = Generator(latent_dim=10, width=4, image_size=size, channels=channels), Discriminator(4, size, channels)
    images = g(torch.randn(3, 10))
    assert images.shape == (3, channels, size, size) and d(images).shape == (3,)
    stages = 3 if size == 64 else 2
    assert g.base == 8 and d.net[-1].in_features == (4 << stages) * 8 * 8  # both work on an 8×8 base grid


def test_own_images_run_then_eval_then_predict(own_run, cli, monkeypatch, tmp_path):
    import json

    import matplotlib.pyplot as plt

    from torch_cookbook.data.userdata import fingerprint

    run_dir, data, cache = own_run
    monkeypatch.setenv("COOKBOOK_CACHE", str(cache))
    summary = read_summary(run_dir)
    m = summary["metrics"]
    # No labels, so no classifier: Lite0 FID beside its floor, named user_* so the Fashion-MNIST targets do not apply.
    assert set(m) == {"user_fid", "user_fid_floor", "user_fid_ratio", "user_fid_untrained_generator",
                      "user_fid_generated_images", "user_fid_held_out_images", "user_mlp_fid", "user_mlp_fid_ratio",
                      "user_fid_ratio_to_mlp_gan", "user_dcgan_train_cpu_s", "user_mlp_train_cpu_s"}
    assert m["user_fid_held_out_images"] == 2 and m["user_fid_generated_images"] == 10  # 12 images, 20% held out
    assert m["user_fid_ratio"] == pytest.approx(m["user_fid"] / m["user_fid_floor"]) and m["user_fid_floor"] > 0
    assert all(t["met"] is None for t in summary["targets"])
    assert json.loads((run_dir / "data.json").read_text())["data"] == {**fingerprint(data), "columns": {}}
    plots = {p.name for p in (run_dir / "plots").glob("*.png")}
    assert {"samples.png", "losses.png"} <= plots and "class_histogram.png" not in plots
    g = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["state"]["g"]
    assert g["net.3.weight"].shape[1] == 1  # every file is grey: one channel inferred
    assert plt.imread(run_dir / "plots" / "samples.png").shape[:2] == (4 * 34 + 2,) * 2  # 16 samples of 32 px

    code, out, err = cli("eval", run_dir)
    assert code == 0, err
    evaluated = json.loads(out)["metrics"]
    assert evaluated.keys() == comparable(m).keys()  # all but the CPU times
    assert all(evaluated[k] == pytest.approx(m[k], rel=1e-6) for k in evaluated)
    code, out, err = cli("predict", "gan", run_dir, "--n", "4", "--out", tmp_path / "new.png")
    assert code == 0, err
    assert plt.imread(tmp_path / "new.png").shape[:2] == (2 * 34 + 2,) * 2


def test_changed_images_are_refused_by_eval(own_run, cli):
    run_dir, data, _ = own_run
    image = data / "01.png"
    original = image.read_bytes()
    try:
        image.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        code, _, err = cli("eval", run_dir)
        assert code == 2 and len(err.strip().splitlines()) == 1 and f"--data {data} changed since the run" in err
    finally:
        image.write_bytes(original)


def _reference_fid_of_features(a, b):
    return _reference_fid(a.double().numpy(), b.double().numpy())


@pytest.mark.filterwarnings("ignore::scipy.linalg.LinAlgWarning")
def test_lite0_fid_matches_the_reference_formula_and_leaves_the_rng_alone():
    from torch_cookbook.nn.fid import frechet_distance, image_features, lite0_fid_to, lite0_fids, lite0_instrument

    torch.manual_seed(0)
    a, b = torch.randn(300, 16), torch.randn(300, 16) * 1.5 + 0.3
    assert frechet_distance(a, b) == pytest.approx(_reference_fid_of_features(a, b), rel=1e-6)
    torch.manual_seed(1)
    expected = torch.rand(1)
    torch.manual_seed(1)
    model = lite0_instrument()  # its random initialisation is drawn on a forked RNG
    assert torch.equal(torch.rand(1), expected)
    real = (torch.rand(8, 1, 32, 32) * 255).round().to(torch.uint8)
    features = image_features(model, real)
    assert features.shape == (8, 1280) and features.dtype == torch.float64
    torch.testing.assert_close(features, image_features(model, [real[:3].float() / 255, real[3:].float() / 255]))
    itself, darker = lite0_fids(real, real, real // 3)
    assert itself == pytest.approx(0.0, abs=1e-6) and darker > 1e-3
    assert lite0_fid_to(real)([real[:4] // 3, real[4:] // 3]) == pytest.approx(darker, rel=1e-4)  # --dev_fid_every


def test_the_split_is_seeded_disjoint_and_complete(tmp_path, monkeypatch):
    from torch_cookbook.data import image_sets

    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path / "cache"))
    data = write_images(tmp_path / "photos", n=20, grey=False)
    a, again, other = (image_sets.read(data, 32, 0, seed, 0.25, 4) for seed in (0, 0, 1))
    assert a.channels == 3 and a.train.dtype == torch.uint8 and (len(a.train), len(a.test)) == (15, 5)
    assert torch.equal(a.train, again.train) and torch.equal(a.test, again.test)
    every = {bytes(x.numpy()) for x in torch.cat([a.train, a.test])}
    assert len(every) == 20 and every == {bytes(x.numpy()) for x in torch.cat([other.train, other.test])}
    assert not torch.equal(a.test, other.test)
    assert image_sets.read(data, 32, 1, 0, 0.25, 4).channels == 1  # --channels 1 reads RGB files as grey


def _truncated(folder):
    write_images(folder)
    png = folder / "04.png"
    png.write_bytes(png.read_bytes()[:120])


BAD_FOLDERS = [
    (lambda f: f.mkdir(), "no images in this folder"),
    (lambda f: (write_images(f), (f / "notes.txt").write_text("x")), "notes.txt: unknown extension '.txt'"),
    (lambda f: (write_images(f), (f / "05.png").write_bytes(b"not a png")), "05.png: not a readable image"),
    (_truncated, "04.png: not a readable image"),
    (lambda f: write_images(f, n=4), "4 images; --test_fraction 0.2 holds out 1 and leaves 3 to train on"),
]


@pytest.mark.parametrize("make, expected", BAD_FOLDERS)
def test_bad_folders_are_refused_at_launch_in_one_line(tmp_path, monkeypatch, make, expected):
    from torch_cookbook.errors import DataError

    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path / "cache"))
    make(tmp_path / "photos")
    cfg = gan.Config(**{**gan.profiles["smoke"], "batch_size": 4}, data=str(tmp_path / "photos"))
    with pytest.raises(DataError) as refused:
        gan.check_launch(cfg)
    assert expected in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("args, expected", [
    (["--data", "{empty}"], "no images in this folder"),
    (["--data", "{empty}/../nowhere"], "no such file or folder"),
    (["--data", "{empty}", "--image_size", "48"], "--image_size 48: not one of the allowed values (32, 64)"),
    (["--data", "{empty}", "--channels", "2"], "--channels 2: not one of the allowed values (0, 1, 3)"),
])
def test_bad_data_through_the_cli_is_one_line_and_writes_nothing(cli, tmp_path, args, expected):
    (tmp_path / "empty").mkdir()
    args = [a.format(empty=tmp_path / "empty") for a in args]
    code, _, err = cli("run", "gan", "--profile", "smoke", "--runs-root", tmp_path / "runs", *args)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("*"))
