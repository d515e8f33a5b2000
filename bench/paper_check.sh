#!/usr/bin/env bash
# The GPU check, for a session that is lent one GPU for a few minutes (`make paper-check`):
#  1. the CUDA tests (tests/test_cuda.py, tests/test_cluster.py; skipped on a machine without CUDA);
#  2. a shortened paper-shaped run of chapter 2 (Trifeature at the paper's 64 px, 50 renders per
#     combination, the CIFAR ResNet-18, fewer epochs) and of chapter 5's first MCL stage (CIFAR-10 in full,
#     ResNet-18), each writing its results file with provenance under results/paper/.
# It needs CIFAR-10 for chapter 5: a data root that has it, or MCL_DATA_MIRROR pointing at a folder with the
# mirror's cifar10-jpeg.tar.gz (19 MB). Without it chapter 5 is skipped, and said so.
# Times on an H200 are not measured yet; EPOCHS sets the epochs of both chapters (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
EPOCHS=${EPOCHS:-10}
OUT=${OUT_DIR:-results/paper}
export HF_HUB_OFFLINE=1 MCL_RESULTS_DIR="$OUT"
mkdir -p "$OUT" _build/paper-check
"$PY" - <<'PYTHON'
import torch
assert torch.cuda.is_available(), "no CUDA device: paper-check needs a GPU"
print(f"[paper-check] {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
PYTHON
echo "[paper-check] CUDA tests"
"$PY" -m pytest -q tests/test_cuda.py tests/test_cluster.py -k "cuda or Cuda" -p no:cacheprovider
run_chapter() {  # chapter, then papermill -p pairs
  local chapter=$1; shift
  "$PY" -m jupytext --quiet --to ipynb "book/$chapter.md" -o "_build/paper-check/$chapter.ipynb"
  local start=$SECONDS
  "$PY" -m papermill "_build/paper-check/$chapter.ipynb" "_build/paper-check/$chapter.out.ipynb" \
    -k python3 --cwd _build/paper-check -p scale paper -p device cuda "$@"
  echo "[paper-check] $chapter: $((SECONDS - start)) s"
}
run_chapter 02_mcl_step_by_step -p epochs "$EPOCHS"
if "$PY" -c "from mcl.data.cifar import load_cifar10; load_cifar10('test')" 2>/dev/null; then
  run_chapter 05_linear_eval_by_stage -p epochs "$EPOCHS" -p n_stages 2
else
  echo "[paper-check] chapter 5 skipped: CIFAR-10 not found (set MCL_DATA_MIRROR to a folder with cifar10-jpeg.tar.gz)"
fi
echo "[paper-check] results with provenance in $OUT:"; ls -l "$OUT"
