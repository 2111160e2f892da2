#!/usr/bin/env bash
# One prepared GPU check of the pre-training engine, in under 7 minutes on one GPU. Results: gpu_check.md and
# gpu_check.json (+ base.json, 1b.json, pretrain_metrics.jsonl, gpu_check.log) under $OUT.
#
#   on the GPU machine, from the repo root, with `.whl` carried:  bash bench/gpu_check.sh
#   here, once, to put the wheels it needs into .whl/:            bash bench/gpu_check.sh wheels
#   CPU rehearsal (tiny preset, a few steps, no compile):          GPU_CHECK_TINY=1 bash bench/gpu_check.sh
#
# It measures
#   1. side by side in one process (bench.engine): a bare compiled bf16 loop of the `base` architecture (SDPA,
#      fused AdamW) against syncmod's pre-training step on one base and on 4 per-language bases colocated;
#   2. a real `syncmod pretrain` run (sync.yaml, `base`, 4 per-language bases colocated, bf16, compiled):
#      tokens/s and MFU of its synchronous and asynchronous steps, from its metrics.jsonl;
#   2b. on 2+ GPUs: the same run with `model.placement: language-parallel` (one rank group per language: 4
#      languages on 4, 8, ... GPUs, else en+xa on 2 or 3), launched with `deepspeed --num_gpus N`;
#   3. step 1 for `1b` (one base against the bare loop) when the time budget still allows.
# GPU_CHECK_LP_RANKS=N forces N ranks for 2b (0: skip); with GPU_CHECK_TINY it rehearses 2b on CPU processes.
# No network: the data is synthetic (`syncmod data synth` + `prepare`). Any failure exits non-zero with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$SECONDS
BUDGET=${GPU_CHECK_BUDGET_S:-400}  # seconds; 1b runs only if this much is left after steps 1-2 (see below)

if [ "${1:-}" = wheels ]; then
  # Packages the GPU image lacks (it has torch, transformers, tokenizers, safetensors, sentencepiece, numpy, ...).
  # DeepSpeed publishes no wheel: build its pure-Python one (DS_BUILD_OPS=0: no compiled ops are used).
  mkdir -p .whl
  grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
    typing_extensions==4.16.0 hjson==3.1.0 jsonargparse==4.53.0 docstring_parser==0.18.0
  python3 -m pip download -q --no-deps --no-binary=:all: -d /tmp/ds-sdist deepspeed==0.19.8
  DS_BUILD_OPS=0 python3 -m pip wheel -q --no-deps --no-build-isolation -w .whl /tmp/ds-sdist/deepspeed-0.19.8.tar.gz
  ls -l .whl
  exit 0
fi

OUT=${OUT:-$PWD/bench/out/gpu_check}
WORK=${GPU_CHECK_WORK:-/tmp/syncmod-gpu-check}
mkdir -p "$OUT"
rm -f "$OUT"/{gpu_check.md,gpu_check.json,base.json,1b.json,pretrain_metrics.jsonl,lp_metrics.jsonl}
rm -rf "$WORK" && mkdir -p "$WORK"
LOG="$OUT/gpu_check.log"
: > "$LOG"
say() { echo "[gpu_check $((SECONDS - START))s] $*" | tee -a "$LOG"; }
fail() { say "FAILED: $*"; exit 1; }
# run NAME TIMEOUT CMD...: full output in $WORK/NAME.log, its last lines in gpu_check.log when it fails
run() {
  local name=$1 limit=$2; shift 2
  say "$name: $*"
  if ! timeout "$limit" "$@" > "$WORK/$name.log" 2>&1; then
    tail -40 "$WORK/$name.log" | tee -a "$LOG"
    fail "$name (exit status above; full log $WORK/$name.log)"
  fi
}

# --- Python: the machine's python3 with what it lacks from carried wheels; a venv only where python3 has no torch
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  say "no torch in $PY: making a venv with the project (needs a package index)"
  "$PY" -m venv "$WORK/venv" && "$WORK/venv/bin/pip" install -q -e . || fail "could not install the project"
  PY="$WORK/venv/bin/python"
