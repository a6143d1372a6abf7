"""A character-level encoder-decoder with optional attention, greedy and beam-search decoding, and the
character vocabulary that goes with it.

- `CharVocab`: characters <-> ids with <pad>=0, <sos>, <eos>, <unk>; saved with the model as plain values;
  `readable` checks a user's input against it.
  `TextPairs`: a string-to-string task's splits and vocabularies, the shifted decoder input and target
  of its pairs, `translate` (decode a list of strings in batches) and `score` (metrics on the held-out pairs).
- `Seq2Seq`: bidirectional GRU/LSTM encoder over packed (padding-free) sequences, a bridge that turns its
  final state into the decoder's initial state, and a Luong-style decoder: RNN step, then attention over
  the encoder outputs, then `tanh(W [h; context])` -> vocabulary logits. Attention comes after the RNN, so
  under teacher forcing the whole target runs through the decoder in one call (fast on CPU).
  `attention="none"` gives the classic fixed-vector seq2seq (Sutskever et al.) for comparison.
- `greedy_decode` and `beam_search` (length-normalised) decode a padded batch; both return, per input,
  the same result as decoding it alone. `beam_candidates` + `rank_hypotheses` split the search from the
  ranking, so one search can be ranked under several length normalisations.
- Training and evaluation helpers: `warmup_cosine` (the learning rate), `teacher_forcing` and
  `mix_own_predictions` (parallel scheduled sampling), `length_bucketed_batches` (resumable batches of similar
  lengths) and `trimmed_batch`, `text_metrics` (exact match, chrF, BLEU), and `choose_length_alpha` (the length
  normalisation with the best chrF on a validation split).
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from torch_cookbook.errors import ConfigError, DataError
from torch_cookbook.nn.attention import ATTENTION_KINDS, make_attention, padding_mask

__all__ = ["CharVocab", "TextPairs", "RNNS", "Encoder", "Decoder", "Seq2Seq", "Hypothesis", "greedy_decode",
           "beam_search", "beam_candidates", "rank_hypotheses", "warmup_cosine", "teacher_forcing",
           "mix_own_predictions", "length_bucketed_batches", "trimmed_batch", "text_metrics", "choose_length_alpha"]


# ---- vocabulary ----------------------------------------------------------------------------------
class CharVocab:
    """Characters <-> ids. Ids 0..3 are the special tokens; unseen characters map to <unk>."""

    PAD, SOS, EOS, UNK = "<pad>", "<sos>", "<eos>", "<unk>"
    SPECIALS = (PAD, SOS, EOS, UNK)
    pad_id, sos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, chars: Iterable[str]) -> None:
        chars = [c for c in chars if c not in self.SPECIALS]
        if len(set(chars)) != len(chars):
            raise ValueError("CharVocab: duplicate characters")
        self.itos: list[str] = list(self.SPECIALS) + chars
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(self.itos)}

    @classmethod
    def build(cls, texts: Iterable[str], min_count: int = 1) -> CharVocab:
        """The characters of `texts` seen at least `min_count` times, most frequent first (ties by code point)."""
        counts = Counter(c for text in texts for c in text)
        kept = sorted((c for c, n in counts.items() if n >= min_count), key=lambda c: (-counts[c], c))
        return cls(kept)

    def __len__(self) -> int:
        return len(self.itos)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocab) and self.itos == other.itos

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of `text` this vocabulary has never seen, in order of appearance."""
        return list(dict.fromkeys(c for c in text if c not in self.stoi))

    def readable(self, text: str, limit: int) -> tuple[str, list[str]]:
        """`text` as a model trained on inputs of at most `limit` characters reads it: NFC-normalised (as training
        text is) and cut to that length; and notes for the user that say so and name the characters never seen in
        training (read as <unk>). An empty input, or one with no known character, is a DataError."""
        text, notes = unicodedata.normalize("NFC", text), []
        if not text:
            raise DataError("the input is empty; give some text")
        if len(text) > limit:
            notes.append(f"the input has {len(text)} characters; only the first {limit} are used (the model was "
                         f"trained on inputs up to that length)")
            text = text[:limit]
        unknown = self.unknown(text)
        if len(unknown) == len(set(text)):
            raise DataError(f"none of the characters of {text!r} occur in the training data")
        if unknown:
            notes.append(f"characters never seen in training are read as <unk>: {' '.join(map(repr, unknown))}")
        return text, notes

    def encode(self, text: str, sos: bool = False, eos: bool = True) -> list[int]:
        ids = [self.stoi.get(c, self.unk_id) for c in text]
        return ([self.sos_id] if sos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: Iterable[int]) -> str:
        """Text up to the first <eos>; <pad>/<sos> are dropped and <unk> shows as '\N{REPLACEMENT CHARACTER}'."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.sos_id):
                continue
            out.append("\N{REPLACEMENT CHARACTER}" if i == self.unk_id else self.itos[i])
        return "".join(out)

    def batch(self, texts: Sequence[str], sos: bool = False, eos: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded ids (B, T) and lengths (B,) for a list of texts."""
        seqs = [self.encode(t, sos=sos, eos=eos) for t in texts]
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        ids = torch.full((len(seqs), int(lengths.max()) if seqs else 0), self.pad_id, dtype=torch.long)
        for row, s in enumerate(seqs):
            ids[row, :len(s)] = torch.tensor(s, dtype=torch.long)
        return ids, lengths

    # plain values only, so it can live inside a weights_only checkpoint
    def state_dict(self) -> dict[str, list[str]]:
        return {"itos": list(self.itos)}

    @classmethod
    def from_state_dict(cls, state: dict[str, list[str]]) -> CharVocab:
        itos = list(state["itos"])
        if tuple(itos[:4]) != cls.SPECIALS:
            raise ValueError("CharVocab: saved vocabulary does not start with the special tokens")
        return cls(itos[4:])

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.state_dict(), ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> CharVocab:
        return cls.from_state_dict(json.loads(Path(path).read_text(encoding="utf-8")))


