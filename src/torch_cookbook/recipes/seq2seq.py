"""Sequence-to-sequence with and without attention, on two character-level tasks that ship offline (docs/seq2seq.md).

Seed Q32 lists the steps of a seq2seq model and Q34 sketches an attention decoder (with shape bugs). This recipe
trains the same encoder-decoder with attention (`decoder_step` below) and without it (the encoder's final state is
all the decoder gets), decodes greedily and with length-normalised beam search, and measures what attention buys:
  dates  dates written in 17 CLDR locales and 4 formats -> ISO 8601 ("6 janvier 1985" -> "1985-01-06");
  names  English -> French names from pycountry's catalogues ("Germany" -> "Allemagne"), beside copying;
  user   your own source<TAB>target lines (`--data FILE.tsv`), split by source string, scored like names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from torch_cookbook.data import pairs
from torch_cookbook.engine.config import ON_BUNDLED_DATA, BaseConfig, ConfigError, Target, param
from torch_cookbook.engine.loop import autocast, epoch_order, eval_mode, grad_scaler
from torch_cookbook.engine.runs import Run
from torch_cookbook.engine.trainer import Trainer
from torch_cookbook.nn import seq2seq as s2s
from torch_cookbook.nn.attention import ATTENTION_KINDS
from torch_cookbook.nn.seq2seq import CharVocab, Decoder, Seq2Seq, TextPairs, beam_search, greedy_decode, text_metrics

DATA_FIELDS = {"data": ("source_column", "target_column")}  # the run records this data and its columns (data.json)
seed_question = "Q32 Seq2Seq / Q34 Attention"
summary = "Char-level GRU/LSTM seq2seq with/without attention: dates -> ISO, English -> French names; beam search."


@dataclass
class Config(BaseConfig):
    task: str = param("both", "which task(s) to train: dates, names or both", choices=("both", "dates", "names"))
    data: str = param("", "your own pairs instead of --task: source<TAB>target lines (.tsv/.txt, optionally .gz/.bz2)")
    source_column: str = param("", "--data with a header line (CSV/TSV/JSONL): the column of the inputs")
    target_column: str = param("", "--data with a header line: the column of the outputs")
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
    data_steps: int = param(3000, "--data: training steps per variant", low=1)
    data_test_fraction: float = param(0.1, "--data: fraction of the distinct sources held out", low=0, high=1,
                                      low_open=True, high_open=True)
    data_val_fraction: float = param(0.05, "--data: fraction of the distinct sources that choose the length "
                                     "normalisation (0 = none: --length_alpha)", low=0, high=1, high_open=True)
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
    "smoke": {"hidden": 16, "embed": 8, "dates_steps": 10, "names_steps": 10, "data_steps": 10, "dates_train": 300,
              "dates_test": 20, "names_train_limit": 300, "names_val_limit": 20, "names_test_limit": 20,
              "eval_every": 5, "eval_subset": 10, "beam": 2, "batch_size": 16, "warmup": 2},
    "quick": {"hidden": 64, "dates_steps": 300, "names_steps": 300, "data_steps": 300, "dates_train": 5000,
              "dates_test": 300, "names_val_limit": 300, "names_test_limit": 300, "eval_every": 100,
              "eval_subset": 100},
    "full": {},
}

targets = [
    Target("dates_exact", ">=", 0.99, when=ON_BUNDLED_DATA),  # held-out dates, attention, beam search
    Target("names_chrf_changed", ">=", 60.0, when=ON_BUNDLED_DATA),  # held-out names whose French differs
    Target("names_chrf_changed_gain_vs_plain", ">=", 10.0, when=ON_BUNDLED_DATA),  # attention vs no attention
    Target("names_chrf_changed_gain_vs_copy", ">=", 10.0, when=ON_BUNDLED_DATA),  # vs copying the English name
    Target("dates_beam_minus_greedy", ">=", 0.0, when=ON_BUNDLED_DATA),  # beam search never worse than greedy...
    Target("names_beam_minus_greedy", ">=", 0.0, when=ON_BUNDLED_DATA),  # ...on either held-out set
]

TASKS = {"dates": ["dates"], "names": ["names"], "both": ["dates", "names"]}  # --task -> the tasks it trains
USER = "user"  # your own pairs (--data): the task's name in variants and metrics (user_*)
MAX_TGT = {"dates": 11, "names": 72}  # longest output + <eos> ("YYYY-MM-DD" + <eos> for dates); user: max_src_len


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
    steps = {"dates": cfg.dates_steps, "names": cfg.names_steps}.get(task.name, cfg.data_steps)
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
            group["lr"] = s2s.warmup_cosine(step, steps, cfg.lr, cfg.warmup)
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
    tasks = {name: load_task(cfg, name) for name in tasks_of(cfg)}
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
    """Greedy and beam outputs on the held-out set and their metrics; a task with a validation split (names, your
    own pairs) first chooses the length normalisation there (dates use cfg.length_alpha)."""
    alpha = cfg.length_alpha
    result: dict = {"length_alpha": alpha}
    if task.val_src and cfg.beam > 1:
        alpha, chrf = s2s.choose_length_alpha(model, task, cfg.beam, cfg.length_alphas, device)
        greedy = task.translate(model, task.val_src, device)
        result |= {"length_alpha": alpha, "val_chrf_greedy": text_metrics(greedy, task.val_tgt)["chrf"],
                   "val_chrf_by_alpha": {f"{a:g}": c for a, c in chrf.items()}, "val_size": len(task.val_src)}
    for mode, width in (("greedy", 1), ("beam", cfg.beam)):
        hyps = result[f"predictions_{mode}"] = task.translate(model, task.test_src, device, width, alpha)
        # names and your own pairs: also on the pairs where copying the input cannot be right (*_changed)
        result |= {f"{key}_{mode}": value for key, value in task.score(hyps, changed=task.name != "dates").items()}
    return result


def copy_baseline(task: TextPairs) -> dict[str, float]:
    """Copying the input (names are often not translated), scored like a model; and the held-out set's sizes."""
    scores = {(k if k.endswith("_changed") else f"{k}_all"): v for k, v in task.score(task.test_src).items()}
    return scores | {"size": len(task.test_src), "changed": len(task.changed())}


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
# your own pairs are scored like names, as user_*, with the greedy exact match beside
REPORTED |= {src.replace("names", USER): {m.replace("names", USER): k for m, k in keys.items()}
             for src, keys in REPORTED.items() if src.startswith("names")}
