#!/usr/bin/env bash
# First light on a GPU (issue 21): one command of at most 9 minutes on a bare GPU machine with only
# this repository. It installs what is missing, times training (our model vs the GPT-2-style
# reference at 8L/512: eager and compiled, sdpa and flex), runs `reproduce.py --preset gpu-quick`
# with tests/test_cuda.py beside it, and writes ONE archive of results and logs:
#
#     bash bench/gpu_first_light.sh              # on the GPU machine: $OUT/first_light.tar.gz
#     bash bench/gpu_first_light.sh --dry-run    # (or CPU_CHECK=1) every part at toy size on the CPU
#
# The timeline (seconds from the start; BUDGET_S, default 525, ends before the 9-minute mark; the
# dry run: 180, gpu-quick's recipe at toy size (bench/first_light.py), the bench's toy shape, runs and
# results in a tmp dir):
#   0    environment, then pip only for what does not import (torch: only if it is missing)
#   ~10  the data of gpu-quick in the background, on one CPU core (reproduce.py's own data command,
#        so its data job then finds the build done, or waits for it on data.py's lock)
#   ~10  the bench, alone on the GPU: eager (at most 60 s), then compiled too (at most BENCH_S, 100)
#   ~150 reproduce.py --preset gpu-quick, and tests/test_cuda.py beside it (the tests are mostly
#        compile time on the CPU; at most TESTS_S, 150); reproduce.py gets what is left
#   end  the archive (an EXIT trap: written however the parts ended)
# Every part runs under `timeout`, cut at its limit or at the budget, whichever is first; a cut
# reproduce.py leaves checkpoints that the same command continues (`--resume` per job).
# parts.tsv in the archive says per part: its exit status (124: cut by its timeout), seconds, limit.

set -u
cd "$(dirname "$0")/.."
DRY=${CPU_CHECK:-0}
[ "${1:-}" = "--dry-run" ] && DRY=1
PY=${PYTHON:-$(command -v python || command -v python3)}
START=$(date +%s)
OUT=${OUT:-$PWD/first_light_out}
mkdir -p "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/first_light.XXXXXX")
LOG=$WORK/logs
mkdir -p "$LOG"
if [ "$DRY" = 1 ]; then  # toy sizes on the CPU, everything under $WORK (nothing lands in the repo)
  BUDGET=${BUDGET_S:-180}; DRYFLAG=--dry; RUNS=$WORK/scratch/runs/toy; RESULTS=$WORK/results/toy
  REPRODUCE=($PY bench/first_light.py reproduce "$RUNS" "$RESULTS" --dry)
  BENCH=(--device cpu --threads 1 --only train --shapes dry --rounds 2 --ref_low --attention sdpa flex)
  BENCH_S=${BENCH_S:-45}; TESTS_S=${TESTS_S:-60}
else
  BUDGET=${BUDGET_S:-525}; DRYFLAG=; RUNS=runs/gpu-quick; RESULTS=results/gpu-quick
  REPRODUCE=($PY reproduce.py --preset gpu-quick --runs "$RUNS" --out "$RESULTS")  # --device auto: cuda
  BENCH=(--device cuda --only train --shapes 8l512 --rounds 5 --ref_low --attention sdpa flex)
  BENCH_S=${BENCH_S:-100}; TESTS_S=${TESTS_S:-150}
fi
DATA_PID=

elapsed() { echo $(( $(date +%s) - START )); }

# part NAME LIMIT CMD...: run CMD with its output in logs/NAME.log, cut at LIMIT seconds or 20 s
# before the budget ends (the archive's margin), and record how it ended in parts.tsv
part() {
  local name=$1 limit=$2 t0 left rc
  shift 2
  left=$(( BUDGET - $(elapsed) - 20 ))
  [ "$limit" -gt "$left" ] && limit=$left
  if [ "$limit" -lt 5 ]; then
    printf '%s\tskipped\t0\t0\n' "$name" >> "$WORK/parts.tsv"
    echo "[first light] $name: skipped, the budget is spent"
    return 0
  fi
  echo "[first light] $name (at most $limit s, at $(elapsed) s)"
  t0=$(date +%s)
  timeout -k 10 "$limit" "$@" > "$LOG/$name.log" 2>&1
  rc=$?
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" "$limit" >> "$WORK/parts.tsv"
  echo "[first light] $name: exit $rc after $(( $(date +%s) - t0 )) s"
  return 0
}

