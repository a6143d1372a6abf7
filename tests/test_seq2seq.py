"""seq2seq: vocabulary, padding-invariance of encoder and decoding, beam width 1 = greedy, the recipe's decoder
step = the model's, data splits, scheduled sampling, resumable length-bucketed batches, choosing the length
normalisation, the summary table, and `cookbook predict` on bad input."""

from __future__ import annotations

import datetime
import itertools

import pytest
import torch

from conftest import only_run_dir
from torch_cookbook.data import dates, names
from torch_cookbook.engine.loop import epoch_order
from torch_cookbook.errors import ConfigError
from torch_cookbook.nn import seq2seq as s2s
from torch_cookbook.nn.seq2seq import (
    CharVocab,
    Hypothesis,
    Seq2Seq,
    TextPairs,
    beam_candidates,
    beam_search,
    greedy_decode,
    rank_hypotheses,
)
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
        assert [(not h.finished, -h.score) for h in hyps] == sorted((not h.finished, -h.score) for h in hyps)
        for h in hyps:
            assert h.length == len(h.ids) + h.finished  # +1 for the <eos> of finished ones
            assert h.score == pytest.approx(h.logprob / h.length, rel=1e-5)


class ChainModel(torch.nn.Module):
    """A stand-in decoder whose next-character distribution depends only on the last character: a Markov
    chain, so every sequence's probability is known exactly. Same interface as Seq2Seq for decoding."""

    A, B, C, D = 4, 5, 6, 7  # ids after the four specials

    def __init__(self, rows: dict[int, dict[int, float]], vocab: int = 8) -> None:
        super().__init__()
        table = torch.full((vocab, vocab), 1e-4)
        for last, probs in rows.items():
            for token, p in probs.items():
                table[last, token] = p
        self.logp = (table / table.sum(1, keepdim=True)).log()

    def encode(self, src, src_lengths):
        batch = src.size(0)
        return torch.zeros(batch, 1, 1), torch.ones(batch, 1, 1, dtype=torch.bool), torch.zeros(1, batch, 1)

    def decoder(self, tokens, state, memory, mask):
        return self.logp[tokens[:, -1]].unsqueeze(1), state, None


def test_beam_keeps_searching_while_a_live_sequence_is_more_probable():
    """Width 2: "b" and "ac" end among the two best candidates by step 3 while "acd" (the greedy output,
    more probable than both) is still alive. Declaring the input done at two finished hypotheses (the old
    rule) returned "b" (alpha 0) or "ac" (alpha 1); the search must go on until no live sequence can
    still beat the second-best finished one."""
    m = ChainModel
    model = ChainModel({CharVocab.sos_id: {m.A: 0.6, m.B: 0.4}, m.A: {m.C: 0.9}, m.B: {CharVocab.eos_id: 0.6, m.C: 0.4},
                        m.C: {m.D: 0.6, CharVocab.eos_id: 0.4}, m.D: {CharVocab.eos_id: 1.0}})
    src, lengths = torch.tensor([[4, 2]]), torch.tensor([2])
    greedy = greedy_decode(model, src, lengths, max_len=8)[0]
    assert greedy.ids == [m.A, m.C, m.D] and greedy.finished
    for alpha in (0.0, 0.5, 1.0):
        best = beam_search(model, src, lengths, max_len=8, beam=2, alpha=alpha)[0][0]
        assert best.ids == greedy.ids and best.logprob == pytest.approx(greedy.logprob, abs=1e-5)
    found = {tuple(h.ids): h.logprob for h in beam_candidates(model, src, lengths, max_len=8, beam=2)[0]}
    assert {(m.B,), (m.A, m.C), (m.A, m.C, m.D)} <= set(found)