REPORTED["user_attention"]["user_exact_all_greedy"] = "exact_greedy"
DIFFERENCES |= {m.replace("names", USER): tuple(x.replace("names", USER) for x in pair)
                for m, pair in DIFFERENCES.items() if m.startswith("names")}


def summarise(results: dict[str, dict], tasks: dict[str, TextPairs]) -> dict[str, float | None]:
    """The run's metrics, read off the variants' results (and the copy baseline) through the tables above."""
    sources = results | {f"{name}_copy": copy_baseline(task) for name, task in tasks.items()}
    m = {metric: sources[src][key] for src, keys in REPORTED.items() if src in sources
         for metric, key in keys.items() if key in sources[src]}
    m |= {metric: m[a] - m[b] for metric, (a, b) in DIFFERENCES.items() if a in m and b in m}
    for name in tasks:
        by_alpha = results.get(f"{name}_attention", {}).get("val_chrf_by_alpha", {})
        m |= {f"{name}_val_chrf_alpha{alpha}": chrf for alpha, chrf in by_alpha.items()}
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in m.items()}


def evaluate(cfg: Config, run: Run) -> dict[str, float | None]:
    """Every metric recomputed from the saved checkpoints (decoding is deterministic)."""
    tasks = {name: load_task(cfg, name) for name in tasks_of(cfg)}
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


# ---- below the core: the data --------------------------------------------------------------------
def load_task(cfg: Config, name: str) -> TextPairs:
    """A task's pairs (dates, names or your own: `data.pairs.load`), with vocabularies from its training pairs."""
    found = pairs.load(name, cfg)
    return TextPairs(name, found.train.src, found.train.tgt, found.test.src, found.test.tgt,
                     MAX_TGT.get(name, cfg.max_src_len), found.val.src, found.val.tgt, max_chars=found.max_len)


def check_launch(cfg: Config) -> None:
    if cfg.data:  # read and split the user's pairs before the run directory exists: bad data writes nothing
        found = pairs.load(USER, cfg)
        print(f"{cfg.data}: {len(found.train)} training, {len(found.val)} validation, {len(found.test)} held-out pairs;"
              f" {found.too_long} left out, longer than {found.max_len} characters (--max_src_len {cfg.max_src_len})")


def tasks_of(cfg: Config) -> list[str]:
    return [USER] if cfg.data else TASKS[cfg.task]


def variants_of(cfg: Config) -> list[tuple[str, str]]:
    """(variant name, attention kind or "none") per task: dates_attention, dates_plain, names_attention, ..."""
    kinds = [("attention", cfg.attention)] + ([("plain", "none")] if cfg.compare_plain else [])
    return [(f"{task}_{kind}", attention) for task in tasks_of(cfg) for kind, attention in kinds]


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
        for ax, text in zip(row, EXAMPLES.get(task_name) or tasks[task_name].test_src[:3]):
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
    beam = cfg.beam if args.beam is None else args.beam
    if task_name not in tasks_of(cfg):
        raise ConfigError(f"--task {task_name}: this run trained only {f'--data {cfg.data}' if cfg.data else cfg.task}")
    if not 1 <= beam <= 64:
        raise ConfigError(f"--beam {beam}: out of range, allowed [1, 64]")
    variant = f"{task_name}_{args.variant}"
    model, src_vocab, tgt_vocab = load_variant(cfg, run, variant)
    alpha = (run.variant(variant).result or {}).get("length_alpha", cfg.length_alpha)  # chosen on validation
    text, notes = src_vocab.readable(args.text.strip(), cfg.max_src_len - 1)  # empty or all unknown: one line
    print("".join(f"note: {note}\n" for note in notes), end="")
    src, src_len = (t.to(run.device) for t in src_vocab.batch([text]))
    max_len = MAX_TGT.get(task_name, cfg.max_src_len)  # user: outputs of at most max_src_len - 1 characters + <eos>
    greedy = greedy_decode(model, src, src_len, max_len, alpha)[0]
    hyps = beam_search(model, src, src_len, max_len, beam, alpha)[0]
    print(f"input   {text}")
    print(f"output  {tgt_vocab.decode(hyps[0].ids)}")
    print(f"greedy  {tgt_vocab.decode(greedy.ids)}  (log p {greedy.logprob:.3f})")
    print(f"beam (width {beam}), score = log p / length^{alpha:g}:")
    for rank, h in enumerate(hyps, 1):
        print(f"  {rank}. {tgt_vocab.decode(h.ids):<30} score {h.score:8.4f}  log p {h.logprob:8.3f}")
