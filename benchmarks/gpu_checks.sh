#!/usr/bin/env bash
# Every GPU measurement and check the performance issue asks for, in one command, for a session
# that has a CUDA device (docs/performance.md, "GPU"). Writes JSON and logs under OUT_DIR and
# prints each benchmark's table; exits non-zero if CUDA is missing or a step fails.
# Usage (repository root, after `make install`): bash benchmarks/gpu_checks.sh [OUT_DIR]
set -euo pipefail
out=${1:-${OUT:-gpu_checks}}
mkdir -p "$out"
py=${PYTHON:-.venv/bin/python}
"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to measure')"
"$py" -c "import torch; print(torch.cuda.get_device_name(0), torch.__version__)" | tee "$out/device.txt"

# 1. FA: torch WLS on the GPU at HCP size, against reading the DWI once from device memory
"$py" benchmarks/bench_fa.py --size hcp --device cuda --skip-dipy --repeats 3 --json "$out/fa_hcp_cuda.json"
# 2. training: both pipelines, AMP and channels-last (auto on CUDA), every network; throughput vs batch
"$py" benchmarks/bench_train.py --arch all --device cuda --iterations 20 --repeats 3 --json "$out/train_cuda.json"
for b in 32 64 128 256; do
    "$py" benchmarks/bench_train.py --arch alexnet --device cuda --batch-size "$b" --json "$out/train_cuda_b$b.json"
done
"$py" benchmarks/bench_train.py --plot "$out/train_cuda_vs_batch.png" --from "$out"/train_cuda_b*.json
# 3. CAM: one batch vs forward vs Grad-CAM, and the whole-brain CAM of an HCP-size subject
for a in alexnet vgg16 googlenet googlenet_gmp inception_v3; do
    "$py" benchmarks/bench_cam.py --device cuda --arch "$a" --width 0.25 --image-size 96 --batch 64 \
        --repeats 10 --volume hcp --json "$out/cam_cuda_$a.json"
done
# 4. the bundle on the GPU with its CUDA defaults (device pipeline, AMP, channels-last): train 4 epochs,
#    drop the last checkpoint and resume from epoch 3 (optimizer, scheduler and gradient-scaler state),
#    evaluate, infer; then check what the run recorded
run=("--output_dir" "$out/bundle_cuda" "--device" "cuda" "--epochs" "4")
"$py" -m monai.bundle run training --config_file bundles/cam_dmri/train.json "${run[@]}" 2>&1 | tail -n 5
rm "$out/bundle_cuda/checkpoints/checkpoint_epoch=4.pt"
"$py" -m monai.bundle run training --config_file bundles/cam_dmri/train.json "${run[@]}" --resume true 2>&1 | tail -n 3
"$py" -m monai.bundle run evaluating --config_file "['bundles/cam_dmri/configs/train.json','bundles/cam_dmri/configs/evaluate.json']" "${run[@]}" 2>&1 | tail -n 3
"$py" -m monai.bundle run inference --config_file "['bundles/cam_dmri/configs/train.json','bundles/cam_dmri/configs/inference.json']" "${run[@]}" 2>&1 | tail -n 3
"$py" - "$out/bundle_cuda" <<'PY'
import json, sys
from pathlib import Path
import pandas as pd
run = Path(sys.argv[1])
cfg = json.loads((run / "config.json").read_text())
assert (cfg["data_pipeline"], cfg["amp"], cfg["channels_last"]) == ("device", True, True), cfg
history = pd.read_csv(run / "metrics" / "history.csv")
assert list(history["epoch"]) == [1, 2, 3, 4], list(history["epoch"])
assert (run / "checkpoints" / "checkpoint_epoch=4.pt").is_file()  # written again by the resumed run
test = json.loads((run / "metrics" / "test_metrics.json").read_text())
assert (run / "cam" / "localization.csv").is_file()
print(f"bundle on CUDA: ok; test subject accuracy {test['subject_accuracy']:.2f}, AUC {test['roc_auc']:.2f}")
PY
echo "results in $out"
