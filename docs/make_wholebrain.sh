#!/usr/bin/env bash
# The whole-brain run of docs/results.md: AlexNet-GAP trained on every slice with brain
# (--slice_selection mask) and its CAM computed on every slice (--cam_slices all), 3 subject-level
# folds on the built-in demo data (CPU), then the comparison table.
# Usage: [RESULTS_DIR=...] [RESULTS_TABLE=docs/results_table_wholebrain] [CAM_FAITHFULNESS=true] \
#        bash docs/make_wholebrain.sh   (from the repository root, in the project's venv)
# The faithfulness curves are off by default here: over every slice of a whole brain they cost
# ~2.4x the centre-slab runs' (about 2 minutes per test subject on 2 cores).
set -euo pipefail
folds=3
root=${RESULTS_DIR:-runs/results_wholebrain}
for fold in $(seq 0 $((folds - 1))); do
  out=$root/alexnet_fold${fold}
  common=(--arch alexnet --network_width 0.25 --image_size 96 --slice_selection mask
          --num_folds "$folds" --fold "$fold" --output_dir "$out")
  python -m monai.bundle run training --config_file bundles/cam_dmri/train.json "${common[@]}"
  python -m monai.bundle run evaluating --config_file "['bundles/cam_dmri/configs/train.json','bundles/cam_dmri/configs/evaluate.json']" "${common[@]}"
  python -m monai.bundle run inference --config_file "['bundles/cam_dmri/configs/train.json','bundles/cam_dmri/configs/inference.json']" "${common[@]}" --cam_slices all \
      --cam_faithfulness "${CAM_FAITHFULNESS:-false}"
done
hcp-cam compare "$root"/* --out "${RESULTS_TABLE:-docs/results_table_wholebrain}"
