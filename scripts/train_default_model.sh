#!/usr/bin/env bash
# Retrain the embedded default model (spatial_llava_ros/data/default_model) from scratch on
# synthetic scenes, exactly as shipped, then evaluate it on the 500 held-out scenes.
#   train seeds 100000:106000, validation seeds 90000:90040, evaluation seeds 0:500.
#   stage 1: config/train_default.yaml: vision tower + projector alone on the dense per-patch
#            ground truth (training/dense.py), no language model
#   stage 2: config/train_default_stage2.yaml: everything, on grounding queries, free-form
#            turns and true/false captions, starting from stage 1's export and dense heads
# Both stages share one prepared-frames cache (OUT/stage1/frames.pt, about 4 GB).
#
# Usage: scripts/train_default_model.sh [OUTPUT_DIR]   (default runs/default_model)
# Re-running with the same OUTPUT_DIR resumes each stage from its latest checkpoint
# (a finished stage is re-exported in seconds). Progress bars on stderr; each stage writes
# OUTPUT_DIR/stageN/train_log.jsonl. STAGE1_STOP / STAGE2_STOP stop a stage early.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/default_model}"
PY="${PYTHON:-.venv/bin/python}"
STAGE1_STOP="${STAGE1_STOP:-}"
STAGE2_STOP="${STAGE2_STOP:-}"

"$PY" -m spatial_llava_ros.cli train --config config/train_default.yaml \
    --output-dir "$OUT/stage1" ${STAGE1_STOP:+--stop-at "$STAGE1_STOP"}
"$PY" -m spatial_llava_ros.cli train --config config/train_default_stage2.yaml \
    --output-dir "$OUT/stage2" --base-path "$OUT/stage1/final" \
    --dense-heads-from "$OUT/stage1/dense_heads.pt" \
    --frames-cache "$OUT/stage1/frames.pt" ${STAGE2_STOP:+--stop-at "$STAGE2_STOP"}

rm -rf spatial_llava_ros/data/default_model
mkdir -p spatial_llava_ros/data
cp -r "$OUT/stage2/final" spatial_llava_ros/data/default_model
du -sh spatial_llava_ros/data/default_model

"$PY" -m spatial_llava_ros.cli eval grounding --seeds 0:500 \
    --out bench/results/grounding_default.json
