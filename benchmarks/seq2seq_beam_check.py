"""Beam search vs greedy decoding on the names VALIDATION split of a trained seq2seq run, for every alpha of
`--length_alphas`, with the current search and with the one before issue 12 (loaded from git history).

    PYTHONPATH=src python benchmarks/seq2seq_beam_check.py runs/seq2seq/<id> [--old-commit f048499]

The run must have trained names (`--task names` or `both`). Only the validation pairs are decoded, never the
held-out test pairs. "less probable" counts inputs whose beam output has a lower log-probability than the
greedy output, which a search that keeps the most probable sequences should rarely do.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import types
from pathlib import Path

import torch

from torch_cookbook.engine.config import from_dict
from torch_cookbook.engine.runs import Run, open_run_dir
from torch_cookbook.nn.seq2seq import Hypothesis, beam_candidates, greedy_decode, rank_hypotheses, text_metrics
from torch_cookbook.recipes import seq2seq as recipe


def old_search(commit: str) -> types.ModuleType:
    """nn/seq2seq.py as it was at `commit`, as a module of its own."""
    source = subprocess.run(["git", "show", f"{commit}:src/torch_cookbook/nn/seq2seq.py"], check=True,
                            capture_output=True, text=True).stdout
    module = types.ModuleType("old_seq2seq")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(source, f"{commit}:nn/seq2seq.py", "exec"), module.__dict__)  # our own git history, not outside input
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--old-commit", default="f048499", help="commit whose beam_search to compare with")
    args = parser.parse_args()
    torch.set_num_threads(1)
    info = open_run_dir(args.run_dir)
    cfg = from_dict(recipe.Config, info["config"], source=str(args.run_dir / "config.json"))
    task = recipe.load_task(cfg, "names")
    run = Run(args.run_dir, "seq2seq", cfg, info["profile"], torch.device("cpu"))
    model, _, _ = recipe.load_variant(cfg, run, "names_attention")
    refs = task.val_tgt
    changed = [i for i, (s, t) in enumerate(zip(task.val_src, refs)) if s != t]

    def chrf(hyps: list[Hypothesis]) -> str:
        texts = [task.tgt_vocab.decode(h.ids) for h in hyps]
        everything = text_metrics(texts, refs)["chrf"]
        subset = text_metrics([texts[i] for i in changed], [refs[i] for i in changed])["chrf"]
        return f"chrF all {everything:6.2f}  changed {subset:6.2f}"

    def less_probable(hyps: list[Hypothesis], greedy: list[Hypothesis]) -> int:
        return sum(h.logprob < g.logprob - 1e-4 for h, g in zip(hyps, greedy))

    old = old_search(args.old_commit)
    greedy, found, before = [], [], {alpha: [] for alpha in cfg.length_alphas}
    seconds = {"new": 0.0, "old": 0.0}
    for src, src_len in task.batches(task.val_src, torch.device("cpu")):
        greedy += greedy_decode(model, src, src_len, task.max_tgt)
        start = time.process_time()
        found += beam_candidates(model, src, src_len, task.max_tgt, cfg.beam)
        seconds["new"] += time.process_time() - start
        for alpha in cfg.length_alphas:
            start = time.process_time()
            before[alpha] += [h[0] for h in old.beam_search(model, src, src_len, task.max_tgt, cfg.beam, alpha)]
            seconds["old"] += (time.process_time() - start) / len(cfg.length_alphas)
    print(f"validation: {len(refs)} pairs, {len(changed)} changed; beam {cfg.beam}; CPU s per search: "
          f"new {seconds['new']:.1f}, old {seconds['old']:.1f}")
    print(f"greedy                 {chrf(greedy)}")
    for alpha in cfg.length_alphas:
        now = [rank_hypotheses(f, alpha)[0] for f in found]
        print(f"alpha {alpha:<4g} old search  {chrf(before[alpha])}  less probable than greedy "
              f"{less_probable(before[alpha], greedy):3d}")
        print(f"           new search  {chrf(now)}  less probable than greedy {less_probable(now, greedy):3d}")


if __name__ == "__main__":
    main()
