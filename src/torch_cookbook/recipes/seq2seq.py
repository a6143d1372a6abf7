"""Sequence-to-sequence with and without attention, on two character-level tasks that ship offline.

Seed Q32 lists the steps of a seq2seq model and Q34 sketches an attention decoder (with shape bugs).
This recipe builds both for real and measures what attention buys:
  dates  human-written dates in 17 CLDR locales and 4 formats -> ISO 8601 ("6 janvier 1985" -> "1985-01-06"),
         exact match on held-out calendar dates never seen in training;
  names  English -> French names from pycountry's gettext catalogues ("Germany" -> "Allemagne"), chrF/BLEU
         (sacrebleu) and exact match on all held-out pairs and on those whose French differs, beside a
         copy-the-input baseline.
Each task trains two variants, with attention and without (the encoder's final state is all the decoder
gets), and decodes greedily and with a length-normalised beam search.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from torch_cookbook.engine.checkpoint import load_checkpoint
from torch_cookbook.engine.config import BaseConfig, ConfigError, Target, config_hash, param
from torch_cookbook.engine.loop import autocast, backward_step, epoch_order, grad_scaler
from torch_cookbook.engine.progress import Progress
from torch_cookbook.engine.runs import Run
from torch_cookbook.errors import DataError
from torch_cookbook.nn.attention import ATTENTION_KINDS
from torch_cookbook.nn.seq2seq import (
    CharVocab,
    Hypothesis,
    Seq2Seq,
    beam_candidates,
    beam_search,
    greedy_decode,
    rank_hypotheses,
)

seed_question = "Q32 Seq2Seq / Q34 Attention"
summary = "Char-level GRU/LSTM seq2seq with/without attention: dates -> ISO, English -> French names; beam search."


@dataclass
class Config(BaseConfig):
    task: str = param("both", "which task(s) to train: dates, names or both", choices=("both", "dates", "names"))
    rnn: str = param("gru", "recurrent cell of encoder and decoder", choices=("gru", "lstm"))
    attention: str = param("general", "scoring function of the attention variant", choices=ATTENTION_KINDS)
    compare_plain: bool = param(True, "also train the same model without attention, for comparison")
    embed: int = param(64, "character embedding size", low=1)
    hidden: int = param(128, "decoder hidden size = encoder output size (two directions of hidden/2)", low=2)
    layers: int = param(1, "RNN layers in encoder and decoder", low=1, high=4)
    dropout: float = param(0.1, "dropout on embeddings and the decoder output", low=0, high=1, high_open=True)
    dates_steps: int = param(1500, "training steps per dates variant", low=1)
    names_steps: int = param(3000, "training steps per names variant", low=1)
    batch_size: int = param(64, "minibatch size", low=1)
    lr: float = param(3e-3, "peak Adam learning rate (linear warm-up, then cosine decay)", low=0, low_open=True)
    warmup: int = param(200, "warm-up steps", low=0)
    clip: float = param(1.0, "gradient-norm clipping (0 = off)", low=0)
    tf_start: float = param(1.0, "teacher-forcing ratio at the first step", low=0, high=1)
    tf_end: float = param(0.8, "teacher-forcing ratio at the last step (linear schedule in between)", low=0, high=1)
    dates_train: int = param(20000, "generated training dates", low=1)
    dates_test: int = param(2000, "held-out dates (calendar days never seen in training)", low=1)
    names_test_fraction: float = param(0.1, "fraction of English names held out", low=0, high=1, low_open=True,
                                       high_open=True)
    names_val_fraction: float = param(0.05, "fraction of English names carved from the training side as a "
                                      "validation split, which chooses the names' length normalisation (0 = none)",
                                      low=0, high=1, high_open=True)
    names_train_limit: int = param(0, "train on the first N name pairs only (0 = all)", low=0)
    names_val_limit: int = param(0, "choose on the first N validation name pairs only (0 = all)", low=0)
    names_test_limit: int = param(0, "evaluate on the first N held-out name pairs only (0 = all)", low=0)
    max_src_len: int = param(64, "longest input in characters; longer inputs are truncated (with a notice)", low=1)
    beam: int = param(5, "beam width", low=1, high=64)
    length_alpha: float = param(1.0, "length normalisation of dates (and of names without a validation split): "
                                "hypotheses ranked by logprob / length^alpha", low=0)
    length_alphas: list[float] = param([0.0, 0.25, 0.5, 0.75, 1.0], "names: the alphas tried on the validation "
                                       "split; the best chrF there (ties: the smaller) decodes the held-out set", low=0)
    eval_every: int = param(500, "log held-out loss and greedy accuracy every N steps", low=1)
    eval_subset: int = param(400, "held-out examples used for those periodic checks", low=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden % 2:
            raise ConfigError(f"--hidden {self.hidden}: must be even (the encoder has two directions of hidden/2)")


profiles = {
    "smoke": {"hidden": 16, "embed": 8, "dates_steps": 10, "names_steps": 10, "dates_train": 300, "dates_test": 20,
              "names_train_limit": 300, "names_val_limit": 20, "names_test_limit": 20, "eval_every": 5,
              "eval_subset": 10, "beam": 2, "batch_size": 16, "warmup": 2},
    "quick": {"hidden": 64, "dates_steps": 300, "names_steps": 300, "dates_train": 5000, "dates_test": 300,
              "names_val_limit": 300, "names_test_limit": 300, "eval_every": 100, "eval_subset": 100},
    "full": {},
}

targets = [
    Target("dates_exact", ">=", 0.99),  # exact match on held-out dates, attention model, beam search
    Target("names_chrf_changed", ">=", 60.0),  # chrF on held-out names whose French differs from the English
    Target("names_chrf_changed_gain_vs_plain", ">=", 10.0),  # attention vs the same model without it
    Target("names_chrf_changed_gain_vs_copy", ">=", 10.0),  # vs copying the English name
    Target("dates_beam_minus_greedy", ">=", 0.0),  # beam search (width 5) never worse than greedy...
    Target("names_beam_minus_greedy", ">=", 0.0),  # ...on either held-out set
]

DATES_MAX_TGT = 11  # "YYYY-MM-DD" + <eos>
NAMES_MAX_TGT = 72


# ---- data ----------------------------------------------------------------------------------------
@dataclass
class Task:
    """One task's text pairs and vocabularies, plus the training set as padded id tensors."""

    name: str
    train_src: list[str]
    train_tgt: list[str]
    test_src: list[str]
    test_tgt: list[str]
    src_vocab: CharVocab
    tgt_vocab: CharVocab
    max_tgt: int
    val_src: list[str] = field(default_factory=list)  # validation pairs (names only): never trained on
    val_tgt: list[str] = field(default_factory=list)

    def tensors(self, src: list[str], tgt: list[str]) -> dict[str, torch.Tensor]:
        x, x_len = self.src_vocab.batch(src, eos=True)
        y_in, _ = self.tgt_vocab.batch(tgt, sos=True, eos=False)  # decoder input: <sos> y1 .. yn
        y_out, _ = self.tgt_vocab.batch(tgt, sos=False, eos=True)  # decoder target: y1 .. yn <eos>
        return {"src": x, "src_len": x_len, "tgt_in": y_in, "tgt_out": y_out}


