#!/usr/bin/env bash
# The group analysis of docs/group.md: a misaligned demo-like dataset (24 subjects whose heads are
# rotated up to 10 degrees and shifted up to 6 mm inside their grids), AlexNet-GAP trained with the
# bundle's defaults on 3 subject-level folds (CPU), then `hcp-cam group` on the three runs: with the
# generator's template and atlas, with a study template, and on a label-shuffled cohort.
# Usage: [GROUP_DIR=...] bash docs/make_group.sh     (from the repository root, in the project's venv)
set -euo pipefail
folds=3
root=${GROUP_DIR:-runs/group_demo}
cfg=bundles/cam_dmri/configs
data=$root/data
gt=$data/derivatives/ground_truth
if [ ! -f "$data/participants.csv" ]; then
  hcp-cam synth "$data" --subjects 24 --seed 0 --misalign --no-progress
fi
runs=()
for fold in $(seq 0 $((folds - 1))); do
  out=$root/alexnet_fold${fold}
  common=(--dataset_dir "$data" --cache_dir "$root/cache" --arch alexnet --num_folds "$folds" --fold "$fold"
          --output_dir "$out")
  if [ ! -f "$out/cam/summary.csv" ]; then
    python -m monai.bundle run training --config_file "$cfg/train.json" "${common[@]}"
    python -m monai.bundle run evaluating --config_file "['$cfg/train.json','$cfg/evaluate.json']" "${common[@]}"
    python -m monai.bundle run inference --config_file "['$cfg/train.json','$cfg/inference.json']" "${common[@]}"
  fi
  runs+=("$out")
done
[ "${TRAIN_ONLY:-0}" = 1 ] && exit 0
# the generator's reference space: its FA template and label atlas (effect_region = label 1)
hcp-cam group "${runs[@]}" --out "$root/group_atlas" --template "$gt/template_fa.nii.gz" \
    --atlas "$gt/atlas.nii.gz" --atlas-labels "$gt/atlas_labels.csv" --no-progress
# negative control: the same maps with the group labels shuffled across subjects (seeded); the
# registrations are those of the run above (a copied transforms/ folder is reused, not redone)
mkdir -p "$root/group_shuffled" && cp -r "$root/group_atlas/transforms" "$root/group_shuffled/"
hcp-cam group "${runs[@]}" --out "$root/group_shuffled" --template "$gt/template_fa.nii.gz" \
    --atlas "$gt/atlas.nii.gz" --atlas-labels "$gt/atlas_labels.csv" --shuffle-groups 1 --no-progress
# a study-specific template built from the cohort's FA maps (no atlas: it is in the first subject's space)
hcp-cam group "${runs[@]}" --out "$root/group_study" --no-progress
