"""Sequence-to-sequence with and without attention, on two character-level tasks that ship offline (docs/seq2seq.md).

Seed Q32 lists the steps of a seq2seq model and Q34 sketches an attention decoder (with shape bugs). This recipe
trains the same encoder-decoder with attention (`decoder_step` below) and without it (the encoder's final state is
all the decoder gets), decodes greedily and with length-normalised beam search, and measures what attention buys:
  dates  dates written in 17 CLDR locales and 4 formats -> ISO 8601 ("6 janvier 1985" -> "1985-01-06");
  names  English -> French names from pycountry's catalogues ("Germany" -> "Allemagne"), beside copying.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from torch_cookbook.engine.config import BaseConfig, ConfigError, Target, param
from torch_cookbook.engine.loop import autocast, epoch_order, eval_mode, grad_scaler
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.errors import DataError
from torch_cookbook.nn import seq2seq as s2s
from torch_cookbook.nn.attention import ATTENTION_KINDS
from torch_cookbook.nn.seq2seq import CharVocab, Decoder, Seq2Seq, TextPairs, beam_search, greedy_decode, text_metrics

seed_question = "Q32 Seq2Seq / Q34 Attention"
summary = "Char-level GRU/LSTM seq2seq with/without attention: dates -> ISO, English -> French names; beam search."


@dataclass
class Config(BaseConfig):
    task: str = param("both", "which task(s) to train: dates, names or both", choices=("both", "dates", "names"))
    rnn: str = param("gru", "recurrent cell of encoder and decoder", choices=("gru", "lstm"))
    attention: str = param("general", "scoring function of the attention variant", choices=ATTENTION_KINDS)
    compare_plain: bool = param(True, "also train the same model without attention, to measure what attention buys")
    embed: int = param(64, "character embedding size", low=1)
    hidden: int = param(128, "decoder hidden size = encoder output size (two directions of hidden/2)", low=2)
    layers: int = param(1, "RNN layers in encoder and decoder", low=1, high=4)
    dropout: float = param(0.1, "dropout on embeddings and the decoder output", low=0, high=1, high_open=True)
    dates_steps: int = param(1500, "training steps per dates variant", low=1)
    names_steps: int = param(3000, "training steps per names variant", low=1)
    batch_size: int = param(64, "minibatch size", low=1)
    lr: float = param(3e-3, "peak Adam learning rate (linear warm-up, then cosine decay)", low=0, low_open=True)
    warmup: int = param(200, "warm-up steps, so Adam's early large steps do not wreck the RNNs", low=0)
    clip: float = param(1.0, "gradient-norm clipping against exploding RNN gradients (0 = off)", low=0)
    tf_start: float = param(1.0, "teacher-forcing ratio at the first step", low=0, high=1)
    tf_end: float = param(0.8, "teacher-forcing ratio at the last step (linear schedule in between)", low=0, high=1)
    dates_train: int = param(20000, "generated training dates", low=1)
    dates_test: int = param(2000, "held-out dates (calendar days never seen in training)", low=1)
    names_test_fraction: float = param(0.1, "fraction of English names held out", low=0, high=1, low_open=True,
                                       high_open=True)
    names_val_fraction: float = param(0.05, "fraction of English names carved from the training side to choose "
                                      "the length normalisation on (0 = none)", low=0, high=1, high_open=True)
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
    Target("dates_beam_minus_greedy", ">=", 0.0),  # beam search never worse than greedy...
    Target("names_beam_minus_greedy", ">=", 0.0),  # ...on either held-out set
]

TASKS = {"dates": ["dates"], "names": ["names"], "both": ["dates", "names"]}  # --task -> the tasks it trains
MAX_TGT = {"dates": 11, "names": 72}  # longest output + <eos> ("YYYY-MM-DD" + <eos> for dates)


# ---- the technique: an attention decoder step ----------------------------------------------------
def decoder_step(decoder: Decoder, tokens: torch.Tensor, state: torch.Tensor | tuple, memory: torch.Tensor,
                 mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | tuple, torch.Tensor | None]:
    """Luong et al. (2015): RNN step, attention over the encoder outputs, then the "attentional" hidden state.

    tokens (B, T): previous output characters, T = 1 when decoding or the whole shifted target under teacher
    forcing; memory (B, S, H): encoder outputs; mask (B, 1, S): False at padding. Returns logits (B, T, V),
    the RNN state and the weights (B, T, S). Greedy and beam search run it as `nn.seq2seq.Decoder.forward`.
    """
    h, state = decoder.rnn(decoder.dropout(decoder.embedding(tokens)), state)  # (B, T, H)
    if decoder.attention is None:  # the plain model: the encoder's final state (in `state`) is all it gets
        return decoder.out(decoder.dropout(h)), state, None
    # score each encoder output against h ("general": h . W m_s), softmax over the real source positions,
    # and take the weighted sum of the encoder outputs: the context for this output character
    context, weights = decoder.attention(h, memory, mask=mask)  # (B, T, H), (B, T, S)
    h = torch.tanh(decoder.combine(torch.cat([h, context], dim=-1)))  # sees what it wrote and where it looks
    return decoder.out(decoder.dropout(h)), state, weights


def teacher_forced_loss(model: Seq2Seq, batch: dict[str, torch.Tensor], tgt_in: torch.Tensor) -> torch.Tensor:
    """Encode the source, run the decoder over the previous characters `tgt_in` (<sos> y1 .. yn) and score its
    predictions of the next ones (y1 .. yn <eos>): cross-entropy per character in float32, padding excluded."""
    memory, mask, state = model.encode(batch["src"], batch["src_len"])  # the bridge: final encoder state -> `state`
    logits, _, _ = decoder_step(model.decoder, tgt_in, state, memory, mask)
    return F.cross_entropy(logits.flatten(0, 1).float(), batch["tgt_out"].flatten(), ignore_index=CharVocab.pad_id)


# ---- train one variant ---------------------------------------------------------------------------
def train_variant(cfg: Config, run: Run, task: TextPairs, attention: str) -> dict:
    steps = cfg.dates_steps if task.name == "dates" else cfg.names_steps
    data = task.tensors(task.train_src, task.train_tgt)
    torch.manual_seed(cfg.seed)  # same initial weights for the attention and the plain model
    model = make_model(cfg, task.src_vocab, task.tgt_vocab, attention).to(run.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    trainer = Trainer(run, steps, every=cfg.eval_every, clip_norm=cfg.clip, model=model, optimizer=optimizer,
                      scaler=grad_scaler(run.device, cfg.amp))
    trainer.extra.update(src_vocab=task.src_vocab.state_dict(), tgt_vocab=task.tgt_vocab.state_dict())
    model.train()
    lengths = data["src_len"] + data["tgt_in"].ne(CharVocab.pad_id).sum(1)
    buckets = s2s.length_bucketed_batches(lengths, cfg.batch_size, cfg.seed, epoch_order, trainer.start)
    for step, idx in trainer.steps(buckets):  # batches of similar lengths: little time spent on padding
        for group in optimizer.param_groups:
            group["lr"] = lr_at(cfg, step, steps)
        batch = s2s.trimmed_batch(data, idx, run.device)
        # scheduled sampling: some decoder inputs are the model's own guesses, as they will be at inference
        ratio = s2s.teacher_forcing(step, steps, cfg.tf_start, cfg.tf_end)
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)  # resumable randomness
        tgt_in = s2s.mix_own_predictions(model, batch, ratio, generator)
        with autocast(run.device, cfg.amp):
            loss = teacher_forced_loss(model, batch, tgt_in)
        trainer.backward(loss)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == steps:
            with eval_mode(model):
                run.log({"train/loss": loss.item(), **periodic_check(cfg, model, task, run.device)}, step + 1)
    model.eval()
    return run.finish(evaluate_model(cfg, model, task, run.device))


def make_model(cfg: Config, src_vocab: CharVocab, tgt_vocab: CharVocab, attention: str) -> Seq2Seq:
    return Seq2Seq(len(src_vocab), len(tgt_vocab), cfg.embed, cfg.hidden, cfg.layers, cfg.rnn, attention, cfg.dropout)


# ---- the recipe ----------------------------------------------------------------------------------
def run(cfg: Config, run: Run) -> dict[str, float | None]:
    tasks = {name: load_task(cfg, name) for name in TASKS[cfg.task]}
    results = {}
    for name, attention in variants_of(cfg):
        sub = run.variant(name)
        results[name] = sub.result or train_variant(cfg, sub, tasks[name.split("_")[0]], attention)
    if run.is_main:
        plot_curves(cfg, run)
        plot_length(run, results, tasks)
        plot_attention(cfg, run, tasks)
    return summarise(results, tasks)


# ---- evaluation ----------------------------------------------------------------------------------
def evaluate_model(cfg: Config, model: Seq2Seq, task: TextPairs, device: torch.device) -> dict:
    """Greedy and beam outputs on the held-out set and their metrics; names with a validation split first choose
    the length normalisation there (dates use cfg.length_alpha)."""
    alpha = cfg.length_alpha
    result: dict = {"length_alpha": alpha}
    if task.val_src and cfg.beam > 1:
        alpha, chrf = s2s.choose_length_alpha(model, task, cfg.beam, cfg.length_alphas, device)
        greedy = task.translate(model, task.val_src, device)
        result |= {"length_alpha": alpha, "val_chrf_greedy": text_metrics(greedy, task.val_tgt)["chrf"],
                   "val_chrf_by_alpha": {f"{a:g}": c for a, c in chrf.items()}, "val_size": len(task.val_src)}
    for mode, width in (("greedy", 1), ("beam", cfg.beam)):
        hyps = result[f"predictions_{mode}"] = task.translate(model, task.test_src, device, width, alpha)
        result |= {f"{key}_{mode}": value for key, value in text_metrics(hyps, task.test_tgt).items()}
        if task.name == "names":  # the pairs where copying the input cannot be right
            changed = [i for i, (s, t) in enumerate(zip(task.test_src, task.test_tgt)) if s != t]
            sub = text_metrics([hyps[i] for i in changed], [task.test_tgt[i] for i in changed])
            result |= {f"{key}_changed_{mode}": value for key, value in sub.items()}
    return result


def copy_baseline(task: TextPairs) -> dict[str, float]:
    """Copying the input (names are often not translated), scored like a model; and the held-out set's sizes."""
    changed = [i for i, (s, t) in enumerate(zip(task.test_src, task.test_tgt)) if s != t]
    out = {f"{k}_all": v for k, v in text_metrics(task.test_src, task.test_tgt).items()}
    sub = text_metrics([task.test_src[i] for i in changed], [task.test_tgt[i] for i in changed])
    return out | {f"{k}_changed": v for k, v in sub.items()} | {"size": len(task.test_src), "changed": len(changed)}