def load_task(cfg: Config, name: str) -> Task:
    if name == "dates":
        from torch_cookbook.data import dates

        train, test = dates.load(cfg.dates_train, cfg.dates_test, seed=cfg.seed)
        pairs = (train.src, train.tgt, test.src, test.tgt)
        val_pairs: tuple[list[str], list[str]] = ([], [])  # dates choose nothing on validation
        max_tgt = DATES_MAX_TGT
    else:
        from torch_cookbook.data import names

        train, val, test = names.split(seed=cfg.seed, test_fraction=cfg.names_test_fraction,
                                       val_fraction=cfg.names_val_fraction, max_len=cfg.max_src_len - 1)
        if cfg.names_train_limit:
            train = train.subset(list(range(min(cfg.names_train_limit, len(train)))))
        if cfg.names_val_limit:
            val = val.subset(list(range(min(cfg.names_val_limit, len(val)))))
        if cfg.names_test_limit:
            test = test.subset(list(range(min(cfg.names_test_limit, len(test)))))
        pairs = (train.src, train.tgt, test.src, test.tgt)
        val_pairs = (list(val.src), list(val.tgt))
        max_tgt = NAMES_MAX_TGT
    train_src, train_tgt, test_src, test_tgt = (list(p) for p in pairs)
    # vocabularies come from the training side only: held-out characters never seen map to <unk>
    return Task(name, train_src, train_tgt, test_src, test_tgt, CharVocab.build(train_src),
                CharVocab.build(train_tgt), max_tgt, *val_pairs)


