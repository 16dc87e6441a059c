#!/usr/bin/env bash
# Retrain the embedded default model (spatial_llava_ros/data/default_model) from scratch on
# synthetic scenes, exactly as shipped, then evaluate it on the 500 held-out scenes (seeds 0:500;
# training uses seeds 100000:102500, validation 90000:90040).
#
# Usage: scripts/train_default_model.sh [OUTPUT_DIR]   (default runs/default_model)
# Re-running with the same OUTPUT_DIR resumes from its latest checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-runs/default_model}"
PY="${PYTHON:-.venv/bin/python}"

"$PY" -m spatial_llava_ros.cli train --config config/train_default.yaml --output-dir "$OUT"

rm -rf spatial_llava_ros/data/default_model
mkdir -p spatial_llava_ros/data
cp -r "$OUT/final" spatial_llava_ros/data/default_model
du -sh spatial_llava_ros/data/default_model

"$PY" -m spatial_llava_ros.cli eval grounding --seeds 0:500 \
    --out bench/results/grounding_default.json