@dataclass
class TextPairs:
    """A string-to-string task: training, held-out and (optional) validation pairs, and character vocabularies
    built from the training side only (characters never seen in training map to <unk>)."""

    name: str
    train_src: list[str]
    train_tgt: list[str]
    test_src: list[str]
    test_tgt: list[str]
    max_tgt: int  # longest output + 1 (<eos>): where decoding stops
    val_src: list[str] = field(default_factory=list)  # validation pairs: never trained on
    val_tgt: list[str] = field(default_factory=list)
    max_chars: int | None = None  # inputs are cut to this many characters for decoding
    src_vocab: CharVocab = field(init=False)
    tgt_vocab: CharVocab = field(init=False)

    def __post_init__(self) -> None:
        self.src_vocab, self.tgt_vocab = CharVocab.build(self.train_src), CharVocab.build(self.train_tgt)

    def tensors(self, src: list[str], tgt: list[str]) -> dict[str, torch.Tensor]:
        """Padded ids: the input (with <eos>), the decoder input <sos> y1 .. yn and its target y1 .. yn <eos>."""
        x, x_len = self.src_vocab.batch(src, eos=True)
        y_in, _ = self.tgt_vocab.batch(tgt, sos=True, eos=False)
        y_out, _ = self.tgt_vocab.batch(tgt, sos=False, eos=True)
        return {"src": x, "src_len": x_len, "tgt_in": y_in, "tgt_out": y_out}

    def changed(self) -> list[int]:
        """The held-out pairs whose output differs from the input: where copying the input cannot be right."""
        return [i for i, (s, t) in enumerate(zip(self.test_src, self.test_tgt)) if s != t]

    def score(self, hyps: list[str], changed: bool = True) -> dict[str, float]:
        """`text_metrics` of `hyps` (one per held-out input) against the held-out outputs; with `changed`, also
        the same on the `changed()` pairs, as exact_changed, chrf_changed and bleu_changed."""
        scores = text_metrics(hyps, self.test_tgt)
        if changed:
            keep = self.changed()
            sub = text_metrics([hyps[i] for i in keep], [self.test_tgt[i] for i in keep])
            scores |= {f"{key}_changed": value for key, value in sub.items()}
        return scores

    def batches(self, texts: Sequence[str], device: torch.device,
                batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Padded input ids and lengths of `texts` on `device`, `batch_size` at a time, each cut to max_chars."""
        for i in range(0, len(texts), batch_size):
            src, src_len = self.src_vocab.batch([t[:self.max_chars] for t in texts[i:i + batch_size]])
            yield src.to(device), src_len.to(device)

    def translate(self, model: Seq2Seq, texts: Sequence[str], device: torch.device, beam: int = 1,
                  alpha: float = 1.0) -> list[str]:
        """The best output for each of `texts`: greedy for beam=1, else beam search ranked by logprob / length^alpha."""
        out: list[str] = []
        for src, src_len in self.batches(texts, device):
            if beam == 1:
                out += [self.tgt_vocab.decode(h.ids) for h in greedy_decode(model, src, src_len, self.max_tgt, alpha)]
            else:
                found = beam_search(model, src, src_len, self.max_tgt, beam, alpha)
                out += [self.tgt_vocab.decode(h[0].ids) for h in found]
        return out


# ---- model ---------------------------------------------------------------------------------------
RNNS = {"gru": nn.GRU, "lstm": nn.LSTM}


class Encoder(nn.Module):
    """Embedding -> bidirectional RNN over a packed batch. Outputs (B, S, hidden), final state (L, B, hidden).

    Each direction has hidden/2 units, so the outputs have the decoder's size and dot-product attention works.
    Packing means the backward direction starts at each sequence's last real character, not at padding.
    """

    def __init__(self, vocab_size: int, embed: int, hidden: int, rnn: str = "gru", layers: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if hidden % 2:
            raise ValueError(f"encoder hidden size must be even (two directions), got {hidden}")
        self.rnn_kind, self.layers = rnn, layers
        self.embedding = nn.Embedding(vocab_size, embed, padding_idx=CharVocab.pad_id)
        self.dropout = nn.Dropout(dropout)
        self.rnn = RNNS[rnn](embed, hidden // 2, layers, batch_first=True, bidirectional=True,
                             dropout=dropout if layers > 1 else 0.0)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | tuple]:
        x = self.dropout(self.embedding(src))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, state = self.rnn(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))

        def join(h: torch.Tensor) -> torch.Tensor:  # (L*2, B, H/2) -> (L, B, H): forward and backward side by side
            h = h.view(self.layers, 2, h.size(1), h.size(2))
            return torch.cat([h[:, 0], h[:, 1]], dim=-1)

        state = tuple(join(s) for s in state) if isinstance(state, tuple) else join(state)
        return out, state


class Decoder(nn.Module):
    """Luong-style decoder: embed -> RNN -> (attention over the encoder outputs) -> tanh(W[h; c]) -> logits.

    `forward` takes any number of target steps: the whole shifted target under teacher forcing, or one
    step (T=1) while decoding. Returns logits (B, T, V), the new state and the weights (B, T, S) or None.
    """

    def __init__(self, vocab_size: int, embed: int, hidden: int, rnn: str = "gru", layers: int = 1,
                 attention: str = "general", dropout: float = 0.0) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed, padding_idx=CharVocab.pad_id)
        self.dropout = nn.Dropout(dropout)
        self.rnn = RNNS[rnn](embed, hidden, layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)
        self.attention = None if attention == "none" else make_attention(attention, hidden, hidden)
        # the "attentional hidden state" of Luong et al.: it sees both the RNN output and the context
        self.combine = nn.Linear(2 * hidden, hidden) if self.attention is not None else None
        self.out = nn.Linear(hidden, vocab_size)

    def forward(self, tokens: torch.Tensor, state: torch.Tensor | tuple, memory: torch.Tensor,
                memory_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | tuple, torch.Tensor | None]:
        # The seq2seq recipe spells this step out, commented, as `recipes.seq2seq.decoder_step`; a test keeps
        # the two equal.
        out, state = self.rnn(self.dropout(self.embedding(tokens)), state)  # (B, T, H)
        weights = None
        if self.attention is not None:
            context, weights = self.attention(out, memory, mask=memory_mask)  # (B, T, H), (B, T, S)
            out = torch.tanh(self.combine(torch.cat([out, context], dim=-1)))
        return self.out(self.dropout(out)), state, weights


class Seq2Seq(nn.Module):
    """Encoder + bridge + decoder. `forward(src, src_lengths, tgt_in)` gives teacher-forced logits (B, T, V)."""

    def __init__(self, src_vocab: int, tgt_vocab: int, embed: int = 64, hidden: int = 256, layers: int = 1,
                 rnn: str = "gru", attention: str = "general", dropout: float = 0.1) -> None:
        super().__init__()
        if rnn not in RNNS:
            raise ValueError(f"unknown rnn {rnn!r}; known: {', '.join(RNNS)}")
        if attention != "none" and attention not in ATTENTION_KINDS:
            raise ValueError(f"unknown attention {attention!r}; known: none, {', '.join(ATTENTION_KINDS)}")
        self.encoder = Encoder(src_vocab, embed, hidden, rnn, layers, dropout)
        self.decoder = Decoder(tgt_vocab, embed, hidden, rnn, layers, attention, dropout)
        self.bridge = nn.Linear(hidden, hidden)  # encoder final state -> decoder initial state
        self.bridge_cell = nn.Linear(hidden, hidden) if rnn == "lstm" else None

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, object]:
        """Encoder outputs (B, S, H), their padding mask (B, 1, S), and the decoder's initial state."""
        memory, state = self.encoder(src, src_lengths)
        mask = padding_mask(src_lengths.to(src.device), src.size(1))
        if isinstance(state, tuple):
            state = (torch.tanh(self.bridge(state[0])), torch.tanh(self.bridge_cell(state[1])))
        else:
            state = torch.tanh(self.bridge(state))
        return memory, mask, state

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor,
                tgt_in: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        memory, mask, state = self.encode(src, src_lengths)
        logits, _, weights = self.decoder(tgt_in, state, memory, mask)
        return logits, weights


# ---- decoding ------------------------------------------------------------------------------------
@dataclass
class Hypothesis:
    """A decoded sequence: token ids (without <sos>/<eos>), summed log-probability, and the ranking score
    logprob / length^alpha. `finished` is False for a sequence cut off at max_len without an <eos>.
    Attention weights (T, S) for greedy decoding."""

    ids: list[int]
    logprob: float
    score: float
    weights: torch.Tensor | None = None
    finished: bool = True

    @property
    def length(self) -> int:
        """Generated steps, the <eos> included: what the score is normalised by."""
        return len(self.ids) + (1 if self.finished else 0)


def rank_hypotheses(hyps: Sequence[Hypothesis], alpha: float) -> list[Hypothesis]:
    """`hyps` rescored as logprob / length^alpha, best first. A sequence that never produced <eos> is not a
    complete output (its probability as one can only be lower), so it ranks after every finished one."""
    rescored = [replace(h, score=h.logprob / h.length ** alpha) for h in hyps]
    return sorted(rescored, key=lambda h: (not h.finished, -h.score))


def _select_state(state: torch.Tensor | tuple, index: torch.Tensor) -> torch.Tensor | tuple:
    """Pick batch rows `index` from an RNN state (hidden, or (hidden, cell) for an LSTM)."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)


@torch.no_grad()
def greedy_decode(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int,
                  alpha: float = 1.0) -> list[Hypothesis]:
    """Take the most likely character at every step until <eos> (or max_len characters)."""
    memory, mask, state = model.encode(src, src_lengths)
    batch = src.size(0)
    tokens = torch.full((batch, 1), CharVocab.sos_id, dtype=torch.long, device=src.device)
    steps, logprobs, attn = [], torch.zeros(batch, device=src.device), []
    finished = torch.zeros(batch, dtype=torch.bool, device=src.device)
    lengths = torch.full((batch,), max_len, dtype=torch.long, device=src.device)
    for t in range(max_len):
        logits, state, weights = model.decoder(tokens, state, memory, mask)
        logp = logits[:, -1].float().log_softmax(-1)
        best, tokens = logp.max(-1, keepdim=True)
        logprobs += torch.where(finished, torch.zeros_like(best[:, 0]), best[:, 0])
        steps.append(tokens[:, 0])
        if weights is not None:
            attn.append(weights[:, 0])
        ended = (tokens[:, 0] == CharVocab.eos_id) & ~finished
        lengths[ended] = t + 1
        finished |= ended
        if bool(finished.all()):
            break
    ids = torch.stack(steps, 1).tolist()
    out = []
    for b in range(batch):
        n = int(lengths[b])
        seq = [i for i in ids[b][:n] if i != CharVocab.eos_id]
        w = torch.stack([a[b] for a in attn[:n]]).cpu() if attn else None
        out.append(Hypothesis(seq, float(logprobs[b]), float(logprobs[b]) / n ** alpha, w, bool(finished[b])))
    return out


@torch.no_grad()
def beam_search(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int, beam: int = 5,
                alpha: float = 1.0) -> list[list[Hypothesis]]:
    """Keep the `beam` most probable partial sequences per input; return up to `beam` hypotheses per input,
    best first under length normalisation, logprob / length^alpha.

    Without normalisation (alpha=0) beam search favours short outputs, since every extra character adds a
    negative log-probability; alpha=1 ranks by the mean log-probability per character. The search itself
    does not depend on alpha (see `beam_candidates`), so `rank_hypotheses` can rescore its output under
    any alpha. With beam=1 this is exactly greedy decoding.
    """
    return [rank_hypotheses(found, alpha)[:beam] for found in beam_candidates(model, src, src_lengths, max_len, beam)]


@torch.no_grad()
def beam_candidates(model: Seq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int,
                    beam: int = 5) -> list[list[Hypothesis]]:
    """Every hypothesis a width-`beam` search finishes, per input, unranked (score = logprob).

    A sequence ends when <eos> is among the `beam` best candidates of a step. An input is done once it has
    `beam` finished hypotheses *and* no live sequence is more probable than the `beam`-th best of them:
    log-probabilities only fall as a sequence grows, so from then on nothing can enter the `beam` most
    probable. (Stopping at `beam` finished alone can drop a live sequence more probable than all of them,
    the greedy one included.) Inputs still undone at max_len also get their live sequences, unfinished.
    """
    memory, mask, state = model.encode(src, src_lengths)
    batch, k, device = src.size(0), beam, src.device
    # every input's encoding repeated k times: row b*k + j is beam j of input b
    rows = torch.arange(batch, device=device).repeat_interleave(k)
    memory, mask, state = memory[rows], mask[rows], _select_state(state, rows)
    tokens = torch.full((batch * k, 1), CharVocab.sos_id, dtype=torch.long, device=device)
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0  # at the start all beams are the same sequence: expand only the first
    history = torch.zeros(batch * k, 0, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    done = [False] * batch
    for _step in range(max_len):
        logits, state, _ = model.decoder(tokens, state, memory, mask)
        logp = logits[:, -1].float().log_softmax(-1)  # (B*k, V)
        vocab = logp.size(-1)
        candidates = (scores.unsqueeze(-1) + logp.view(batch, k, vocab)).view(batch, k * vocab)
        top_scores, top_index = candidates.topk(2 * k, dim=-1)  # 2k: enough to keep k alive after some end
        top_beam, top_token = top_index // vocab, top_index % vocab
        new_scores = torch.full((batch, k), float("-inf"), device=device)
        new_beam = torch.zeros(batch, k, dtype=torch.long, device=device)
        new_token = torch.full((batch, k), CharVocab.pad_id, dtype=torch.long, device=device)
        ts, tb, tt = top_scores.tolist(), top_beam.tolist(), top_token.tolist()
        for b in range(batch):
            if done[b]:
                continue
            alive, best_alive = 0, float("-inf")
            for rank in range(2 * k):
                score, j, token = ts[b][rank], tb[b][rank], tt[b][rank]
                if score == float("-inf"):
                    break
                if token == CharVocab.eos_id:
                    if rank < k:  # an ending counts only if it is among the k best candidates
                        ids = history[b * k + j].tolist()
                        finished[b].append(Hypothesis(ids, score, score))
                    continue
                new_scores[b, alive], new_beam[b, alive], new_token[b, alive] = score, j, token
                best_alive = max(best_alive, score)
                alive += 1
                if alive == k:
                    break
            if len(finished[b]) >= k:
                kth_best = sorted((h.logprob for h in finished[b]), reverse=True)[k - 1]
                done[b] = best_alive <= kth_best
            done[b] = done[b] or alive == 0
        if all(done):
            break
        parent = (torch.arange(batch, device=device).unsqueeze(1) * k + new_beam).view(-1)
        history = torch.cat([history[parent], new_token.view(-1, 1)], dim=1)
        state = _select_state(state, parent)
        tokens, scores = new_token.view(-1, 1), new_scores
    for b in range(batch):
        if not done[b]:  # ran out of steps: the live beams count as (unfinished) hypotheses
            for j in range(k):
                score = float(scores[b, j])
                if score > float("-inf"):
                    finished[b].append(Hypothesis(history[b * k + j].tolist(), score, score, finished=False))
    return finished


# ---- training helpers ----------------------------------------------------------------------------
def warmup_cosine(step: int, total: int, peak: float, warmup: int) -> float:
    """The learning rate at `step` of `total`: linear warm-up to `peak` over `warmup` steps, then cosine decay to
    5% of it (RNNs are easily wrecked by Adam's large early steps)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def teacher_forcing(step: int, total: int, start: float, end: float) -> float:
    """The teacher-forcing ratio at `step` of `total`: linear from `start` to `end`. It is the share of decoder
    inputs that are the true previous character; the rest are the model's own guesses."""
    return start + (end - start) * step / max(1, total - 1)


def mix_own_predictions(model: Seq2Seq, batch: dict[str, torch.Tensor], ratio: float,
                        generator: torch.Generator) -> torch.Tensor:
    """Scheduled sampling, in parallel: with probability 1 - ratio, a decoder input character is replaced
    by the model's own prediction for that position (from a teacher-forced pass without gradients).

    This exposes the decoder to its own mistakes during training, as at inference, while keeping the
    decoder a single call over the whole sequence (Duckworth et al., 2019) instead of a Python loop.
    `batch` holds "src", "src_len" and "tgt_in" (<sos> y1 .. yn); the draw uses `generator` (a CPU one).
    """
    tgt_in = batch["tgt_in"]
    if ratio >= 1.0:
        return tgt_in
    with torch.no_grad():
        logits, _ = model(batch["src"], batch["src_len"], tgt_in)
    predicted = logits.argmax(-1)  # predicted[:, t] is the guess for tgt_in[:, t + 1]
    replace = (torch.rand(tgt_in[:, 1:].shape, generator=generator) >= ratio).to(tgt_in.device)
    replace &= tgt_in[:, 1:] != CharVocab.pad_id
    mixed = tgt_in.clone()
    mixed[:, 1:] = torch.where(replace, predicted[:, :-1], tgt_in[:, 1:])
    return mixed


def length_bucketed_batches(lengths: torch.Tensor, batch_size: int, seed: int,
                            order: Callable[[int, int, int], torch.Tensor],
                            start_step: int = 0) -> Iterator[torch.Tensor]:
    """Endless index batches, each of examples of similar length, so little of an RNN's time goes into padding.

    Per epoch: the shuffle `order(n, seed, epoch)` (e.g. `engine.loop.epoch_order`), cut into windows of 32
    batches, each window sorted by length and cut into batches, then the batches shuffled. A function of
    (seed, step) only, so a run resumed at `start_step` sees the same batches.
    """
    n = len(lengths)
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ConfigError(f"batch size {batch_size}: larger than the {n} training examples")
    epoch, offset = divmod(start_step, per_epoch)
    while True:
        batches: list[torch.Tensor] = []
        for window in order(n, seed, epoch)[:per_epoch * batch_size].split(batch_size * 32):
            batches += window[torch.argsort(lengths[window], stable=True)].split(batch_size)
        shuffle = torch.randperm(per_epoch, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        yield from (batches[int(shuffle[i])] for i in range(offset, per_epoch))
        epoch, offset = epoch + 1, 0


def trimmed_batch(data: dict[str, torch.Tensor], idx: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """Rows `idx` of padded (src, src_len, tgt_in, tgt_out) tensors, cut to this batch's longest input and
    output (no RNN time spent on all-padding columns), on `device`. Read on the CPU: no device sync."""
    batch = {k: v[idx] for k, v in data.items()}
    width = int(batch["tgt_in"].ne(CharVocab.pad_id).sum(1).max())
    batch["tgt_in"], batch["tgt_out"] = batch["tgt_in"][:, :width], batch["tgt_out"][:, :width]
    batch["src"] = batch["src"][:, :int(batch["src_len"].max())]
    return {k: v.to(device) for k, v in batch.items()}


# ---- scoring outputs ----------------------------------------------------------------------------
def text_metrics(hyps: list[str], refs: list[str]) -> dict[str, float]:
    """Exact match (fraction), corpus chrF and BLEU (sacrebleu) of `hyps` against `refs`; NaN for no pairs."""
    import sacrebleu

    if not refs:
        return {"exact": float("nan"), "chrf": float("nan"), "bleu": float("nan")}
    return {"exact": sum(h == r for h, r in zip(hyps, refs)) / len(refs),
            "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
            "bleu": sacrebleu.corpus_bleu(hyps, [refs]).score}


def choose_length_alpha(model: Seq2Seq, task: TextPairs, beam: int, alphas: Sequence[float],
                        device: torch.device | None = None) -> tuple[float, dict[float, float]]:
    """The length normalisation among `alphas` whose beam-search outputs score the best chrF on the task's
    validation pairs (ties: the smaller alpha). Returns (that alpha, chrF per alpha).

    The search does not depend on alpha (it keeps the most probable sequences; alpha only ranks the finished
    ones), so one search on the validation inputs is ranked under every candidate alpha.
    """
    found: list[list[Hypothesis]] = []
    for src, src_len in task.batches(task.val_src, device or torch.device("cpu")):
        found += beam_candidates(model, src, src_len, task.max_tgt, beam)
    chrf = {}
    for alpha in alphas:
        hyps = [task.tgt_vocab.decode(rank_hypotheses(f, alpha)[0].ids) for f in found]
        chrf[alpha] = text_metrics(hyps, task.val_tgt)["chrf"]
    return max(chrf, key=lambda a: (chrf[a], -a)), chrf
