#!/usr/bin/env bash
# One prepared GPU check (run through the device tool, from the repo root, with .whl and runs/data carried):
# a `base` preset (12 layers, hidden 768) per-language sync run in bf16 with ZeRO-2 under the DeepSpeed
# launcher, a few hundred steps; tokens/s and MFU come back in metrics.jsonl.
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD DS_ACCELERATOR=cuda PYTHONUNBUFFERED=1 SYNCMOD_PROGRESS=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, deepspeed, transformers; print('torch', torch.__version__, 'deepspeed', deepspeed.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
STEPS=${STEPS:-300}
python3 -m deepspeed.launcher.runner --num_gpus 1 --module syncmod.pretrain pretrain/sync.yaml \
  --data.root=runs/data --out=/tmp/base --model.preset=base --model.max_seq_len=256 --train.seq_len=256 \
  --train.batch_size=32 --train.zero_stage=2 --train.precision=bf16 --train.steps="$STEPS" --train.lr=3e-4 \
  --train.warmup_steps=30 --eval.every=0 --eval.units=200 --checkpoint.every=0 --train.log_every=25 2>&1 \
  | grep -vE "^\[(20|rank)" | tee "$OUT/base.log" | tail -40
cp /tmp/base/metrics.jsonl /tmp/base/config.json /tmp/base/ds_config.json "$OUT/"
