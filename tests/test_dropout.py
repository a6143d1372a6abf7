"""The dropout recipe: dropout's train/eval behaviour, placement around the activation, Dropout2d, bad input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torch_cookbook.recipes.dropout import Config, choose_best, collect_metrics, make_cnn, make_mlp, mode_demo


def test_eval_mode_is_deterministic_and_equals_the_model_without_dropout():
    torch.manual_seed(0)
    model = make_mlp(0.5, hidden=32)
    plain = make_mlp(0.0, hidden=32)
    plain.load_state_dict(model.state_dict())  # dropout has no parameters: the same weights fit both
    x = torch.randn(16, 1, 28, 28)
    model.eval()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    torch.testing.assert_close(model(x), plain.eval()(x))
    model.train()
    assert not torch.equal(model(x), model(x))


def test_train_mode_drops_a_fraction_p_and_scales_kept_units_by_1_over_1_minus_p():
    p = 0.3
    x = torch.rand(200_000) + 0.5
    torch.manual_seed(1)
    y = nn.Dropout(p).train()(x)
    kept = y != 0
    assert (1 - kept.float().mean()).item() == pytest.approx(p, abs=0.005)
    torch.testing.assert_close(y[kept], x[kept] / (1 - p))
    assert y.mean().item() == pytest.approx(x.mean().item(), rel=0.01)  # unbiased: E[train output] = input


def test_dropout_before_or_after_relu_is_the_same_function_but_not_for_sigmoid():
    x = torch.randn(8, 1, 28, 28)
    for activation, same in ((nn.ReLU, True), (nn.Sigmoid, False)):
        torch.manual_seed(2)
        after = make_mlp(0.5, 16, activation).train()  # dropout after the activation (the recipe)
        torch.manual_seed(2)
        before = make_mlp(0.5, 16, activation, dropout_first=True).train()  # the seed's order
        torch.testing.assert_close(before.state_dict(), after.state_dict())
        torch.manual_seed(3)
        out_after = after(x)
        torch.manual_seed(3)  # the same masks: both orders draw masks of the same shapes in the same order
        out_before = before(x)
        assert torch.allclose(out_after, out_before, atol=1e-6) == same, activation.__name__


def test_dropout2d_zeroes_whole_channels_and_dropout_single_pixels():
    torch.manual_seed(0)
    model = make_cnn(0.5, channelwise=True, width=8).train()
    maps = model[:4](torch.randn(4, 1, 28, 28))  # conv, ReLU, pool, Dropout2d
    per_channel_max = maps.flatten(2).abs().amax(2)
    zeroed = per_channel_max == 0
    assert 0.2 < zeroed.float().mean().item() < 0.8
    elementwise = make_cnn(0.5, channelwise=False, width=8).train()
    maps = elementwise[:4](torch.randn(4, 1, 28, 28))
    assert (maps.flatten(2).abs().amax(2) == 0).float().mean().item() < 0.05  # whole maps survive


def test_mode_demo_reports_what_eval_changes():
    torch.manual_seed(0)
    model = make_mlp(0.5, hidden=32)
    x, y = torch.randn(300, 1, 28, 28), torch.randint(0, 10, (300,))
    demo = mode_demo(model, x, y, 0.5, seed=0)
    assert demo["eval_mode_deterministic"] == 1.0 and demo["train_mode_deterministic"] == 0.0
    assert demo["train_mode_kept_scale"] == pytest.approx(2.0)
    assert demo["train_mode_dropped_fraction"] == pytest.approx(0.5, abs=0.01)
    assert not model.training, "the demonstration leaves the model in eval mode"


def fake_result(p: float, val_loss: float, val_accuracy: float, test_accuracy: float, train_accuracy: float = 1.0):
    return {"p": p, "train_accuracy": train_accuracy, "val_accuracy": val_accuracy, "val_loss": val_loss,
            "test_accuracy": test_accuracy, "test_loss": 0.5, "gap": train_accuracy - test_accuracy}


def test_best_p_is_chosen_on_validation_numbers_only():
    cfg = Config(ps=[0.0, 0.1, 0.5], include_cnn=False)
    # Validation loss favours p=0.5, validation accuracy favours p=0.1; the test set favours p=0.
    results = {"mlp_p00": fake_result(0.0, val_loss=0.60, val_accuracy=0.830, test_accuracy=0.90),
               "mlp_p10": fake_result(0.1, val_loss=0.55, val_accuracy=0.840, test_accuracy=0.80),
               "mlp_p50": fake_result(0.5, val_loss=0.50, val_accuracy=0.835, test_accuracy=0.82, train_accuracy=0.9)}
    metrics = collect_metrics(cfg, results)
    assert metrics["mlp_best_p"] == metrics["mlp_best_p_by_val_loss"] == 0.5
    assert metrics["mlp_best_p_by_val_accuracy"] == 0.1
    assert metrics["mlp_gap_reduction"] == pytest.approx(1 - 0.08 / 0.10)
    assert metrics["mlp_test_accuracy_change"] == pytest.approx(-0.08)
    # Any change to the test numbers leaves the choice alone; a change to the validation numbers does not.
    for name, test_accuracy in (("mlp_p00", 0.70), ("mlp_p10", 0.99), ("mlp_p50", 0.50)):
        results[name].update(test_accuracy=test_accuracy, test_loss=9.0, gap=1.0 - test_accuracy)
    assert collect_metrics(cfg, results)["mlp_best_p"] == 0.5
    results["mlp_p10"]["val_loss"] = 0.40
    assert collect_metrics(cfg, results)["mlp_best_p"] == 0.1
    assert collect_metrics(Config(ps=[0.0, 0.1, 0.5], include_cnn=False, select_by="val_accuracy"),
                           results)["mlp_best_p"] == 0.1
    with pytest.raises(KeyError):  # the selection function sees validation numbers only
        choose_best({"mlp_p00": {"test_accuracy": 0.9}}, "val_loss")


def test_cnn_arms_are_compared_with_the_cnn_without_dropout():
    cfg = Config(ps=[0.0], cnn_p=0.3)
    results = {"mlp_p00": fake_result(0.0, 0.5, 0.8, 0.8),
               "cnn_p00": fake_result(0.0, 0.5, 0.8, 0.80),
               "cnn_dropout_p30": fake_result(0.3, 0.4, 0.8, 0.85, train_accuracy=0.95),
               "cnn_dropout2d_p30": fake_result(0.3, 0.4, 0.8, 0.79, train_accuracy=0.90)}
    metrics = collect_metrics(cfg, results)
    assert metrics["cnn_dropout_gap_reduction"] == pytest.approx(1 - 0.10 / 0.20)
    assert metrics["cnn_dropout_test_accuracy_change"] == pytest.approx(0.05)
    assert metrics["cnn_dropout2d_gap_reduction"] == pytest.approx(1 - 0.11 / 0.20)
    assert metrics["cnn_dropout2d_test_accuracy_change"] == pytest.approx(-0.01)
    assert metrics["cnn_dropout2d_p30_gap"] == pytest.approx(0.11)


@pytest.mark.parametrize("args, fragment", [
    (["--ps", "0", "1"], "--ps 1.0: out of range, allowed [0, 1)"),
    (["--ps", "-0.1"], "--ps -0.1: out of range, allowed [0, 1)"),
    (["--cnn_p", "1.5"], "--cnn_p 1.5: out of range, allowed [0, 1)"),
    (["--lr", "0"], "--lr 0.0: out of range, allowed (0, inf)"),
    (["--select_by", "test_accuracy"],
     "--select_by test_accuracy: not one of the allowed values (val_loss, val_accuracy)"),
    (["--ps", "0", "0.001"], "--ps 0.0 0.001: two values name the same variant mlp_p00"),
    (["--train_size", "59900"], "--train_size 59900 + --val_size 256: more than the 60,000"),
])
def test_bad_input_is_one_line_with_exit_code_2(cli, tmp_path, args, fragment):
    code, _, err = cli("run", "dropout", "--profile", "smoke", "--runs-root", tmp_path, *args)
    assert code == 2
    assert fragment in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "dropout").exists()