REPORTED = {  # source -> {metric: key of the source's result}. Headline: the attention model, beam search
    "dates_attention": {"dates_exact": "exact_beam", "dates_exact_greedy": "exact_greedy"},
    "dates_plain": {"dates_plain_exact": "exact_beam", "dates_plain_exact_greedy": "exact_greedy"},
    "dates_copy": {"dates_test_size": "size"},
    "names_attention": {"names_chrf_changed": "chrf_changed_beam", "names_chrf_changed_greedy": "chrf_changed_greedy",
                        "names_bleu_changed": "bleu_changed_beam", "names_exact_changed": "exact_changed_beam",
                        "names_chrf_all": "chrf_beam", "names_chrf_all_greedy": "chrf_greedy",
                        "names_bleu_all": "bleu_beam", "names_exact_all": "exact_beam",
                        "names_length_alpha_chosen": "length_alpha",  # on validation, else cfg.length_alpha
                        "names_val_size": "val_size", "names_val_chrf_greedy": "val_chrf_greedy"},
    "names_plain": {"names_plain_chrf_changed": "chrf_changed_beam", "names_plain_chrf_all": "chrf_beam",
                    "names_plain_exact_all": "exact_beam", "names_plain_length_alpha_chosen": "length_alpha"},
    "names_copy": {"names_copy_chrf_changed": "chrf_changed", "names_copy_bleu_changed": "bleu_changed",
                   "names_copy_chrf_all": "chrf_all", "names_copy_exact_all": "exact_all",
                   "names_test_size": "size", "names_test_changed_size": "changed"},
}
DIFFERENCES = {  # metric -> (reported metric, minus reported metric)
    "dates_beam_minus_greedy": ("dates_exact", "dates_exact_greedy"),
    "names_beam_minus_greedy": ("names_chrf_all", "names_chrf_all_greedy"),  # chrF points, all held-out names
    "names_chrf_changed_gain_vs_copy": ("names_chrf_changed", "names_copy_chrf_changed"),
    "names_chrf_changed_gain_vs_plain": ("names_chrf_changed", "names_plain_chrf_changed"),
}


