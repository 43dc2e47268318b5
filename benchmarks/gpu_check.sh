#!/usr/bin/env bash
# One GPU check, under 8 minutes on one GPU: HeLU's CUDA tests, the activation benchmark on CUDA (eager and
# compiled; fp32, bf16, fp16; flat and channels_last), a WRN-16-4 training step (batch 128, bf16-mixed: HeLU vs
# ReLU vs GELU), a short `helu-train fit` on the GPU in bf16-mixed, and a DDP predict on every visible GPU.
#
#     bash benchmarks/gpu_check.sh            # from anywhere; logs and run folders go to $GPU_CHECK_OUT or a temp dir
#
# Needs a CUDA GPU and the project installed with its extras (`pip install -e '.[test]'`, or the same wheels
# offline); it installs and downloads nothing (the digits data ships inside scikit-learn). It runs this checkout's
# code (PYTHONPATH), prints each step's time and HeLU/ReLU ratios, and exits non-zero if any step fails
# (2: the machine lacks a GPU or a package, before anything runs).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
out="${GPU_CHECK_OUT:-$(mktemp -d -t helu_gpu_check.XXXXXX)}"
mkdir -p "$out"

if ! python - <<'EOF'
import importlib.util, sys
import torch
missing = [m for m in ("triton", "lightning", "jsonargparse", "sklearn", "pytest", "hypothesis", "torchvision")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_check: missing packages {missing}; install the project with pip install -e '.[test]' "
             "(offline: from the same wheels) first")
if not torch.cuda.is_available():
    sys.exit("gpu_check: no CUDA GPU is visible to torch (torch.cuda.is_available() is False); "
             "run this script on a machine with a GPU")
print(f"gpu_check: torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.device_count()} GPU(s): "
      f"{torch.cuda.get_device_name()}")
EOF
then
  exit 2
fi
if command -v helu-train >/dev/null 2>&1; then train=(helu-train); else train=(python -m helu_lightning.commands); fi
gpus=$(python -c "import torch; print(torch.cuda.device_count())")

failures=()
step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $out/NAME.log, record a failure
  local name=$1 limit=$2 started=$SECONDS rc
  shift 2
  echo "=== $name (limit ${limit} s)"
  timeout --signal=INT --kill-after=15 "$limit" "$@" 2>&1 | tee "$out/$name.log"
  rc=${PIPESTATUS[0]}
  echo "--- $name: exit $rc after $((SECONDS - started)) s"
  [ "$rc" -eq 0 ] || failures+=("$name (exit $rc)")
}

# Each step's limit; together they stay within 8 minutes (480 s), model start-up and compilation included.
step cuda_mode_matrix 110 python -m pytest -q -x -p no:cacheprovider tests/test_helu_modes.py -k cuda -m "not slow"
step triton_tests 30 python -m pytest -q -x -p no:cacheprovider tests/test_triton_kernels.py
step activation_eager 60 python benchmarks/activation.py --device cuda --dtypes float32 bfloat16 float16 \
  --no-memory --repeats 5
step activation_compiled 90 python benchmarks/activation.py --device cuda --dtypes float32 bfloat16 \
  --numel 16384 4194304 --compile --no-memory --repeats 5
step activation_channels_last 50 python benchmarks/activation.py --device cuda --dtypes float32 bfloat16 float16 \
  --channels-last --no-memory --repeats 5
step train_step 40 python benchmarks/train_step.py --device cuda --batch 128 --precision bf16-mixed --steps 20
step fit 45 "${train[@]}" fit --config configs/offline.yaml --trainer.accelerator gpu --trainer.devices 1 \
  --trainer.precision bf16-mixed --trainer.max_epochs 2 --trainer.enable_progress_bar false \
  --trainer.default_root_dir "$out/fit"
step ddp_predict 45 "${train[@]}" predict --config configs/offline.yaml --ckpt_path "$out/fit/checkpoints/last.ckpt" \
  --trainer.accelerator gpu --trainer.devices "$gpus" --trainer.strategy ddp --trainer.enable_progress_bar false \
  --trainer.default_root_dir "$out/predict" --trainer.callbacks+=helu_lightning.callbacks.PredictionWriter
step predictions_complete 10 python - "$out/predict/predictions.csv" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
indices = sorted(int(r["index"]) for r in rows)
assert indices == list(range(len(indices))) and len(indices) == 270, f"{len(indices)} rows, want 0..269 once each"
print(f"{sys.argv[1]}: {len(rows)} predictions, every test digit once")
EOF

echo
echo "=== summary: HeLU's rows (ratios to ReLU measured in the same repeats)"
grep -h -E "^(cuda|helu|relu|gelu|WRN)" "$out"/activation_*.log "$out"/train_step.log 2>/dev/null | grep -E "helu|WRN"
echo "logs and runs: $out; total ${SECONDS} s (budget 480 s)"
if [ "${#failures[@]}" -gt 0 ]; then
  printf 'FAILED: %s\n' "${failures[@]}"
  exit 1
fi
echo "gpu_check: all steps passed"
