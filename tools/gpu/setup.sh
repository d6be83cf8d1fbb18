#!/usr/bin/env bash
# First call on a lent GPU machine (see tools/gpu/README.md): install the carried wheels, unpack the carried
# data outside the repository, print versions, and smoke-test the real pipeline on a tiny random model.
set -u
WORK=${WORK:-/root/pl}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 PYTHONUNBUFFERED=1
mkdir -p "$WORK" && tar -xf .gpu/data.tar -C "$WORK" || exit 1
nproc; nvidia-smi -L
python3 -c "import pyarrow, transformers, torch, datasets; print('pyarrow', pyarrow.__version__, 'transformers', transformers.__version__, 'torch', torch.__version__, 'datasets', datasets.__version__)"
python3 train_hf.py --dataset_name_or_dir "$WORK/chest_xray" --model_name_or_path .gpu/tiny --output_dir "$WORK/smoke" \
  --max_steps 80 --per_device_train_batch_size 32 --per_device_eval_batch_size 128 --dataloader_num_workers 14 --bf16 true \
  --eval_steps 40 --save_steps 40 --logging_steps 20 --stress_selection_images 20 --stress_suite_images 48 --ood_num_train 40 \
  --save_dtype float16 --report_to none > "$OUT/smoke.log" 2>&1
echo "smoke exit $?"; grep -o "'train_samples_per_second': '[0-9.]*'" "$OUT/smoke.log"