def test_unfinished_sequences_rank_after_finished_ones():
    """A sequence cut off at max_len is no complete output: even with a better score it ranks last."""
    model = ChainModel({CharVocab.sos_id: {ChainModel.A: 0.55, ChainModel.B: 0.45},
                        ChainModel.A: {ChainModel.A: 1.0}, ChainModel.B: {CharVocab.eos_id: 0.6, ChainModel.C: 0.4}})
    src, lengths = torch.tensor([[4, 2]]), torch.tensor([2])
    assert not greedy_decode(model, src, lengths, max_len=6)[0].finished  # greedy loops on "a"
    best = beam_search(model, src, lengths, max_len=6, beam=2, alpha=1.0)[0][0]
    assert best.ids == [ChainModel.B] and best.finished
    loop = [h for h in rank_hypotheses(beam_candidates(model, src, lengths, max_len=6, beam=2)[0], alpha=1.0)
            if h.ids == [ChainModel.A] * 6][0]
    assert not loop.finished and loop.score > best.score  # the loop scores better per step, yet ranks after
    ranked = rank_hypotheses([Hypothesis([4] * 6, -1.0, 0.0, finished=False), Hypothesis([4, 5], -3.0, 0.0),
                              Hypothesis([4], -2.5, 0.0)], alpha=1.0)
    assert [h.ids for h in ranked] == [[4, 5], [4], [4] * 6]  # -3/3 = -1.0 beats -2.5/2; unfinished last
    assert [h.score for h in ranked] == pytest.approx([-1.0, -1.25, -1.0 / 6])
    assert [h.ids for h in rank_hypotheses(ranked, alpha=0.0)][:2] == [[4], [4, 5]]


@pytest.mark.parametrize("attention,rnn", [("general", "gru"), ("additive", "lstm"), ("scaled_dot", "gru"),
                                           ("none", "lstm")])
def test_recipe_decoder_step_is_the_models(attention, rnn):
    """The recipe spells the decoder step out; greedy and beam search run Decoder.forward. Same numbers, in
    eval mode and in train mode with dropout (same random draws in the same order)."""
    torch.manual_seed(0)
    vocab = CharVocab.build(TEXTS)
    model = Seq2Seq(len(vocab), len(vocab), embed=8, hidden=16, rnn=rnn, attention=attention, dropout=0.3)
    src, lengths = vocab.batch(TEXTS)
    tgt_in, _ = vocab.batch(["1985-01-06"] * len(TEXTS), sos=True, eos=False)
    for train in (False, True):
        model.train(train)
        memory, mask, state = model.encode(src, lengths)
        torch.manual_seed(1)
        expected = model.decoder(tgt_in, state, memory, mask)
        torch.manual_seed(1)
        got = recipe.decoder_step(model.decoder, tgt_in, state, memory, mask)
        assert torch.equal(got[0], expected[0])
        states = list(zip(got[1], expected[1])) if rnn == "lstm" else [(got[1], expected[1])]  # (h, c) or h
        assert all(torch.equal(a, b) for a, b in states)
        assert (got[2] is None) == (attention == "none") and (got[2] is None or torch.equal(got[2], expected[2]))
    model.eval()
    batch = {"src": src, "src_len": lengths, "tgt_out": vocab.batch(["1985-01-06"] * len(TEXTS))[0]}
    logits, _ = model(src, lengths, tgt_in)
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["tgt_out"].flatten(), ignore_index=0)
    assert torch.equal(recipe.teacher_forced_loss(model, batch, tgt_in), loss)


def test_scheduled_sampling_mix():
    model, vocab = make_model("general")
    src, lengths = vocab.batch(TEXTS)
    tgt_in, _ = vocab.batch(TEXTS, sos=True, eos=False)
    batch = {"src": src, "src_len": lengths, "tgt_in": tgt_in}
    g = torch.Generator().manual_seed(0)
    assert torch.equal(s2s.mix_own_predictions(model, batch, 1.0, g), tgt_in)
    mixed = s2s.mix_own_predictions(model, batch, 0.0, g)
    predicted = model(src, lengths, tgt_in)[0].argmax(-1)
    real = tgt_in[:, 1:] != vocab.pad_id
    assert torch.equal(mixed[:, 0], tgt_in[:, 0])  # <sos> is always given
    assert torch.equal(mixed[:, 1:][real], predicted[:, :-1][real])
    assert torch.equal(mixed[:, 1:][~real], tgt_in[:, 1:][~real])  # padding stays padding


