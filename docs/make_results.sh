#!/usr/bin/env bash
# Re-makes the tables in docs/results.md: the five networks x 3 subject-level folds on the built-in
# demo data (CPU), then evaluation, CAM inference with localization scores, and the comparison table.
# Usage: [IMAGE_SIZE=96] [RESULTS_DIR=...] [RESULTS_TABLE=docs/results_table] bash docs/make_results.sh [ARCH...]
# (from the repository root, in the project's venv)
set -euo pipefail
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(alexnet vgg16 googlenet googlenet_gmp inception_v3)
folds=3
size=${IMAGE_SIZE:-96}                               # network input; IMAGE_SIZE=128 for 7x7-8x8 CAMs
root=${RESULTS_DIR:-runs/results}
for arch in "${archs[@]}"; do
  width=0.25
  [ "$arch" = vgg16 ] && width=0.125   # VGG16 is ~10x the compute of the others at the same width
  for fold in $(seq 0 $((folds - 1))); do
    out=$root/${arch}_fold${fold}
    common=(--arch "$arch" --network_width "$width" --image_size "$size" --num_folds "$folds" --fold "$fold" --output_dir "$out")
    python -m monai.bundle run training --config_file bundles/cam_dmri/train.json "${common[@]}"
    python -m monai.bundle run evaluating --config_file "['bundles/cam_dmri/configs/train.json','bundles/cam_dmri/configs/evaluate.json']" "${common[@]}"
    python -m monai.bundle run inference --config_file "['bundles/cam_dmri/configs/train.json','bundles/cam_dmri/configs/inference.json']" "${common[@]}"
  done
done
hcp-cam compare "$root"/* --out "${RESULTS_TABLE:-docs/results_table}"

