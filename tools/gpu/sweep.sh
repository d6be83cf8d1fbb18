#!/usr/bin/env bash
# Later calls on the same (warm) GPU machine: train recipes side by side from the pretrained backbone, each
# resumable from its last checkpoint, then summarise them all and pack the best (by the selection metric on
# the stressed carved validation split) into $OUT in 15 MB parts.
#   EPOCHS=20 WORKERS=5 bash tools/gpu/sweep.sh NAME "EXTRA ARGS" [NAME "EXTRA ARGS" ...]
set -u
WORK=${WORK:-/root/pl}; STEPS_PER_EPOCH=${STEPS_PER_EPOCH:-139}; EPOCHS=${EPOCHS:-12}; WORKERS=${WORKERS:-4}
BACKBONE=${BACKBONE:-.gpu2/backbone}
export PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 PYTHONUNBUFFERED=1
test -d "$WORK/chest_xray" || { echo "no data in $WORK: run tools/gpu/setup.sh first"; exit 3; }
run() {  # name, extra arguments as one string
  local name=$1 extra=$2
  [ -f "$WORK/runs/$name/eval/stress/stress.json" ] && { echo "$name: done before"; return; }
  # shellcheck disable=SC2086
  python3 train_hf.py --dataset_name_or_dir "$WORK/chest_xray" --model_name_or_path "$BACKBONE" \
    --card_base_model facebook/dinov2-small --output_dir "$WORK/runs/$name" --max_steps $((EPOCHS * STEPS_PER_EPOCH)) \
    --warmup_steps 0.05 --freeze_layers 0 --eval_steps "$STEPS_PER_EPOCH" --save_steps "$STEPS_PER_EPOCH" \
    --per_device_train_batch_size 32 --per_device_eval_batch_size 128 --dataloader_num_workers "$WORKERS" --bf16 true \
    --stress_selection_images 150 --stress_suite_images 400 --early_stopping_patience 4 --save_dtype float16 \
    --logging_steps 50 --report_to none --resume_from_checkpoint last $extra > "$WORK/$name.log" 2>&1
  echo "$name: exit $?"
}
start=$(date +%s)
while [ $# -ge 2 ]; do run "$1" "$2" & shift 2; done
wait
echo "sweep wall $(( $(date +%s) - start )) s"
python3 tools/gpu/summary.py "$WORK/runs" "$OUT" 2>&1 | tee "$OUT/summary.txt"
