"""seq2seq: vocabulary, padding-invariance of encoder and decoding, beam width 1 = greedy, data splits,
scheduled sampling, resumable length-bucketed batches, and `cookbook predict` on bad input."""

from __future__ import annotations

import datetime
import itertools

import pytest
import torch

from conftest import only_run_dir
from torch_cookbook.data import dates, names
from torch_cookbook.nn.seq2seq import CharVocab, Seq2Seq, beam_search, greedy_decode
from torch_cookbook.recipes import seq2seq as recipe

TEXTS = ["6 janvier 1985", "Sonntag, 6. Januar 1985", "1/6", "x"]


def test_vocab_roundtrip(tmp_path):
    vocab = CharVocab.build(["abca", "bd"])
    assert vocab.itos[:4] == ["<pad>", "<sos>", "<eos>", "<unk>"]
    assert vocab.itos[4:] == ["a", "b", "c", "d"]  # most frequent first, ties by code point
    ids = vocab.encode("abz", sos=True)
    assert ids == [vocab.sos_id, 4, 5, vocab.unk_id, vocab.eos_id]
    assert vocab.decode(ids) == "ab\N{REPLACEMENT CHARACTER}"
    assert vocab.decode([4, vocab.eos_id, 5]) == "a"  # stops at <eos>
    assert vocab.unknown("zazy") == ["z", "y"]
    assert CharVocab.from_state_dict(vocab.state_dict()) == vocab
    vocab.save(tmp_path / "v.json")
    assert CharVocab.load(tmp_path / "v.json") == vocab
    ids, lengths = vocab.batch(["ab", "a"])
    assert ids.tolist() == [[4, 5, 2], [4, 2, 0]] and lengths.tolist() == [3, 2]


def make_model(attention: str, rnn: str = "gru") -> tuple[Seq2Seq, CharVocab]:
    torch.manual_seed(0)
    vocab = CharVocab.build(TEXTS)
    return Seq2Seq(len(vocab), len(vocab), embed=8, hidden=16, rnn=rnn, attention=attention, dropout=0.0).eval(), vocab


@pytest.mark.parametrize("attention,rnn", [("general", "gru"), ("additive", "lstm"), ("none", "gru")])
def test_padded_batch_equals_one_by_one(attention, rnn):
    model, vocab = make_model(attention, rnn)
    src, lengths = vocab.batch(TEXTS)
    tgt_in, _ = vocab.batch(["1985-01-06"] * len(TEXTS), sos=True, eos=False)
    batch_logits, _ = model(src, lengths, tgt_in)
    greedy = greedy_decode(model, src, lengths, max_len=12)
    beams = beam_search(model, src, lengths, max_len=12, beam=3)
    for i, text in enumerate(TEXTS):
        s, n = vocab.batch([text])
        logits, _ = model(s, n, tgt_in[i:i + 1])
        torch.testing.assert_close(batch_logits[i:i + 1], logits, atol=1e-5, rtol=1e-5)
        alone = greedy_decode(model, s, n, max_len=12)[0]
        assert alone.ids == greedy[i].ids and alone.logprob == pytest.approx(greedy[i].logprob, abs=1e-4)
        alone_beam = beam_search(model, s, n, max_len=12, beam=3)[0]
        assert [h.ids for h in alone_beam] == [h.ids for h in beams[i]]


@pytest.mark.parametrize("attention", ["general", "none"])
def test_beam_width_one_is_greedy(attention):
    model, vocab = make_model(attention)
    src, lengths = vocab.batch(TEXTS)
    greedy = greedy_decode(model, src, lengths, max_len=15, alpha=0.7)
    beam = beam_search(model, src, lengths, max_len=15, beam=1, alpha=0.7)
    # this untrained "general" model never emits <eos> (max_len path); the plain one ends at varied lengths
    assert {len(g.ids) for g in greedy} == ({15} if attention == "general" else {4, 6})
    for g, (b,) in zip(greedy, beam):
        assert g.ids == b.ids
        assert g.logprob == pytest.approx(b.logprob, abs=1e-5) and g.score == pytest.approx(b.score, abs=1e-5)


def test_beam_is_sorted_and_length_normalised():
    model, vocab = make_model("general")
    src, lengths = vocab.batch(TEXTS[:2])
    for hyps in beam_search(model, src, lengths, max_len=10, beam=4, alpha=1.0):
        assert len(hyps) == 4
        assert [h.score for h in hyps] == sorted((h.score for h in hyps), reverse=True)
        for h in hyps:
            steps = len(h.ids) + (1 if len(h.ids) < 10 else 0)  # +1 for the <eos> of finished ones
            assert h.score == pytest.approx(h.logprob / steps, rel=1e-5)


