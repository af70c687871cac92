#!/usr/bin/env bash
# Ablation of the fused CAM's coverage rule on the runs of make_results.sh: the same weights, CAM
# inference again with --cam_coverage any (a voxel is known where any axis' trained slices cover it)
# instead of the default all (where every axis' do), then the comparison table.
# Usage: [IMAGE_SIZE=96] [RESULTS_DIR=...] [ABLATION_DIR=...] [ABLATION_TABLE=...] bash docs/make_coverage_ablation.sh
# (from the repository root, in the project's venv, after docs/make_results.sh)
set -euo pipefail
size=${IMAGE_SIZE:-96}
root=${RESULTS_DIR:-runs/results}
out=${ABLATION_DIR:-${root}_coverage_any}
runs=()
for run in "$root"/*_fold*; do
  name=$(basename "$run"); arch=${name%_fold*}; fold=${name##*_fold}
  width=0.25
  [ "$arch" = vgg16 ] && width=0.125
  mkdir -p "$out/$name"
  # the training run's config and metrics, so that hcp-cam compare reads this folder as that run
  cp "$run/config.json" "$out/$name/"
  cp -r "$run/metrics" "$out/$name/"
  python -m monai.bundle run inference --config_file "['bundles/cam_dmri/configs/train.json','bundles/cam_dmri/configs/inference.json']" \
    --arch "$arch" --network_width "$width" --image_size "$size" --num_folds 3 --fold "$fold" \
    --output_dir "$out/$name" --ckpt "$run/checkpoints/model.pt" \
    --cam_coverage any --cam_randomisation_check false --cam_faithfulness false
  runs+=("$out/$name")
done
hcp-cam compare "${runs[@]}" --out "${ABLATION_TABLE:-docs/results_table_coverage_any}"