def summarise(results: dict[str, dict], tasks: dict[str, TextPairs]) -> dict[str, float | None]:
    """The run's metrics, read off the variants' results (and the copy baseline) through the tables above."""
    sources = results | {f"{name}_copy": copy_baseline(task) for name, task in tasks.items()}
    m = {metric: sources[src][key] for src, keys in REPORTED.items() if src in sources
         for metric, key in keys.items() if key in sources[src]}
    m |= {metric: m[a] - m[b] for metric, (a, b) in DIFFERENCES.items() if a in m and b in m}
    by_alpha = results.get("names_attention", {}).get("val_chrf_by_alpha", {})
    m |= {f"names_val_chrf_alpha{alpha}": chrf for alpha, chrf in by_alpha.items()}
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()}


def evaluate(cfg: Config, run: Run) -> dict[str, float | None]:
    """Every metric recomputed from the saved checkpoints (decoding is deterministic)."""
    tasks = {name: load_task(cfg, name) for name in TASKS[cfg.task]}
    results = {name: evaluate_model(cfg, load_variant(cfg, run, name)[0], tasks[name.split("_")[0]], run.device)
               for name, _ in variants_of(cfg)}
    return summarise(results, tasks)


@torch.no_grad()
def periodic_check(cfg: Config, model: Seq2Seq, task: TextPairs, device: torch.device) -> dict[str, float]:
    """Held-out teacher-forced loss and greedy exact match on a small subset, for the learning curves."""
    src, tgt = task.test_src[:cfg.eval_subset], task.test_tgt[:cfg.eval_subset]
    t = {k: v.to(device) for k, v in task.tensors(src, tgt).items()}
    loss = teacher_forced_loss(model, t, t["tgt_in"]).item()
    exact = sum(h == y for h, y in zip(task.translate(model, src, device), tgt)) / len(tgt)
    return {"eval/loss": loss, "eval/exact": exact}