def test_scheduled_sampling_mix():
    model, vocab = make_model("general")
    src, lengths = vocab.batch(TEXTS)
    tgt_in, _ = vocab.batch(TEXTS, sos=True, eos=False)
    batch = {"src": src, "src_len": lengths, "tgt_in": tgt_in}
    g = torch.Generator().manual_seed(0)
    assert torch.equal(recipe.mix_own_predictions(model, batch, 1.0, g), tgt_in)
    mixed = recipe.mix_own_predictions(model, batch, 0.0, g)
    predicted = model(src, lengths, tgt_in)[0].argmax(-1)
    real = tgt_in[:, 1:] != vocab.pad_id
    assert torch.equal(mixed[:, 0], tgt_in[:, 0])  # <sos> is always given
    assert torch.equal(mixed[:, 1:][real], predicted[:, :-1][real])
    assert torch.equal(mixed[:, 1:][~real], tgt_in[:, 1:][~real])  # padding stays padding


def test_bucketed_batches_cover_epoch_and_resume():
    lengths = torch.randint(1, 50, (203,))
    first = list(itertools.islice(recipe.length_bucketed_batches(lengths, 10, seed=3), 45))
    epoch0 = torch.cat([idx for _, e, idx in first if e == 0])
    assert len(epoch0) == 200 and len(set(epoch0.tolist())) == 200
    resumed = list(itertools.islice(recipe.length_bucketed_batches(lengths, 10, seed=3, start_step=27), 18))
    for (s1, e1, i1), (s2, e2, i2) in zip(first[27:], resumed):
        assert (s1, e1) == (s2, e2) and torch.equal(i1, i2)
    spread = [int(lengths[idx].max() - lengths[idx].min()) for _, _, idx in first[:20]]
    assert sum(spread) / len(spread) < 20  # batches hold similar lengths (random batches: ~40)


def test_dates_split_holds_out_calendar_days():
    train, test = dates.load(500, 100, seed=1)
    assert len(train.src) == 500 and len(test.src) == 100
    assert not set(train.tgt) & set(test.tgt)
    for text, iso, style in zip(test.src[:20], test.tgt[:20], test.style[:20]):
        day = datetime.date.fromisoformat(iso)
        assert dates.FIRST <= day <= dates.LAST and "/" in style and text
    assert ("en_US", "short") not in dates.styles()


def test_names_catalogue_and_split():
    pairs = names.all_pairs()
    assert len(pairs) == names.EXPECTED_PAIRS
    assert sum(s != t for s, t in zip(pairs.src, pairs.tgt)) == 5208
    assert ("Germany", "Allemagne") in set(zip(pairs.src, pairs.tgt))
    train, test = names.load(seed=0)
    assert not set(train.src) & set(test.src)
    assert 0.08 < len(test) / (len(train) + len(test)) < 0.12


# ---- the CLI on a tiny trained run -------------------------------------------------------------------
@pytest.fixture(scope="module")
def dates_run(tmp_path_factory):
    from torch_cookbook.cli import main

    root = tmp_path_factory.mktemp("s2s")
    code = main(["run", "seq2seq", "--profile", "smoke", "--task", "dates", "--no-compare_plain",
                 "--runs-root", str(root), "--threads", "1"])
    assert code == 0
    return only_run_dir(root, "seq2seq")


def test_predict_prints_output_and_beam(dates_run, cli):
    code, out, err = cli("predict", "seq2seq", dates_run, "6 janvier 1985")
    assert code == 0, err
    assert "output" in out and "beam (width 2)" in out and "1. " in out and "2. " in out


def test_predict_bad_inputs(dates_run, cli):
    code, _, err = cli("predict", "seq2seq", dates_run, "   ")
    assert code == 2 and "empty" in err and len(err.strip().splitlines()) == 1
    code, out, err = cli("predict", "seq2seq", dates_run, "6 janvier 1985 ☃")
    assert code == 0 and "never seen in training" in out and "'☃'" in out
    code, out, err = cli("predict", "seq2seq", dates_run, "6 janvier 1985 " * 10)
    assert code == 0 and "only the first 63 are used" in out
    code, _, err = cli("predict", "seq2seq", dates_run, "☃☃")
    assert code == 2 and "none of the characters" in err
    code, _, err = cli("predict", "seq2seq", dates_run, "6 mai 1990", "--task", "names")
    assert code == 2 and "trained only dates" in err
    code, _, err = cli("predict", "seq2seq", dates_run, "6 mai 1990", "--variant", "plain")
    assert code == 2 and "no variant 'dates_plain'" in err
    code, _, err = cli("predict", "seq2seq", dates_run, "6 mai 1990", "--beam", "0")
    assert code == 2 and "--beam 0" in err


def test_bad_config_values(cli, tmp_path):
    code, _, err = cli("run", "seq2seq", "--task", "poems", "--runs-root", tmp_path)
    assert code == 2 and "poems" in err
    code, _, err = cli("run", "seq2seq", "--attention", "cosine", "--runs-root", tmp_path)
    assert code == 2 and "cosine" in err
    code, _, err = cli("run", "seq2seq", "--hidden", "33", "--runs-root", tmp_path)
    assert code == 2 and "even" in err
    assert not list(tmp_path.iterdir())  # nothing written for a bad config
