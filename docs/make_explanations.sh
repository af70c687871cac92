#!/usr/bin/env bash
# Re-makes the explanation checks in docs/results.md: per network and fold, the faithfulness of the
# maps (deletion/insertion), the data-randomisation test against the same configuration trained on
# permuted labels (on the folds in PERMUTED_FOLDS: it trains a second network), and the
# repeatability of each subject's maps across folds (hcp-cam compare).
# Usage: [RESULTS_DIR=runs/results] [PERMUTED_DIR=runs/results_permuted] [PERMUTED_FOLDS="0"] \
#        [RESULTS_TABLE=docs/results_table_explanations] bash docs/make_explanations.sh [ARCH...]
#        (default: alexnet; from the repository root, in the venv)
# Reuses the runs of docs/make_results.sh where they exist (trains and evaluates them otherwise), and
# skips a step whose outputs are there already.
set -euo pipefail
archs=("$@")
[ ${#archs[@]} -gt 0 ] || archs=(alexnet)
folds=3
root=${RESULTS_DIR:-runs/results}
permuted=${PERMUTED_DIR:-runs/results_permuted}
permuted_folds=" ${PERMUTED_FOLDS:-0} "
train=bundles/cam_dmri/configs/train.json
evaluate="['$train','bundles/cam_dmri/configs/evaluate.json']"
infer="['$train','bundles/cam_dmri/configs/inference.json']"
runs=()
for arch in "${archs[@]}"; do
  width=0.25
  [ "$arch" = vgg16 ] && width=0.125
  for fold in $(seq 0 $((folds - 1))); do
    common=(--arch "$arch" --network_width "$width" --image_size 96 --num_folds "$folds" --fold "$fold")
    real=$root/${arch}_fold${fold}
    perm=$permuted/${arch}_fold${fold}
    if [ ! -f "$real/metrics/test_metrics.json" ]; then
      python -m monai.bundle run training --config_file "$train" "${common[@]}" --output_dir "$real"
      python -m monai.bundle run evaluating --config_file "$evaluate" "${common[@]}" --output_dir "$real"
    fi
    randomised=()
    if [[ "$permuted_folds" == *" $fold "* ]]; then
      # the data-randomisation network: same split and settings, labels permuted across training/validation subjects
      if [ ! -f "$perm/cam/summary.csv" ]; then
        python -m monai.bundle run training --config_file "$train" "${common[@]}" --output_dir "$perm" --label_permutation_seed 1
        python -m monai.bundle run evaluating --config_file "$evaluate" "${common[@]}" --output_dir "$perm" --label_permutation_seed 1
        python -m monai.bundle run inference --config_file "$infer" "${common[@]}" --output_dir "$perm" --label_permutation_seed 1 \
            --cam_faithfulness false --cam_randomisation_check false
      fi
      randomised=(--data_randomisation_run "$perm")
    fi
    # every subject mapped (repeatability across folds), faithfulness on the test subjects, data randomisation;
    # make_results.sh's inference maps the test subjects only and scores their faithfulness already
    faithful=true
    [ -f "$real/cam/faithfulness.csv" ] && faithful=false
    if ! grep -q '^training,' "$real/cam/summary.csv" 2>/dev/null || [ "$faithful" = true ] \
        || { [ ${#randomised[@]} -gt 0 ] && [ ! -f "$real/cam/data_randomisation.json" ]; }; then
      python -m monai.bundle run inference --config_file "$infer" "${common[@]}" --output_dir "$real" \
          --cam_split all --cam_faithfulness "$faithful" "${randomised[@]}"
    fi
    runs+=("$real")
  done
done
hcp-cam compare "${runs[@]}" --out "${RESULTS_TABLE:-docs/results_table_explanations}"