def test_teacher_forcing_schedule():
    assert [s2s.teacher_forcing(s, 5, 1.0, 0.8) for s in (0, 2, 4)] == pytest.approx([1.0, 0.9, 0.8])
    assert s2s.teacher_forcing(0, 1, 1.0, 0.8) == 1.0  # a one-step run does not divide by zero


def test_bucketed_batches_cover_epoch_and_resume():
    lengths = torch.randint(1, 50, (203,))
    per_epoch = 20  # 203 // 10: the last 3 examples of each shuffle wait for a later epoch
    first = list(itertools.islice(s2s.length_bucketed_batches(lengths, 10, 3, epoch_order), 45))
    epoch0, epoch1 = torch.cat(first[:per_epoch]), torch.cat(first[per_epoch:2 * per_epoch])
    assert len(epoch0) == 200 and len(set(epoch0.tolist())) == 200 and len(set(epoch1.tolist())) == 200
    assert not torch.equal(epoch0, epoch1)  # each epoch has its own shuffle
    resumed = list(itertools.islice(s2s.length_bucketed_batches(lengths, 10, 3, epoch_order, start_step=27), 18))
    assert all(torch.equal(a, b) for a, b in zip(first[27:], resumed)) and len(resumed) == 18
    spread = [int(lengths[idx].max() - lengths[idx].min()) for idx in first[:per_epoch]]
    assert sum(spread) / len(spread) < 20  # batches hold similar lengths (random batches: ~40)
    with pytest.raises(ConfigError, match="larger than the 203"):
        next(s2s.length_bucketed_batches(lengths, 300, 3, epoch_order))


def test_trimmed_batch_cuts_shared_padding():
    task = TextPairs("t", ["abc", "a", "abcdef"], ["xy", "x", "xyzw"], [], [], 5)
    data = task.tensors(task.train_src, task.train_tgt)
    batch = s2s.trimmed_batch(data, torch.tensor([1, 0]), torch.device("cpu"))
    assert batch["src"].shape == (2, 4) and batch["tgt_in"].shape == batch["tgt_out"].shape == (2, 3)
    assert batch["src_len"].tolist() == [2, 4]  # "a" + <eos>, "abc" + <eos>
    assert task.src_vocab.decode(batch["src"][1].tolist()) == "abc"
    assert task.tgt_vocab.decode(batch["tgt_out"][1].tolist()) == "xy"


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


def test_names_validation_split_comes_from_the_training_side():
    train0, test0 = names.load(seed=2)
    train, val, test = names.split(seed=2, val_fraction=0.05)
    assert (test.src, test.tgt) == (test0.src, test0.tgt)  # the held-out pairs do not move
    assert not set(val.src) & set(train.src) and not set(val.src) & set(test.src)
    assert sorted(zip(train.src + val.src, train.tgt + val.tgt)) == sorted(zip(train0.src, train0.tgt))
    assert 0.04 < len(val) / len(train0) < 0.06
    assert names.split(seed=2, val_fraction=0.05)[1].src == val.src  # fixed by the seed
    assert names.split(seed=3, val_fraction=0.05)[1].src != val.src


