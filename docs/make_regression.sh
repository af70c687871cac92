#!/usr/bin/env bash
# The brain-age and three-group runs of docs/results.md, on the graded synthetic demo (48 subjects,
# ages 8-75 y, the RD increase in the planted region growing with age): AlexNet-GAP, 3 subject-level
# folds, the bundle's defaults otherwise (CPU).
#   1. task regression: training (checkpoint by validation subject MAE), evaluation (MAE against the
#      mean-age baseline, r, the age-bias fit on the validation subjects), CAM of the output;
#   2. three groups (young 8-30, middle 31-52, old 53-75 y): checkpoint by validation subject balanced
#      accuracy, one-vs-rest CAM of every class (cam_<class>_vs_rest/).
# Usage: [RESULTS_DIR=...] [RESULTS_TABLE=docs/results_table_regression] bash docs/make_regression.sh
# (from the repository root, in the project's venv)
set -euo pipefail
folds=3
root=${RESULTS_DIR:-runs/results_regression}
train=bundles/cam_dmri/train.json
evaluate="['bundles/cam_dmri/configs/train.json','bundles/cam_dmri/configs/evaluate.json']"
infer="['bundles/cam_dmri/configs/train.json','bundles/cam_dmri/configs/inference.json']"
data=(--demo_age_effect graded --demo_subjects 48 --arch alexnet --network_width 0.25 --image_size 96 --num_folds "$folds")
for fold in $(seq 0 $((folds - 1))); do
  reg=(--task regression --fold "$fold" --output_dir "$root/regression/alexnet_fold$fold" "${data[@]}")
  python -m monai.bundle run training --config_file "$train" "${reg[@]}"
  python -m monai.bundle run evaluating --config_file "$evaluate" "${reg[@]}"
  python -m monai.bundle run inference --config_file "$infer" "${reg[@]}"
  three=(--groups "young:8-30,middle:31-52,old:53-75" --num_classes 3 --best_metric subject_balanced_accuracy
         --fold "$fold" --output_dir "$root/three_groups/alexnet_fold$fold" "${data[@]}")
  python -m monai.bundle run training --config_file "$train" "${three[@]}"
  python -m monai.bundle run evaluating --config_file "$evaluate" "${three[@]}"
  python -m monai.bundle run inference --config_file "$infer" "${three[@]}" --cam_class each_vs_rest
done
hcp-cam compare "$root"/regression/* "$root"/three_groups/* --out "${RESULTS_TABLE:-docs/results_table_regression}"
