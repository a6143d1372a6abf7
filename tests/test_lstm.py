"""LSTM modules: packed vs unpacked equivalence, the seed's out[:, -1] bug, attention pooling, padding invariance;
the recipe's targets and its reference arm (textclass's packed BiLSTM with textclass's settings)."""

from __future__ import annotations

import json

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
    from torch_cookbook.recipes import lstm

    run_dir = smoke_runs("lstm")[0]
    m = read_summary(run_dir)["metrics"]
    cfg = lstm.Config(**json.loads((run_dir / "config.json").read_text())["config"])
    assert m["text_bi_minus_padded_last_macro_f1"] == m["text_bi_macro_f1"] - m["text_bi_padded_last_macro_f1"]
    assert m["text_attention_minus_uni_macro_f1"] == m["text_uni_attention_macro_f1"] - m["text_uni_macro_f1"]
    # The best variant is picked on validation (the seed's padded_last is not a candidate), then scored on test.
    candidates = [v for v in cfg.variants if v not in lstm.TEXT_ONLY]
    best = max(candidates, key=lambda v: m[f"text_{v}_val_macro_f1"])
    assert m["text_best_variant_macro_f1"] == m[f"text_{best}_macro_f1"]
    gap = m[f"{cfg.dataset}_best_variant_minus_textclass_bilstm_macro_f1"]
    assert gap == m["text_best_variant_macro_f1"] - m["text_textclass_bilstm_macro_f1"]


def test_the_absolute_bar_is_a_claim_about_bbc():
    from torch_cookbook.recipes import lstm

    bar = next(t for t in lstm.targets if "textclass" in t.metric)
    assert (bar.metric, bar.op, bar.value) == ("bbc_best_variant_minus_textclass_bilstm_macro_f1", ">=", -0.03)
    assert bar.applies(lstm.Config()) and not bar.applies(lstm.Config(dataset="drugs"))


def test_reference_arm_is_textclass_bilstm_with_textclass_settings(monkeypatch):
    """No recipe imports another, so lstm restates textclass's settings: this keeps the two in step."""
    from types import SimpleNamespace

    from torch_cookbook.recipes import lstm, textclass

    tc, cfg = textclass.Config(), lstm.Config()
    ref = lstm.reference_config(cfg)
    for key in lstm.REFERENCE_SETTINGS:
        assert getattr(ref, key) == getattr(tc, key), key
    assert ref.text_steps == tc.steps
    # The same tokens: BPE of textclass's vocabulary size on texts cut as textclass cuts them, the LSTM's share of it.
    assert tc.tokenizer == "bpe" and cfg.vocab_size == tc.vocab_size and cfg.chars == 8 * tc.max_len
    assert cfg.max_len == textclass.tokens_read(tc, "lstm")
    # The same split: textclass's stratified, seeded split with its validation and test shares.
    calls = []
    monkeypatch.setattr(lstm.textdata, "prepare", lambda *a, **kw: calls.append((a, kw)))
    lstm.prepare_text(cfg)
    (args, kwargs), = calls
    assert args == ("bbc", cfg.seed, "bpe", tc.vocab_size, cfg.max_len) and "cv_folds" not in kwargs
    assert (kwargs["val_fraction"], kwargs["test_fraction"], kwargs["chars"]) == (tc.val_fraction, tc.test_fraction,
                                                                                 8 * tc.max_len)
    # The same model, initialised the same: textclass seeds its models with the run's seed before building them.
    data = SimpleNamespace(vocab_size=300, classes=tuple("abcde"))
    mine = lstm.text_model(ref, lstm.REFERENCE, data)
    torch.manual_seed(cfg.seed)
    theirs = textclass.MODELS["lstm"].build(tc, 300, 5)
    assert (mine.bidirectional, mine.num_layers, mine.pooling) == (theirs.bidirectional, theirs.num_layers,
                                                                  theirs.pooling)
    assert mine.dropout.p == theirs.dropout.p
    for (name, a), (_, b) in zip(mine.state_dict().items(), theirs.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_a_difference_without_both_variants_is_none():
    from torch_cookbook.recipes.lstm import difference

    assert difference({"a": 0.9, "b": 0.7}, "a", "b") == pytest.approx(0.2)
    assert difference({"a": 0.9}, "a", "b") is None
    assert difference({"a": None, "b": 0.7}, "a", "b") is None  # no variant to pick


def test_each_variant_is_scored_from_its_best_validation_checkpoint(smoke_runs):
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
        # smoke: 10 steps, validated every 5; the reference arm every 50 as textclass does, so at its last step only
        assert len(logged) == (1 if variant.name == "text_textclass_bilstm" else 2)
