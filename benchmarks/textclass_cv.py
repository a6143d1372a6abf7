"""5-fold cross-validation inside each seed's BBC training split: out-of-fold errors of a bag-of-embeddings
setting, or of the TF-IDF baseline (--tfidf), on the same folds. Validation and test splits are never touched.

    python benchmarks/textclass_cv.py --tfidf
    python benchmarks/textclass_cv.py --no-idf          # the plain mean
    python benchmarks/textclass_cv.py --lr 0.02         # any bag setting below

Each fold model trains like the recipe's bag (AdamW fused, clip 1.0, batch 32) and is scored at its last step.
docs/textclass.md, round 4, has the figures.
"""

from __future__ import annotations

import argparse
import time

import torch
from sklearn.model_selection import StratifiedKFold
from torch import nn

from torch_cookbook.engine.loop import minibatches
from torch_cookbook.nn.text import BagOfEmbeddings
from torch_cookbook.recipes import textclass


def tfidf_errors(data, fit: torch.Tensor, held: torch.Tensor, c: float) -> int:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    labels = data.labels.numpy()
    vec = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2)  # as textclass.tfidf_baseline
    clf = LogisticRegression(C=c, max_iter=2000).fit(vec.fit_transform([data.texts[i] for i in fit]), labels[fit])
    return int((clf.predict(vec.transform([data.texts[i] for i in held])) != labels[held]).sum())


def bag_errors(args: argparse.Namespace, data, fit: torch.Tensor, held: torch.Tensor, seed: int, max_len: int) -> int:
    torch.manual_seed(seed)
    ids, lengths, labels = data.ids[fit, :max_len], data.lengths[fit].clamp(max=max_len), data.labels[fit]
    model = BagOfEmbeddings(data.vocab_size, len(data.classes), args.embed_dim, dropout=0.3,
                            word_dropout=args.word_dropout, idf_weighted=args.idf)
    if args.idf:
        model.set_idf(ids)  # from the fold's training texts only
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4, fused=True)
    model.train()
    for step, _epoch, idx in minibatches(len(ids), 32, seed):
        if step >= args.steps:
            break
        width = int(lengths[idx].max())
        loss = nn.functional.cross_entropy(model(ids[idx, :width]), labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    preds = textclass.predict_logits(model, data.ids[held], data.lengths[held], torch.device("cpu"), max_len)
    return int((preds.argmax(1) != data.labels[held]).sum())


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
        cfg = textclass.Config(seed=seed)
        data = textclass.prepare(cfg, "bbc")
        train = data.train.numpy()
        folds = StratifiedKFold(5, shuffle=True, random_state=seed).split(train, data.labels.numpy()[train])
        errors = 0
        for fit, held in folds:
            fit, held = torch.from_numpy(train[fit]), torch.from_numpy(train[held])
            errors += (tfidf_errors(data, fit, held, cfg.tfidf_c) if args.tfidf
                       else bag_errors(args, data, fit, held, seed, cfg.bow_max_len))
        print(f"seed {seed}: {errors} out-of-fold errors of {len(train)}", flush=True)
        total, count = total + errors, count + len(train)
    print(f"{vars(args)}: {total} out-of-fold errors ({100 * total / count:.2f}%), "
          f"{time.process_time() - t0:.0f} CPU-s")


if __name__ == "__main__":
    main()