def tasks_of(cfg: Config) -> list[str]:
    return ["dates", "names"] if cfg.task == "both" else [cfg.task]


def variants_of(cfg: Config) -> list[tuple[str, str]]:
    """(variant name, attention kind or "none") per task: names_attention, names_plain, ..."""
    out = []
    for task in tasks_of(cfg):
        out.append((f"{task}_attention", cfg.attention))
        if cfg.compare_plain:
            out.append((f"{task}_plain", "none"))
    return out


def length_bucketed_batches(lengths: torch.Tensor, batch_size: int, seed: int,
                            start_step: int = 0) -> Iterator[tuple[int, int, torch.Tensor]]:
    """Endless (step, epoch, indices) like `engine.loop.minibatches`, but each batch holds examples of
    similar length, so little of an RNN's time goes into padding (names run 3 to 64 characters).

    Per epoch: the (seed, epoch) shuffle, cut into windows of 32 batches, each window sorted by length and
    cut into batches, then the batches shuffled. A function of (seed, step) only, so resume is exact.
    """
    n = len(lengths)
    per_epoch = n // batch_size
    if per_epoch == 0:
        raise ConfigError(f"--batch_size {batch_size} is larger than the {n} training examples")
    step = start_step
    while True:
        epoch, offset = divmod(step, per_epoch)
        order = epoch_order(n, seed, epoch)[:per_epoch * batch_size]
        batches: list[torch.Tensor] = []
        for window in order.split(batch_size * 32):
            batches += window[torch.argsort(lengths[window], stable=True)].split(batch_size)
        shuffle = torch.randperm(per_epoch, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        for i in range(offset, per_epoch):
            yield step, epoch, batches[int(shuffle[i])]
            step += 1


# ---- model ---------------------------------------------------------------------------------------
def make_model(cfg: Config, task: Task, attention: str) -> Seq2Seq:
    return Seq2Seq(len(task.src_vocab), len(task.tgt_vocab), cfg.embed, cfg.hidden, cfg.layers, cfg.rnn,
                   attention, cfg.dropout)


def lr_at(cfg: Config, step: int, total: int) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to 5% of it."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, total - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def teacher_forcing_at(cfg: Config, step: int, total: int) -> float:
    return cfg.tf_start + (cfg.tf_end - cfg.tf_start) * step / max(1, total - 1)


def mix_own_predictions(model: Seq2Seq, batch: dict[str, torch.Tensor], ratio: float,
                        generator: torch.Generator) -> torch.Tensor:
    """Scheduled sampling, in parallel: with probability 1 - ratio, a decoder input character is replaced
    by the model's own prediction for that position (from a teacher-forced pass without gradients).

    This exposes the decoder to its own mistakes during training, as at inference, while keeping the
    decoder a single call over the whole sequence (Duckworth et al., 2019) instead of a Python loop.
    """
    tgt_in = batch["tgt_in"]
    if ratio >= 1.0:
        return tgt_in
    with torch.no_grad():
        logits, _ = model(batch["src"], batch["src_len"], tgt_in)
    predicted = logits.argmax(-1)  # predicted[:, t] is the guess for tgt_in[:, t + 1]
    replace = torch.rand(tgt_in[:, 1:].shape, generator=generator) >= ratio
    replace &= tgt_in[:, 1:] != CharVocab.pad_id
    mixed = tgt_in.clone()
    mixed[:, 1:] = torch.where(replace, predicted[:, :-1], tgt_in[:, 1:])
    return mixed


# ---- train one variant ---------------------------------------------------------------------------
def train_variant(cfg: Config, run: Run, task: Task, attention: str) -> dict:
    steps = cfg.dates_steps if task.name == "dates" else cfg.names_steps
    data = task.tensors(task.train_src, task.train_tgt)
    torch.manual_seed(cfg.seed)  # same initial weights for the attention and the plain model
    model = make_model(cfg, task, attention).to(run.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scaler = grad_scaler(run.device, cfg.amp)
    ckpt = run.checkpointer(every=cfg.eval_every, model=model, optimizer=optimizer, scaler=scaler)
    start = ckpt.restore()
    ckpt.extra.update(src_vocab=task.src_vocab.state_dict(), tgt_vocab=task.tgt_vocab.state_dict())

    model.train()
    lengths = data["src_len"] + data["tgt_in"].ne(CharVocab.pad_id).sum(1)
    batches = length_bucketed_batches(lengths, cfg.batch_size, cfg.seed, start_step=start)
    with Progress(steps, f"{run.name}", start=start) as bar:
        for step, _epoch, idx in batches:
            if step >= steps:
                break
            for group in optimizer.param_groups:
                group["lr"] = lr_at(cfg, step, steps)
            batch = {k: v[idx] for k, v in data.items()}
            width = int(batch["tgt_in"].ne(CharVocab.pad_id).sum(1).max())  # trim padding beyond this batch
            batch["tgt_in"], batch["tgt_out"] = batch["tgt_in"][:, :width], batch["tgt_out"][:, :width]
            batch["src"] = batch["src"][:, :int(batch["src_len"].max())]
            batch = {k: v.to(run.device) for k, v in batch.items()}
            generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # resumable randomness
            tgt_in = mix_own_predictions(model, batch, teacher_forcing_at(cfg, step, steps), generator)
            with autocast(run.device, cfg.amp):
                logits, _ = model(batch["src"], batch["src_len"], tgt_in)
                loss = F.cross_entropy(logits.flatten(0, 1).float(), batch["tgt_out"].flatten(),
                                       ignore_index=CharVocab.pad_id)
            backward_step(loss, optimizer, scaler, clip_norm=cfg.clip)
            done = step + 1
            bar.advance(1, loss=loss.item())
            if done % cfg.eval_every == 0 or done == steps:
                model.eval()
                run.log({"train/loss": loss.item(), **periodic_check(cfg, model, task, run.device)}, done)
                model.train()
            ckpt.after_step(done, loss)
    ckpt.save(steps)
    model.eval()
    return run.finish(evaluate_model(cfg, model, task, run.device))


@torch.no_grad()
def periodic_check(cfg: Config, model: Seq2Seq, task: Task, device: torch.device) -> dict[str, float]:
    """Held-out teacher-forced loss and greedy exact match on a small subset, for the learning curves."""
    src, tgt = task.test_src[:cfg.eval_subset], task.test_tgt[:cfg.eval_subset]
    t = {k: v.to(device) for k, v in task.tensors(src, tgt).items()}
    logits, _ = model(t["src"], t["src_len"], t["tgt_in"])
    loss = F.cross_entropy(logits.flatten(0, 1), t["tgt_out"].flatten(), ignore_index=CharVocab.pad_id).item()
    hyps = decode(cfg, model, task, src, device, beam=1)
    exact = sum(task.tgt_vocab.decode(h[0].ids) == y for h, y in zip(hyps, tgt)) / len(tgt)
    return {"eval/loss": loss, "eval/exact": exact}


# ---- decoding and metrics ------------------------------------------------------------------------
def batches_of(cfg: Config, task: Task, texts: list[str], device: torch.device,
               batch_size: int = 256) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Padded id batches of `texts`; inputs longer than max_src_len are truncated."""
    for i in range(0, len(texts), batch_size):
        chunk = [t[:cfg.max_src_len - 1] for t in texts[i:i + batch_size]]  # -1: room for <eos>
        src, src_len = task.src_vocab.batch(chunk)
        yield src.to(device), src_len.to(device)


def decode(cfg: Config, model: Seq2Seq, task: Task, texts: list[str], device: torch.device, beam: int,
           alpha: float | None = None) -> list[list[Hypothesis]]:
    """Decode `texts`; beam=1 is greedy. Hypotheses ranked by logprob / length^alpha (default cfg.length_alpha)."""
    alpha = cfg.length_alpha if alpha is None else alpha
    out: list[list[Hypothesis]] = []
    for src, src_len in batches_of(cfg, task, texts, device):
        if beam == 1:
            out += [[h] for h in greedy_decode(model, src, src_len, task.max_tgt, alpha)]
        else:
            out += beam_search(model, src, src_len, task.max_tgt, beam, alpha)
    return out


def choose_length_alpha(cfg: Config, model: Seq2Seq, task: Task, device: torch.device) -> tuple[float, dict]:
    """The length normalisation with the best beam-search chrF on the validation split (ties: the smaller alpha).

    The search does not depend on alpha (it keeps the most probable sequences; alpha only ranks the finished
    ones), so one search on the validation inputs is ranked under every candidate alpha.
    """
    found: list[list[Hypothesis]] = []
    for src, src_len in batches_of(cfg, task, task.val_src, device):
        found += beam_candidates(model, src, src_len, task.max_tgt, cfg.beam)
    chrf = {}
    for alpha in cfg.length_alphas:
        hyps = [task.tgt_vocab.decode(rank_hypotheses(f, alpha)[0].ids) for f in found]
        chrf[alpha] = text_metrics(hyps, task.val_tgt)["chrf"]
    best = max(chrf, key=lambda a: (chrf[a], -a))
    greedy = [task.tgt_vocab.decode(h[0].ids) for h in decode(cfg, model, task, task.val_src, device, beam=1)]
    return best, {"val_chrf_greedy": text_metrics(greedy, task.val_tgt)["chrf"],
                  "val_chrf_by_alpha": {f"{a:g}": c for a, c in chrf.items()}, "val_size": len(task.val_src)}


def text_metrics(hyps: list[str], refs: list[str]) -> dict[str, float]:
    import sacrebleu

    if not refs:
        return {"exact": float("nan"), "chrf": float("nan"), "bleu": float("nan")}
    return {"exact": sum(h == r for h, r in zip(hyps, refs)) / len(refs),
            "chrf": sacrebleu.corpus_chrf(hyps, [refs]).score,
            "bleu": sacrebleu.corpus_bleu(hyps, [refs]).score}


def evaluate_model(cfg: Config, model: Seq2Seq, task: Task, device: torch.device) -> dict:
    """Greedy and beam outputs on the whole held-out set, and their metrics (names: also the changed subset).

    Names with a validation split first choose the length normalisation there; dates use cfg.length_alpha.
    """
    result: dict = {"length_alpha": cfg.length_alpha}
    if task.val_src and cfg.beam > 1:
        result["length_alpha"], validation = choose_length_alpha(cfg, model, task, device)
        result.update(validation)
    for mode, width in (("greedy", 1), ("beam", cfg.beam)):
        decoded = decode(cfg, model, task, task.test_src, device, width, result["length_alpha"])
        hyps = [task.tgt_vocab.decode(h[0].ids) for h in decoded]
        result[f"predictions_{mode}"] = hyps
        for key, value in text_metrics(hyps, task.test_tgt).items():
            result[f"{key}_{mode}"] = value
        if task.name == "names":
            changed = [i for i, (s, t) in enumerate(zip(task.test_src, task.test_tgt)) if s != t]
            sub = text_metrics([hyps[i] for i in changed], [task.test_tgt[i] for i in changed])
            for key, value in sub.items():
                result[f"{key}_changed_{mode}"] = value
    return result


def copy_baseline(task: Task) -> dict[str, float]:
    changed = [i for i, (s, t) in enumerate(zip(task.test_src, task.test_tgt)) if s != t]
    out = {f"{k}_all": v for k, v in text_metrics(task.test_src, task.test_tgt).items()}
    sub = text_metrics([task.test_src[i] for i in changed], [task.test_tgt[i] for i in changed])
    out.update({f"{k}_changed": v for k, v in sub.items()})
    return out


def summarise(cfg: Config, results: dict[str, dict], tasks: dict[str, Task]) -> dict[str, float | None]:
    """The run's headline numbers. Headline = attention model decoded with beam search."""
    m: dict[str, float | None] = {}
    if "dates" in tasks:
        a = results["dates_attention"]
        m["dates_exact"] = a["exact_beam"]
        m["dates_exact_greedy"] = a["exact_greedy"]
        m["dates_beam_minus_greedy"] = a["exact_beam"] - a["exact_greedy"]
        if "dates_plain" in results:
            p = results["dates_plain"]
            m["dates_plain_exact"] = p["exact_beam"]
            m["dates_plain_exact_greedy"] = p["exact_greedy"]
        m["dates_test_size"] = len(tasks["dates"].test_src)
    if "names" in tasks:
        a = results["names_attention"]
        copy = copy_baseline(tasks["names"])
        m["names_chrf_changed"] = a["chrf_changed_beam"]
        m["names_chrf_changed_greedy"] = a["chrf_changed_greedy"]
        m["names_bleu_changed"] = a["bleu_changed_beam"]
        m["names_exact_changed"] = a["exact_changed_beam"]
        m["names_chrf_all"] = a["chrf_beam"]
        m["names_chrf_all_greedy"] = a["chrf_greedy"]
        m["names_bleu_all"] = a["bleu_beam"]
        m["names_exact_all"] = a["exact_beam"]
        m["names_beam_minus_greedy"] = a["chrf_beam"] - a["chrf_greedy"]  # chrF points, all held-out pairs
        m["names_length_alpha_chosen"] = a["length_alpha"]  # on the validation split (or cfg.length_alpha)
        if "val_chrf_by_alpha" in a:
            m["names_val_size"] = a["val_size"]
            m["names_val_chrf_greedy"] = a["val_chrf_greedy"]
            for alpha, chrf in a["val_chrf_by_alpha"].items():
                m[f"names_val_chrf_alpha{alpha}"] = chrf
        m["names_copy_chrf_changed"] = copy["chrf_changed"]
        m["names_copy_bleu_changed"] = copy["bleu_changed"]
        m["names_copy_chrf_all"] = copy["chrf_all"]
        m["names_copy_exact_all"] = copy["exact_all"]
        m["names_chrf_changed_gain_vs_copy"] = a["chrf_changed_beam"] - copy["chrf_changed"]
        if "names_plain" in results:
            p = results["names_plain"]
            m["names_plain_chrf_changed"] = p["chrf_changed_beam"]
            m["names_plain_chrf_all"] = p["chrf_beam"]
            m["names_plain_exact_all"] = p["exact_beam"]
            m["names_chrf_changed_gain_vs_plain"] = a["chrf_changed_beam"] - p["chrf_changed_beam"]
            m["names_plain_length_alpha_chosen"] = p["length_alpha"]
        m["names_test_size"] = len(tasks["names"].test_src)
        m["names_test_changed_size"] = sum(s != t for s, t in zip(tasks["names"].test_src, tasks["names"].test_tgt))
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()}


# ---- the recipe ----------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    tasks = {name: load_task(cfg, name) for name in tasks_of(cfg)}
    results = {}
    for name, attention in variants_of(cfg):
        sub = run.variant(name)
        task = tasks[name.split("_")[0]]
        results[name] = sub.result or train_variant(cfg, sub, task, attention)

    if run.is_main:
        plot_curves(cfg, run)
        plot_length(cfg, run, results, tasks)
        plot_attention(cfg, run, tasks)
    return summarise(cfg, results, tasks)


def evaluate(cfg: Config, run: Run) -> dict[str, float | None]:
    """Every metric recomputed from the saved checkpoints (decoding is deterministic)."""
    tasks = {name: load_task(cfg, name) for name in tasks_of(cfg)}
    results = {}
    for name, _ in variants_of(cfg):
        task = tasks[name.split("_")[0]]
        model, _, _ = load_variant(cfg, run, name)
        results[name] = evaluate_model(cfg, model, task, run.device)
    return summarise(cfg, results, tasks)


def load_variant(cfg: Config, run: Run, name: str) -> tuple[Seq2Seq, CharVocab, CharVocab]:
    """The trained model of variant `name` and the vocabularies saved with it."""
    attention = dict(variants_of(cfg)).get(name)
    if attention is None:
        known = ", ".join(n for n, _ in variants_of(cfg))
        raise ConfigError(f"this run has no variant {name!r}; it has: {known}")
    ckpt = load_checkpoint(run.dir / "variants" / name / "checkpoints" / "last.pt", "seq2seq", config_hash(cfg))
    src_vocab = CharVocab.from_state_dict(ckpt["extra"]["src_vocab"])
    tgt_vocab = CharVocab.from_state_dict(ckpt["extra"]["tgt_vocab"])
    model = Seq2Seq(len(src_vocab), len(tgt_vocab), cfg.embed, cfg.hidden, cfg.layers, cfg.rnn, attention,
                    cfg.dropout).to(run.device)
    model.load_state_dict(ckpt["state"]["model"])
    return model.eval(), src_vocab, tgt_vocab


# ---- plots ---------------------------------------------------------------------------------------
def plot_curves(cfg: Config, run: Run) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, _ in variants_of(cfg):
        sub = run.variant(name)
        for ax, key in zip(axes, ("eval/loss", "eval/exact")):
            curve = sub.history(key)
            if curve:
                steps, values = zip(*curve)
                ax.plot(steps, values, label=name, linestyle="-" if "attention" in name else "--")
    axes[0].set(xlabel="training step", ylabel="held-out loss (teacher forced)", yscale="log")
    axes[1].set(xlabel="training step", ylabel=f"greedy exact match (first {cfg.eval_subset} held-out)",
                ylim=(0, 1))
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(run.plot_path("learning_curves"), dpi=100)
    plt.close(fig)


def plot_length(cfg: Config, run: Run, results: dict[str, dict], tasks: dict[str, Task]) -> None:
    """Exact match against input length, with and without attention: the fixed-vector bottleneck shows
    as accuracy falling with length."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, (task_name, task) in zip(axes[0], tasks.items()):
        lengths = [len(s) for s in task.test_src]
        edges = sorted({0, *[int(q) for q in torch.tensor(lengths, dtype=torch.float).quantile(
            torch.tensor([0.2, 0.4, 0.6, 0.8])).tolist()], max(lengths) + 1})
        for name in (f"{task_name}_attention", f"{task_name}_plain"):
            if name not in results:
                continue
            preds = results[name]["predictions_beam"]
            xs, ys = [], []
            for lo, hi in zip(edges, edges[1:]):
                idx = [i for i, n in enumerate(lengths) if lo <= n < hi]
                if idx:
                    xs.append(sum(lengths[i] for i in idx) / len(idx))
                    ys.append(sum(preds[i] == task.test_tgt[i] for i in idx) / len(idx))
            ax.plot(xs, ys, marker="o", label=name.split("_")[1])
        ax.set(xlabel="input length (characters, bin mean)", ylabel="exact match (beam)", ylim=(0, 1.02),
               title=task_name)
        ax.legend()
    fig.tight_layout()
    fig.savefig(run.plot_path("accuracy_vs_length"), dpi=100)
    plt.close(fig)


EXAMPLES = {"dates": ["Sonntag, 6. Januar 1985", "6 janv. 1985", "domingo, 6 de janeiro de 1985"],
            "names": ["Tunisian Arabic", "Republic of Finland", "North Gaza"]}


def plot_attention(cfg: Config, run: Run, tasks: dict[str, Task]) -> None:
    """Heatmaps of the attention weights of greedy decoding (rows: output characters, columns: input)."""
    pairs = [(t, s) for t in tasks for s in EXAMPLES[t]]
    fig, axes = plt.subplots(len(tasks), 3, figsize=(15, 3.6 * len(tasks)), squeeze=False)
    for ax, (task_name, text) in zip(axes.flat, pairs):
        model, src_vocab, tgt_vocab = load_variant(cfg, run, f"{task_name}_attention")
        src, src_len = src_vocab.batch([text])
        hyp = greedy_decode(model, src.to(run.device), src_len.to(run.device), tasks[task_name].max_tgt)[0]
        out = tgt_vocab.decode(hyp.ids)
        ax.imshow(hyp.weights.numpy(), cmap="viridis", aspect="auto", vmin=0, vmax=1)
        ax.set_xticks(range(len(text) + 1), list(text) + ["</s>"], fontsize=7)
        ax.set_yticks(range(len(out) + 1), list(out) + ["</s>"], fontsize=7)
        ax.set_title(f"{text} -> {out}", fontsize=9)
    fig.tight_layout()
    fig.savefig(run.plot_path("attention"), dpi=100)
    plt.close(fig)


# ---- predict -------------------------------------------------------------------------------------
def predict_arguments(parser) -> None:  # noqa: ANN001 - an argparse parser
    parser.add_argument("text", help="the input, e.g. \"6 janvier 1985\" (dates) or \"Germany\" (names)")
    parser.add_argument("--task", choices=("dates", "names"), default=None,
                        help="which task's model to use (default: the run's first task)")
    parser.add_argument("--variant", choices=("attention", "plain"), default="attention")
    parser.add_argument("--beam", type=int, default=None, help="beam width (default: the run's)")


def predict(cfg: Config, run: Run, args) -> None:  # noqa: ANN001 - argparse namespace
    task_name = args.task or tasks_of(cfg)[0]
    if task_name not in tasks_of(cfg):
        raise ConfigError(f"--task {task_name}: this run trained only {cfg.task}")
    beam = cfg.beam if args.beam is None else args.beam
    if not 1 <= beam <= 64:
        raise ConfigError(f"--beam {beam}: out of range, allowed [1, 64]")
    text = args.text.strip()
    if not text:
        raise DataError("the input is empty; give some text, e.g. \"6 janvier 1985\"")
    model, src_vocab, tgt_vocab = load_variant(cfg, run, f"{task_name}_{args.variant}")
    trained = run.variant(f"{task_name}_{args.variant}").result or {}
    alpha = trained.get("length_alpha", cfg.length_alpha)  # the one chosen on validation, where there was one
    limit = cfg.max_src_len - 1
    if len(text) > limit:
        print(f"note: the input has {len(text)} characters; only the first {limit} are used (the model was "
              f"trained on inputs up to that length)")
        text = text[:limit]
    unknown = src_vocab.unknown(text)
    if len(unknown) == len(set(text)):
        raise DataError(f"none of the characters of {text!r} occur in the {task_name} training data")
    if unknown:
        print(f"note: characters never seen in training are read as <unk>: {' '.join(map(repr, unknown))}")
    src, src_len = src_vocab.batch([text])
    src, src_len = src.to(run.device), src_len.to(run.device)
    max_tgt = DATES_MAX_TGT if task_name == "dates" else NAMES_MAX_TGT
    greedy = greedy_decode(model, src, src_len, max_tgt, alpha)[0]
    hyps = beam_search(model, src, src_len, max_tgt, beam, alpha)[0]
    print(f"input   {text}")
    print(f"output  {tgt_vocab.decode(hyps[0].ids)}")
    print(f"greedy  {tgt_vocab.decode(greedy.ids)}  (log p {greedy.logprob:.3f})")
    print(f"beam (width {beam}), score = log p / length^{alpha:g}:")
    for rank, h in enumerate(hyps, 1):
        print(f"  {rank}. {tgt_vocab.decode(h.ids):<30} score {h.score:8.4f}  log p {h.logprob:8.3f}")
