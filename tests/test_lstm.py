"""LSTM modules: packed vs unpacked equivalence, the seed's out[:, -1] bug, attention pooling, padding invariance."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from torch_cookbook.nn.lstm import (
    AttentionPooling,
    LSTMClassifier,
    LSTMForecaster,
    final_state,
    last_valid_output,
    lengths_from_padding,
)
from torch_cookbook.nn.text import BagOfEmbeddings, KimCNN


def padded_batch(lengths: list[int], width: int, vocab: int = 50, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, n in enumerate(lengths):
        tokens[i, :n] = torch.randint(1, vocab, (n,), generator=g)
    return tokens, torch.tensor(lengths)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
def test_packed_final_state_equals_running_each_sequence_alone(bidirectional, layers):
    torch.manual_seed(0)
    model = LSTMClassifier(50, 3, embed_dim=6, hidden=5, num_layers=layers, bidirectional=bidirectional).eval()
    tokens, lengths = padded_batch([7, 3, 5, 1], width=9)
    packed = model.encode(tokens, lengths)
    for i, n in enumerate(lengths.tolist()):
        # The reference: the sequence on its own, no padding at all.
        out, (h_n, _) = model.lstm(model.embed(tokens[i:i + 1, :n]))
        hidden = model.lstm.hidden_size
        expected = out[0, n - 1, :hidden] if not bidirectional else torch.cat([out[0, n - 1, :hidden],
                                                                                 out[0, 0, hidden:]])
        torch.testing.assert_close(packed[i], expected)
        torch.testing.assert_close(packed[i], final_state(h_n, layers, bidirectional)[0])


def test_seed_out_last_is_wrong_for_padded_and_bidirectional_batches():
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 3, batch_first=True, bidirectional=True)
    x = torch.randn(2, 6, 4)
    x[1, 2:] = 0.0  # row 1 has 2 real steps, then padding (zero embeddings)
    lengths = torch.tensor([6, 2])
    out, _ = lstm(x)
    alone, _ = lstm(x[1:, :2])
    # Forward half: out[:, -1] of the padded row is the state after 4 padding steps, not after its last token...
    assert not torch.allclose(out[1, -1, :3], alone[0, -1, :3], atol=1e-4)
    # ...while gathering at length-1 recovers it (in the unidirectional half).
    torch.testing.assert_close(last_valid_output(out, lengths)[1, :3], alone[0, -1, :3])
    # Backward half at the last position has read one step only, even for the full-length row.
    one_step, _ = lstm(x[:1, -1:])
    torch.testing.assert_close(out[0, -1, 3:], one_step[0, 0, 3:])


def test_lengths_from_padding_never_zero():
    tokens = torch.tensor([[5, 6, 0, 0], [0, 0, 0, 0], [1, 2, 3, 4]])
    assert lengths_from_padding(tokens).tolist() == [2, 1, 4]


def test_attention_weights_are_a_distribution_over_real_steps():
    torch.manual_seed(0)
    pool = AttentionPooling(4)
    out = torch.randn(3, 5, 4)
    mask = torch.arange(5)[None, :] < torch.tensor([5, 2, 1])[:, None]
    pooled, weights = pool(out, mask)
    assert pooled.shape == (3, 4)
    torch.testing.assert_close(weights.sum(1), torch.ones(3))
    assert (weights[~mask] == 0).all()
    torch.testing.assert_close(pooled[2], out[2, 0])  # one real step: all weight on it


def test_one_attention_pooling_and_checkpoint_keys_unchanged():
    from torch_cookbook import nn as tc_nn
    from torch_cookbook.nn import attention

    assert AttentionPooling is attention.AttentionPooling is tc_nn.AttentionPooling
    # The LSTM recipe's checkpoints were saved with these names before the two poolings were unified.
    keys = {k for k in LSTMClassifier(50, 3, 6, 5, pooling="attention").state_dict() if k.startswith("attention.")}
    assert keys == {"attention.proj.weight", "attention.proj.bias", "attention.score.weight"}


@pytest.mark.parametrize("make", [
    lambda: LSTMClassifier(50, 3, 6, 5, bidirectional=True, pooling="last"),
    lambda: LSTMClassifier(50, 3, 6, 5, num_layers=2, dropout=0.3, pooling="attention"),
    lambda: LSTMClassifier(50, 3, 6, 5, pooling="mean"),
    lambda: BagOfEmbeddings(50, 3, 6),
    lambda: KimCNN(50, 3, 6, filters=4),
])
def test_extra_padding_does_not_change_predictions(make):
    torch.manual_seed(0)
    model = make().eval()
    tokens, lengths = padded_batch([6, 2, 4], width=6)
    wider = torch.cat([tokens, torch.zeros(3, 10, dtype=torch.long)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(tokens, lengths), model(wider, lengths))


def test_seed_padded_last_depends_on_padding():
    torch.manual_seed(0)
    model = LSTMClassifier(50, 3, 6, 5, bidirectional=True, pooling="padded_last").eval()
    tokens, lengths = padded_batch([6, 2], width=6)
    wider = torch.cat([tokens, torch.zeros(2, 10, dtype=torch.long)], dim=1)
    with torch.no_grad():
        assert not torch.allclose(model(tokens, lengths), model(wider, lengths), atol=1e-5)


def test_final_state_picks_top_layer():
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 4, num_layers=3, batch_first=True, bidirectional=True)
    out, (h_n, _) = lstm(torch.randn(2, 5, 3))
    top = final_state(h_n, 3, True)
    torch.testing.assert_close(top[:, :4], out[:, -1, :4])  # forward: after the last step
    torch.testing.assert_close(top[:, 4:], out[:, 0, 4:])  # backward: after the first step


def test_forecaster_shapes_and_invalid_pooling():
    model = LSTMForecaster(2, horizon=12, hidden=8, num_layers=2, bidirectional=True, pooling="attention")
    assert model(torch.randn(5, 30, 2)).shape == (5, 12)
    with pytest.raises(ValueError):
        LSTMForecaster(2, 12, pooling="padded_last")
    with pytest.raises(ValueError):
        LSTMClassifier(10, 2, pooling="max")


def test_lstm_recipe_rejects_bad_flags(cli):
    code, _, err = cli("run", "lstm", "--variants", "uni", "bogus", "--profile", "smoke")
    assert code == 2 and "bogus" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("run", "lstm", "--variants", "uni", "uni", "--profile", "smoke")
    assert code == 2 and "repeat" in err


def test_target_metrics_are_the_variant_differences(smoke_runs):
    from conftest import read_summary

    m = read_summary(smoke_runs("lstm")[0])["metrics"]
    assert m["text_bi_minus_padded_last_macro_f1"] == m["text_bi_macro_f1"] - m["text_bi_padded_last_macro_f1"]
    assert m["text_attention_minus_uni_macro_f1"] == m["text_uni_attention_macro_f1"] - m["text_uni_macro_f1"]


def test_a_difference_without_both_variants_is_none():
    from torch_cookbook.recipes.lstm import difference

    assert difference({"a": 0.9, "b": 0.7}, "a", "b") == pytest.approx(0.2)
    assert difference({"a": 0.9}, "a", "b") is None


def test_each_variant_is_scored_from_its_best_validation_checkpoint(smoke_runs):
    import json

    run_dir = smoke_runs("lstm")[0]
    variants = sorted((run_dir / "variants").iterdir())
    assert {v.name.split("_")[0] for v in variants} == {"text", "series"}
    for variant in variants:
        logged = [json.loads(line) for line in (variant / "metrics.jsonl").read_text().splitlines()]
        result = json.loads((variant / "result.json").read_text())
        if variant.name.startswith("text_"):
            val = [(r["step"], r["eval/val_macro_f1"]) for r in logged if "eval/val_macro_f1" in r]
            best_step, best = max(val, key=lambda sv: sv[1])  # the first of equal scores is kept
            assert result["val_macro_f1"] == best and result["best_step"] == best_step
        else:
            assert result["val_mae"] == min(r["eval/val_mae"] for r in logged if "eval/val_mae" in r)
        assert len(logged) == 2  # smoke: 10 steps, validated every 5