fi
need="deepspeed jsonargparse docstring_parser pydantic hjson transformers tokenizers safetensors sentencepiece yaml tqdm"
missing=$("$PY" -c "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if not u.find_spec(m)))" $need)
if [ -n "$missing" ]; then
  ls .whl/*.whl > /dev/null 2>&1 || fail "python3 lacks: $missing; run 'bash bench/gpu_check.sh wheels' where pip works, carry .whl"
  say "installing carried wheels for: $missing"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$WORK/site" .whl/*.whl \
    || fail "could not install .whl/*.whl"
  export PYTHONPATH="$WORK/site"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 SYNCMOD_PROGRESS=0 TOKENIZERS_PARALLELISM=false

if [ -n "${GPU_CHECK_TINY:-}" ]; then
  export DS_ACCELERATOR=cpu
  PRESET=tiny; SEQ=31; BATCH=4; MICRO=2; ROUNDS=2; STEPS=2; RUN_STEPS=6; COMPILE=(); WORLD=(600 600); VOCAB=600
  BIG=tiny; BIG_SEQ=31; BIG_BATCH=2
else
  export DS_ACCELERATOR=cuda
  "$PY" -c "import torch; assert torch.cuda.is_available(), 'torch sees no CUDA device'" || fail "no GPU visible to torch"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"
  PRESET=base; SEQ=1023; BATCH=64; MICRO=16; ROUNDS=3; STEPS=4; RUN_STEPS=30; COMPILE=(--compile); WORLD=(4000 4000)
  VOCAB=4000; BIG=1b; BIG_SEQ=1023; BIG_BATCH=16
fi
"$PY" -c "import torch, deepspeed, transformers, jsonargparse; print('python', __import__('sys').version.split()[0], \
'torch', torch.__version__, 'deepspeed', deepspeed.__version__, 'transformers', transformers.__version__)" 2>/dev/null \
  | tee -a "$LOG" "$WORK/versions.txt" || fail "imports"

# --- data: a synthetic world (4 languages), tokenizer and shards
run synth 120 "$PY" -m syncmod.cli data synth --out "$WORK/world" --seed=1 --parallel_train="${WORLD[0]}" \
  --parallel_valid=200 --mono_train="${WORLD[1]}" --mono_valid=200 --task_train=20 --task_dev=10 --task_test=10
run prepare 180 "$PY" -m syncmod.cli data prepare --world "$WORK/world" --out "$WORK/data" --vocab-size "$VOCAB"

# --- 1. bare loop vs syncmod step, side by side (base)
run bench_base 240 "$PY" -m bench.engine --data "$WORK/data" --preset "$PRESET" --seq-len "$SEQ" --batch "$BATCH" \
  --micro "$MICRO" --rounds "$ROUNDS" --steps "$STEPS" --langs 4 --no-sync "${COMPILE[@]}" --json "$OUT/base.json"
grep -E "^(engine vs|[0-9]+ per-language)" "$WORK/bench_base.log" | tee -a "$LOG"

# --- 2. a real pre-training run: sync.yaml, 4 per-language bases colocated
TRAIN_ARGS=(--model.preset="$PRESET" --model.max_seq_len=$((SEQ + 1)) --train.seq_len="$SEQ" --train.batch_size="$BATCH"
  --train.micro_batch_size="$MICRO" --train.steps="$RUN_STEPS" --train.warmup_steps=5 --train.lr=3e-4 --train.log_every=1
  --schedule.pattern=SA --schedule.sync_warmup=0 --eval.every=0 --eval.max_docs=20 --eval.units=100 --checkpoint.every=0 --tracking.enabled=false)
if [ -z "${GPU_CHECK_TINY:-}" ]; then TRAIN_ARGS+=(--train.precision=bf16 --train.compile=true); fi
run pretrain 240 "$PY" -m syncmod.cli pretrain pretrain/sync.yaml --data.root="$WORK/data" --out="$WORK/run" "${TRAIN_ARGS[@]}"
cp "$WORK/run/metrics.jsonl" "$OUT/pretrain_metrics.jsonl"

# --- 2b. the same run, language-parallel, on 2+ GPUs (one rank group per language, data-parallel inside it)
if [ -n "${GPU_CHECK_TINY:-}" ]; then GPUS=0; else GPUS=$(nvidia-smi --list-gpus | wc -l); fi
LP_RANKS=${GPU_CHECK_LP_RANKS:-$GPUS}
if [ "$LP_RANKS" -ge 2 ]; then
  if [ $((LP_RANKS % 4)) -eq 0 ]; then LP_LANGS=en,xa,xb,xc; else LP_LANGS=en,xa; LP_RANKS=$((LP_RANKS / 2 * 2)); fi
  run pretrain_lp 300 "$PY" -m deepspeed.launcher.runner --num_gpus "$LP_RANKS" --master_port 29517 --module syncmod.pretrain \
    pretrain/sync.yaml --data.root="$WORK/data" --out="$WORK/run_lp" "${TRAIN_ARGS[@]}" --data.languages="$LP_LANGS" \
    --model.placement=language-parallel
  cp "$WORK/run_lp/metrics.jsonl" "$OUT/lp_metrics.jsonl"
else
  say "language-parallel skipped: $LP_RANKS GPU(s)"
fi

# --- 3. 1b: one base against the bare loop, if the budget allows
if [ $((SECONDS - START)) -lt $((BUDGET - 150)) ]; then
  run bench_1b 150 "$PY" -m bench.engine --data "$WORK/data" --preset "$BIG" --seq-len "$BIG_SEQ" --batch "$BIG_BATCH" \
    --micro "$BIG_BATCH" --rounds 2 --steps 3 --langs 1 --no-sync "${COMPILE[@]}" --json "$OUT/1b.json"
  grep -E "^engine vs" "$WORK/bench_1b.log" | tee -a "$LOG"
else
  say "1b skipped: $((SECONDS - START)) s used of a $BUDGET s budget"
fi

run summary 60 "$PY" -m bench.engine --summarize "$OUT" --versions "$WORK/versions.txt"
cat "$OUT/gpu_check.md" | tee -a "$LOG"
say "done"