def load_variant(cfg: Config, run: Run, name: str) -> tuple[Seq2Seq, CharVocab, CharVocab]:
    """The trained model of variant `name` and the vocabularies saved with it."""
    attention = dict(variants_of(cfg)).get(name)
    if attention is None:
        raise ConfigError(f"this run has no variant {name!r}; it has: {', '.join(n for n, _ in variants_of(cfg))}")
    ckpt = run.variant(name).load()
    src_vocab, tgt_vocab = (CharVocab.from_state_dict(ckpt["extra"][k]) for k in ("src_vocab", "tgt_vocab"))
    model = make_model(cfg, src_vocab, tgt_vocab, attention).to(run.device)
    model.load_state_dict(ckpt["state"]["model"])
    return model.eval(), src_vocab, tgt_vocab


# ---- below the core: the learning-rate schedule and the data -------------------------------------
def lr_at(cfg: Config, step: int, total: int) -> float:
    """Linear warm-up to cfg.lr, then cosine decay to 5% of it."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, total - cfg.warmup)
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def load_task(cfg: Config, name: str) -> TextPairs:
    if name == "dates":  # the held-out dates are calendar days never seen in training; nothing is chosen on them
        from torch_cookbook.data import dates

        train, test = dates.load(cfg.dates_train, cfg.dates_test, seed=cfg.seed)
        return TextPairs(name, train.src, train.tgt, test.src, test.tgt, MAX_TGT[name], max_chars=cfg.max_src_len - 1)
    from torch_cookbook.data import names

    train, val, test = names.split(seed=cfg.seed, test_fraction=cfg.names_test_fraction,
                                   val_fraction=cfg.names_val_fraction, max_len=cfg.max_src_len - 1)
    limits = (cfg.names_train_limit, cfg.names_val_limit, cfg.names_test_limit)
    train, val, test = (pairs.first(n) for pairs, n in zip((train, val, test), limits))
    return TextPairs(name, train.src, train.tgt, test.src, test.tgt, MAX_TGT[name], val.src, val.tgt,
                     max_chars=cfg.max_src_len - 1)


def variants_of(cfg: Config) -> list[tuple[str, str]]:
    """(variant name, attention kind or "none") per task: dates_attention, dates_plain, names_attention, ..."""
    kinds = [("attention", cfg.attention)] + ([("plain", "none")] if cfg.compare_plain else [])
    return [(f"{task}_{kind}", attention) for task in TASKS[cfg.task] for kind, attention in kinds]


# ---- plots ---------------------------------------------------------------------------------------
def plot_curves(cfg: Config, run: Run) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, _ in variants_of(cfg):
        for ax, key in zip(axes, ("eval/loss", "eval/exact")):
            if curve := run.variant(name).history(key):
                ax.plot(*zip(*curve), label=name, linestyle="-" if "attention" in name else "--")
    axes[0].set(xlabel="training step", ylabel="held-out loss (teacher forced)", yscale="log")
    axes[1].set(xlabel="training step", ylabel=f"greedy exact match (first {cfg.eval_subset} held-out)", ylim=(0, 1))
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(run.plot_path("learning_curves"), dpi=100)
    plt.close(fig)


def plot_length(run: Run, results: dict[str, dict], tasks: dict[str, TextPairs]) -> None:
    """Exact match against input length, with and without attention: the fixed vector's bottleneck shows."""
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4), squeeze=False)
    for ax, (task_name, task) in zip(axes[0], tasks.items()):
        lengths = [len(s) for s in task.test_src]
        quintiles = torch.tensor(lengths, dtype=torch.float).quantile(torch.tensor([0.2, 0.4, 0.6, 0.8])).tolist()
        edges = sorted({0, *map(int, quintiles), max(lengths) + 1})
        for name in (n for n in (f"{task_name}_attention", f"{task_name}_plain") if n in results):
            preds, xs, ys = results[name]["predictions_beam"], [], []
            for lo, hi in zip(edges, edges[1:]):
                if idx := [i for i, n in enumerate(lengths) if lo <= n < hi]:
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