def test_length_alpha_is_chosen_on_validation(monkeypatch):
    """choose_length_alpha scores each alpha on the validation pairs only; ties go to the smaller alpha. The
    recipe reports the choice and every alpha's validation chrF with the variant's result."""
    task = TextPairs("names", ["ab", "ba"], ["ab", "ba"], ["ab"], ["ab"], 4, val_src=["ab", "ba"],
                     val_tgt=["ab", "ba"])
    a, b = task.tgt_vocab.stoi["a"], task.tgt_vocab.stoi["b"]
    # per validation input: "a" is more probable, "ab" has the better log-probability per step
    short, long = Hypothesis([a], -2.0, 0.0), Hypothesis([a, b], -2.2, 0.0)
    searched = []
    monkeypatch.setattr(s2s, "beam_candidates", lambda model, src, *args: searched.append(src.size(0)) or
                        [[short, long]] * src.size(0))
    monkeypatch.setattr(s2s, "beam_search", lambda model, src, *args: [[short, long]] * src.size(0))
    monkeypatch.setattr(s2s, "greedy_decode", lambda model, src, *args: [short] * src.size(0))
    alpha, chrf = s2s.choose_length_alpha(None, task, beam=2, alphas=[0.0, 0.5, 1.0])
    # alpha 0 picks "a" (log p -2 > -3); 0.5 and 1 pick "ab", right for the first input: they tie, 0.5 wins
    assert alpha == 0.5 and chrf[0.5] == chrf[1.0] and chrf[0.0] < chrf[0.5]
    assert searched == [2]  # one search over the two validation inputs, ranked under every alpha
    cfg = recipe.Config(length_alphas=[0.0, 0.5, 1.0], beam=2)
    result = recipe.evaluate_model(cfg, None, task, torch.device("cpu"))
    assert result["length_alpha"] == 0.5 and result["val_size"] == 2
    assert result["val_chrf_by_alpha"] == {"0": chrf[0.0], "0.5": chrf[0.5], "1": chrf[1.0]}
    assert result["predictions_greedy"] == ["a"] and result["exact_greedy"] == 0.0


def test_summary_table():
    """summarise reads the headline metrics off the variants' results: beam search of the attention model,
    differences against greedy, the plain model and copying; a variant that was not trained is left out."""
    task = TextPairs("names", ["Germany"], ["Allemagne"], ["Germany", "Paris"], ["Allemagne", "Paris"], 12)
    attention = {"chrf_beam": 80.0, "chrf_greedy": 78.5, "chrf_changed_beam": 70.0, "chrf_changed_greedy": 68.0,
                 "bleu_beam": 50.0, "bleu_changed_beam": 40.0, "exact_beam": 0.5, "exact_changed_beam": float("nan"),
                 "length_alpha": 0.75, "val_size": 3, "val_chrf_greedy": 60.0,
                 "val_chrf_by_alpha": {"0": 58.0, "0.75": 61.0}}
    plain = {"chrf_beam": 40.0, "chrf_changed_beam": 30.0, "exact_beam": 0.25, "length_alpha": 1.0}
    both = recipe.summarise({"names_attention": attention, "names_plain": plain}, {"names": task})
    copy = recipe.copy_baseline(task)
    assert both["names_chrf_changed"] == 70.0 and both["names_chrf_all_greedy"] == 78.5
    assert both["names_beam_minus_greedy"] == 1.5 and both["names_chrf_changed_gain_vs_plain"] == 40.0
    assert both["names_chrf_changed_gain_vs_copy"] == 70.0 - copy["chrf_changed"]
    assert both["names_copy_exact_all"] == 0.5 and both["names_test_size"] == 2 and both["names_test_changed_size"] == 1
    assert both["names_exact_changed"] is None  # NaN (no pairs to score) is reported as not measured
    assert both["names_length_alpha_chosen"] == 0.75 and both["names_plain_length_alpha_chosen"] == 1.0
    assert both["names_val_chrf_alpha0.75"] == 61.0 and both["names_val_size"] == 3
    alone = recipe.summarise({"names_attention": attention}, {"names": task})
    assert not any(k.startswith("names_plain") or k.endswith("gain_vs_plain") for k in alone)
    assert set(both) - set(alone) == {"names_plain_chrf_changed", "names_plain_chrf_all", "names_plain_exact_all",
                                      "names_plain_length_alpha_chosen", "names_chrf_changed_gain_vs_plain"}


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
