#!/usr/bin/env bash
# The GPU check, one command on a machine with one CUDA GPU (README, "GPU check"):
#   scripts/gpu_check.sh [out-folder]
# 1. blind-pipeline inference at 256² and 512², batch 1, 16 and 64, fp32 and bf16 (pipeline.benchmark:
#    the full-width networks with random weights, and the shipped model on damaged photos), and
#    at 256², batch 64 and 128, with cuDNN's autotuner on;
# 2. the tests that need a GPU (pytest -m cuda);
# 3. each stage (mpn, epn, ipn) trains GPU_CHECK_STEPS optimizer steps (default 200) at full width,
#    256², batch 8, on the bundled photos, in 32-true (TF32) and in bf16-mixed; the joint stage
#    fine-tunes the three fp32 checkpoints: samples/s, peak GPU memory, losses finite
#    (common.callbacks.TrainingSpeed writes each run's speed.json);
# 4. the EPN run under trainer=ddp on one GPU (NCCL), and with its Canny edges on the GPU;
# then prints the table (scripts/gpu_check_report.py) and writes it to <out>/gpu_check.md.
# Needs the README's install (.venv) with a CUDA build of torch 2.13.0; about 8 minutes on an H100.
#
# GPU_CHECK_DEVICE=cpu runs the same parts on the CPU (trainer.accelerator=cpu, the cuda tests on the
# CPU stand-in): with GPU_CHECK_SIZE=32 GPU_CHECK_WIDTH=0.125 GPU_CHECK_STEPS=4 it checks the script's
# wiring in two minutes; its numbers say nothing about a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-.venv/bin/python}
OUT=${1:-runs/gpu_check/$(date +%Y-%m-%d_%H-%M-%S)}
STEPS=${GPU_CHECK_STEPS:-200}
SIZE=${GPU_CHECK_SIZE:-256}
WIDTH=${GPU_CHECK_WIDTH:-1.0}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
LIMIT=${GPU_CHECK_TIMEOUT:-240}   # seconds any one part may take

ON_DEVICE=()
if [ "$DEVICE" = cuda ]; then
  "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA GPU visible to torch ' + torch.__version__)" || exit 1
else
  ON_DEVICE=(trainer.accelerator=cpu)
  export BLINDFILL_CUDA_STANDIN=cpu   # tests/conftest.py: the cuda tests run on the CPU
fi
mkdir -p "$OUT"
echo "gpu check ($DEVICE): $OUT"

TRAIN=(
  width_mult="$WIDTH" data.size="$SIZE" data.batch_size=8 trainer.max_steps="$STEPS" trainer.max_epochs=-1
  trainer.check_val_every_n_epoch=100000 trainer.num_sanity_val_steps=0 trainer.enable_progress_bar=false
  logger=csv +callbacks.speed._target_=common.callbacks.TrainingSpeed "${ON_DEVICE[@]}"
)

run() {  # run <name> <command...>: its log in <out>/<name>.log, its status in <out>/status.tsv
  local name=$1
  shift
  local start=$SECONDS
  timeout "$LIMIT" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" >>"$OUT/status.tsv"
  echo "  $name: rc $rc, $((SECONDS - start)) s"
}

# Inference first: the shortest part, and the one issue 16's target is about.
run "inference" "$PY" -m pipeline.benchmark device="$DEVICE" width_mult="$WIDTH" stages=[mpn] \
  skip=[peak,data,train,inference,photos] sizes="[$SIZE,$((2 * SIZE))]" pipeline_batches=[1,16,64] \
  variants=[fp32,bf16] warmup=3 repeats=10 out="$OUT/inference.json" hydra.run.dir="$OUT/inference"
run "inference-cudnn-benchmark" "$PY" -m pipeline.benchmark device="$DEVICE" width_mult="$WIDTH" stages=[mpn] \
  skip=[peak,data,train,inference,photos] sizes="[$SIZE]" pipeline_batches=[64,128] cudnn_benchmark=true \
  variants=[fp32,bf16] warmup=3 repeats=10 out="$OUT/inference-cudnn-benchmark.json" \
  hydra.run.dir="$OUT/inference-cudnn-benchmark"
run "pytest-cuda" "$PY" -m pytest -q -m cuda -p no:cacheprovider

for precision in 32-true bf16-mixed; do
  for stage in mpn epn ipn; do
    run "train-$stage-$precision" "$PY" -m pipeline.train stage=$stage trainer=gpu "${TRAIN[@]}" \
      trainer.precision=$precision hydra.run.dir="$OUT/train-$stage-$precision"
  done
done
ckpt() { echo "$OUT/train-$1-32-true/checkpoints/last.ckpt"; }
run "train-joint-32-true" "$PY" -m pipeline.train stage=joint trainer=gpu "${TRAIN[@]}" \
  stage.mpn_checkpoint="$(ckpt mpn)" stage.epn_checkpoint="$(ckpt epn)" stage.ipn_checkpoint="$(ckpt ipn)" \
  hydra.run.dir="$OUT/train-joint-32-true"
run "ddp-epn-32-true" "$PY" -m pipeline.train stage=epn trainer=ddp "${TRAIN[@]}" trainer.devices=1 \
  hydra.run.dir="$OUT/ddp-epn-32-true"
run "canny-on-device-epn-32-true" "$PY" -m pipeline.train stage=epn trainer=gpu "${TRAIN[@]}" \
  data.edge_device=accelerator hydra.run.dir="$OUT/canny-on-device-epn-32-true"

"$PY" scripts/gpu_check_report.py "$OUT" | tee "$OUT/gpu_check.md"