def plot_attention(cfg: Config, run: Run, tasks: dict[str, TextPairs]) -> None:
    """Heatmaps of the attention weights of greedy decoding (rows: output characters, columns: input)."""
    fig, axes = plt.subplots(len(tasks), 3, figsize=(15, 3.6 * len(tasks)), squeeze=False)
    for row, task_name in zip(axes, tasks):
        model, src_vocab, tgt_vocab = load_variant(cfg, run, f"{task_name}_attention")
        for ax, text in zip(row, EXAMPLES[task_name]):
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
    task_name, text = args.task or TASKS[cfg.task][0], args.text.strip()
    beam = cfg.beam if args.beam is None else args.beam
    if task_name not in TASKS[cfg.task]:
        raise ConfigError(f"--task {task_name}: this run trained only {cfg.task}")
    if not 1 <= beam <= 64:
        raise ConfigError(f"--beam {beam}: out of range, allowed [1, 64]")
    if not text:
        raise DataError("the input is empty; give some text, e.g. \"6 janvier 1985\"")
    variant = f"{task_name}_{args.variant}"
    model, src_vocab, tgt_vocab = load_variant(cfg, run, variant)
    alpha = (run.variant(variant).result or {}).get("length_alpha", cfg.length_alpha)  # chosen on validation
    if len(text) > (limit := cfg.max_src_len - 1):
        print(f"note: the input has {len(text)} characters; only the first {limit} are used (the model was "
              f"trained on inputs up to that length)")
        text = text[:limit]
    unknown = src_vocab.unknown(text)
    if len(unknown) == len(set(text)):
        raise DataError(f"none of the characters of {text!r} occur in the {task_name} training data")
    if unknown:
        print(f"note: characters never seen in training are read as <unk>: {' '.join(map(repr, unknown))}")
    src, src_len = (t.to(run.device) for t in src_vocab.batch([text]))
    greedy = greedy_decode(model, src, src_len, MAX_TGT[task_name], alpha)[0]
    hyps = beam_search(model, src, src_len, MAX_TGT[task_name], beam, alpha)[0]
    print(f"input   {text}")
    print(f"output  {tgt_vocab.decode(hyps[0].ids)}")
    print(f"greedy  {tgt_vocab.decode(greedy.ids)}  (log p {greedy.logprob:.3f})")
    print(f"beam (width {beam}), score = log p / length^{alpha:g}:")
    for rank, h in enumerate(hyps, 1):
        print(f"  {rank}. {tgt_vocab.decode(h.ids):<30} score {h.score:8.4f}  log p {h.logprob:8.3f}")
