"""5-fold cross-validation inside each seed's BBC training split, for textclass round 6: out-of-fold errors of
TF-IDF + LR, the bag, the frozen-MiniLM head, MiniLM with its top layer fine-tuned, and the averages of the
bag's probabilities with each encoder model's. Validation and test splits are never touched.

    python benchmarks/textclass_cv_finetune.py --seeds 0 1 2             # ~55 min of one CPU thread per seed
    python benchmarks/textclass_cv_finetune.py --seeds 0 --folds 0       # one fold: ~3.5 min

The folds are textclass_cv.py's (`StratifiedKFold(5, shuffle=True, random_state=seed)`). Every fold model is
trained as the recipe trains it (its settings, `seeded_model`, `view`, `warmup_decay_scale`) and
scored at its last step. Per-fold probabilities go to --out, so a rerun only trains the folds missing there.
docs/textclass.md ("What we tried") has the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
from sklearn.model_selection import StratifiedKFold
from torch import nn

from torch_cookbook.data.text import Prepared
from torch_cookbook.engine.loop import backward_step, minibatches
from torch_cookbook.nn import sentence_encoder
from torch_cookbook.recipes import textclass


def train_and_predict(cfg: textclass.Config, name: str, fold: Prepared, held: torch.Tensor) -> torch.Tensor:
    """Class probabilities on `held` of model `name` trained on fold.train with the recipe's settings."""
    model = textclass.seeded_model(name, cfg, fold)
    view = fold if name == "bow" else textclass.view(cfg, fold, name)
    max_len = textclass.tokens_read(cfg, name) if name == "bow" else view.ids.shape[1]
    ids, lengths = view.ids[fold.train, :max_len], view.lengths[fold.train].clamp(max=max_len)
    labels = fold.labels[fold.train]
    if name == "minilm_ft":
        steps, batch_size = int(cfg.minilm_tune_epochs * len(ids) / cfg.minilm_tune_batch), cfg.minilm_tune_batch
        groups = [{"params": list(model.layers.parameters()), "lr": cfg.minilm_tune_lr},
                  {"params": list(model.head.parameters()), "lr": cfg.minilm_head_lr}]
        optimizer = torch.optim.AdamW(groups, weight_decay=sentence_encoder.TUNE_WEIGHT_DECAY)
    else:
        steps, batch_size = cfg.steps, cfg.batch_size
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    peak_lrs = [group["lr"] for group in optimizer.param_groups]
    model.train()
    for step, _epoch, idx in minibatches(len(ids), batch_size, cfg.seed):
        if step >= steps:
            break
        if name == "minilm_ft":
            for group, peak in zip(optimizer.param_groups, peak_lrs):
                group["lr"] = peak * sentence_encoder.warmup_decay_scale(step, steps)
        width = int(lengths[idx].max())
        loss = nn.functional.cross_entropy(model(ids[idx, :width], lengths[idx]), labels[idx])
        backward_step(loss, optimizer, clip_norm=cfg.clip)
    logits = textclass.predict_logits(model, view.ids[held], view.lengths[held], torch.device("cpu"), max_len)
    return torch.softmax(logits, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=Path, default=Path("runs/textclass_cv_finetune"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    models = ("bow", "minilm", "minilm_ft")
    totals: dict[str, int] = {}
    for seed in args.seeds:
        cfg = textclass.Config(seed=seed)
        data = textclass.prepare(cfg, "bbc")
        train = data.train.numpy()
        folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(train, data.labels.numpy()[train]))
        for f in args.folds:
            fit, held = torch.from_numpy(train[folds[f][0]]), torch.from_numpy(train[folds[f][1]])
            path = args.out / f"seed{seed}_fold{f}.pt"
            t0 = time.process_time()
            if path.exists():
                probs = torch.load(path, weights_only=True)
            else:
                probs = {name: train_and_predict(cfg, name, dataclasses.replace(data, train=fit), held)
                         for name in models}
                probs["tfidf"] = textclass.tfidf_predict(data.texts, data.labels, fit, held, cfg.tfidf_c)
                torch.save(probs, path)
            preds = {"tfidf": probs["tfidf"], **{name: probs[name].argmax(1) for name in models},
                     "bow_minilm": (probs["bow"] + probs["minilm"]).argmax(1),
                     "bow_minilm_ft": (probs["bow"] + probs["minilm_ft"]).argmax(1)}
            errors = {name: int((p != data.labels[held]).sum()) for name, p in preds.items()}
            for name, e in errors.items():
                totals[name] = totals.get(name, 0) + e
            print(f"seed {seed} fold {f} ({len(held)} articles, {time.process_time() - t0:.0f} CPU-s): {errors}",
                  flush=True)
    print(f"out-of-fold errors: {totals}")


if __name__ == "__main__":
    main()
