"""5-fold cross-validation inside each seed's BBC training split: out-of-fold errors of a bag-of-embeddings
setting, or of the TF-IDF baseline (--tfidf), on the same folds. Validation and test splits are never touched.

    python benchmarks/textclass_cv.py --tfidf
    python benchmarks/textclass_cv.py --no-idf          # the plain mean
    python benchmarks/textclass_cv.py --lr 0.02         # any bag setting below

Each fold model is the recipe's bag (`textclass.seeded_model`, idf from the fold's training texts), trained
with the recipe's settings and step (`engine.loop.backward_step`), and scored at its last step.
docs/textclass.md ("What we tried") has the figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from sklearn.model_selection import StratifiedKFold
from torch import nn

from torch_cookbook.data.text import Prepared
from torch_cookbook.engine.loop import backward_step, minibatches
from torch_cookbook.recipes import textclass


def bag_errors(cfg: textclass.Config, fold: Prepared, held: torch.Tensor) -> int:
    """Train the recipe's bag on fold.train (its idf from those texts only) and count its errors on `held`."""
    model = textclass.seeded_model("bow", cfg, fold)
    max_len = textclass.tokens_read(cfg, "bow")
    ids, labels = fold.ids[fold.train, :max_len], fold.labels[fold.train]
    lengths = fold.lengths[fold.train].clamp(max=max_len)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)
    model.train()
    for step, _epoch, idx in minibatches(len(ids), cfg.batch_size, cfg.seed):
        if step >= cfg.steps:
            break
        width = int(lengths[idx].max())
        backward_step(nn.functional.cross_entropy(model(ids[idx, :width]), labels[idx]), optimizer,
                      clip_norm=cfg.clip)
    preds = textclass.predict_logits(model, fold.ids[held], fold.lengths[held], torch.device("cpu"), max_len)
    return int((preds.argmax(1) != fold.labels[held]).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tfidf", action="store_true", help="score TF-IDF + LR instead of a bag")
    parser.add_argument("--idf", action=argparse.BooleanOptionalAction, default=True, help="idf-weighted mean")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--embed_dim", type=int, default=64)
    parser.add_argument("--word_dropout", type=float, default=0.3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    total, count, t0 = 0, 0, time.process_time()
    for seed in args.seeds:
        cfg = textclass.Config(seed=seed, bow_idf=args.idf, steps=args.steps, lr=args.lr, embed_dim=args.embed_dim,
                               word_dropout=args.word_dropout)
        data = textclass.prepare(cfg, "bbc")
        train = data.train.numpy()
        folds = StratifiedKFold(5, shuffle=True, random_state=seed).split(train, data.labels.numpy()[train])
        errors = 0
        for fit, held in folds:
            fit, held = torch.from_numpy(train[fit]), torch.from_numpy(train[held])
            if args.tfidf:
                preds = textclass.tfidf_predict(data.texts, data.labels, fit, held, cfg.tfidf_c)
                errors += int((preds != data.labels[held]).sum())
            else:
                errors += bag_errors(cfg, dataclasses.replace(data, train=fit), held)
        print(f"seed {seed}: {errors} out-of-fold errors of {len(train)}", flush=True)
        total, count = total + errors, count + len(train)
    print(f"{vars(args)}: {total} out-of-fold errors ({100 * total / count:.2f}%), "
          f"{time.process_time() - t0:.0f} CPU-s")


if __name__ == "__main__":
    main()