archive() {
  if [ -n "$DATA_PID" ] && kill "$DATA_PID" 2>/dev/null; then  # stopped unfinished: so is its lock
    wait "$DATA_PID" 2>/dev/null
    rm -f "$RUNS/data/.building"
  fi
  mkdir -p "$WORK/results" "$WORK/runs"
  [ "$DRY" != 1 ] && [ -d "$RESULTS" ] && cp -r "$RESULTS" "$WORK/results/"
  if [ -d "$RUNS" ]; then  # every job's log, marker, loss curve and evaluation; no checkpoints, no data
    cp "$RUNS/data/meta.json" "$WORK/data_meta.json" 2>/dev/null
    (cd "$(dirname "$RUNS")" && find "$(basename "$RUNS")" -type f -not -path '*/data/*' \( -name '*.json' -o -name '*.jsonl' \
      -o -name '*.log' -o -name '*.png' -o -name '*.md' -o -name '*.gz' \) -print0 |
      tar --null -T - -cf - 2>/dev/null) | (cd "$WORK/runs" && tar -xf -)
  fi
  rm -rf "$WORK/scratch"
  printf 'total\t-\t%s\t%s\n' "$(elapsed)" "$BUDGET" >> "$WORK/parts.tsv"
  tar -czf "$OUT/first_light.tar.gz" -C "$WORK" . && echo "[first light] wrote $OUT/first_light.tar.gz at $(elapsed) s"
  rm -rf "$WORK"
}
trap archive EXIT
trap 'exit 143' TERM INT  # a signal too ends in the archive

printf 'part\texit\tseconds\tlimit\n' > "$WORK/parts.tsv"
{
  echo "commit $(git rev-parse HEAD 2>/dev/null || echo unknown) dry=$DRY budget=${BUDGET}s"
  date -u
  nproc
  nvidia-smi 2>&1 | head -20
  $PY -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda,
    "available", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' 2>&1
} > "$WORK/env.txt" 2>&1

# 1. install only what is missing (torch with CUDA is usually there already; pip's torch is CUDA's)
install() {
  $PY -c 'import torch' 2>/dev/null || $PY -m pip install -q torch || return 1
  $PY -c 'import numpy, tiktoken, regex, tqdm, matplotlib, pytest' 2>/dev/null ||
    $PY -m pip install -q -r requirements.txt
}
part install 120 bash -c "$(declare -f install); PY=$PY install"

# 2. the data, in the background: the exact command of the preset's data job
mapfile -t DATA_ARGS < <($PY bench/first_light.py data_cmd "$RUNS" $DRYFLAG 2>> "$LOG/data.log")
echo "python ${DATA_ARGS[*]}" >> "$LOG/data.log"
if [ "${#DATA_ARGS[@]}" -gt 0 ]; then
  OMP_NUM_THREADS=1 nice "$PY" "${DATA_ARGS[@]}" >> "$LOG/data.log" 2>&1 &
  DATA_PID=$!  # nice execs python: this is data.py's own process, which the archive step stops
fi

# 3. the speed of training, alone on the device: eager first (seconds), then with torch.compile too
#    (three compiles: the reference, ours with sdpa, ours with flex), so a slow compile costs only
#    the second part
part bench_eager 60 $PY bench/bench_model.py "${BENCH[@]}" --json "$WORK/bench_eager.json"
part bench_compiled "$BENCH_S" $PY bench/bench_model.py "${BENCH[@]}" --compile --json "$WORK/bench_compiled.json"

# 4. the plan, then the ladder, with the CUDA tests beside it (skipped on a CPU: the dry run checks
#    that they are collected)
part plan 60 $PY bench/plan.py --preset gpu-quick --device cuda --runs "$RUNS"
part test_cuda "$TESTS_S" $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py &
TESTS_PID=$!
part reproduce "$BUDGET" "${REPRODUCE[@]}"
wait "$TESTS_PID"
