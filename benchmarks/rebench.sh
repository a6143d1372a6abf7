#!/usr/bin/env bash
# Re-measure recipes at one commit, from a clean clone of it, so that the checkout you work in may move meanwhile
# (`cookbook bench` refuses a dirty tree, and a run records whether its tree was dirty when it started).
#
#   benchmarks/rebench.sh COMMIT CLONE [RECIPE ...]
#
# Clones this repository at COMMIT into CLONE (or reuses CLONE if it is already at COMMIT), then benches each
# RECIPE (default: every recipe, cheapest first) whose result in CLONE.results/results (or in this checkout's
# benchmarks/results) was not measured on this code already, so an interrupted re-bench continues where it
# stopped. The results go outside the clone, which stays clean (bench refuses a dirty tree, and a result it wrote
# would make the tree dirty for the next recipe). The script is replaced, never edited, while it runs: bash reads
# a running script from its file as it goes.
# Seeds run two at a time on one thread each; textclass runs its 15 cross-validation folds. Copy
# CLONE.results/results/*.json into benchmarks/results of your checkout, regenerate its index
# (`python -c "from pathlib import Path; from torch_cookbook.bench import write_index; write_index(Path('benchmarks/results'))"`)
# and commit them.
set -euo pipefail
commit=${1:?usage: benchmarks/rebench.sh COMMIT CLONE [RECIPE ...]}
clone=${2:?usage: benchmarks/rebench.sh COMMIT CLONE [RECIPE ...]}
shift 2
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-$here/.venv/bin/python}
if [ ! -d "$clone/.git" ]; then
  git clone -q "$here" "$clone"
fi
git -C "$clone" fetch -q "$here" "+refs/heads/*:refs/remotes/here/*"  # COMMIT may be abbreviated
git -C "$clone" checkout -q --detach "$commit"
cd "$clone"
export PYTHONPATH="$clone/src"
recipes=("$@")
if [ ${#recipes[@]} -eq 0 ]; then
  recipes=(regression qlearning multitask dqn forecast transfer style adversarial ddp dropout lstm optimizers
           autoencoder gan amp textclass seq2seq batchnorm unet)
fi
src=$("$python" -c "from torch_cookbook.engine.runs import code_version; print(code_version()['src_sha256'])")
out="$clone.results/results"
failed=()
mkdir -p "$out"
for name in "${recipes[@]}"; do
  done_already=""
  for result in "$out/$name.json" "$here/benchmarks/results/$name.json"; do  # here, or committed to the checkout
    if [ -f "$result" ] && "$python" -c "import json, sys; sys.exit(json.load(open('$result')).get('src_sha256') != '$src')"; then
      done_already=$result
    fi
  done
  if [ -n "$done_already" ]; then
    echo "rebench: $name already measured on this code ($done_already)"
    continue
  fi
  seeds=3
  [ "$name" = textclass ] && seeds=15  # seed s holds out fold s mod 5 of repeat s div 5 (docs/textclass.md)
  "$python" -m torch_cookbook bench "$name" --seeds "$seeds" --jobs 2 --threads 1 --runs-root "$clone/runs/bench" \
    --out "$out" || failed+=("$name")  # the others still run
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "rebench: failed: ${failed[*]}"
  exit 1
fi
