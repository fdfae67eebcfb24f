#!/usr/bin/env bash
# The GPU figures of benchmarks/RESULTS.md in one go (CUDA tests, encoders, Table 2 side by side
# in float32 and bf16 autocast, GLORY on a world with MIND-like click skew; `fum_quality`, not in
# `all`: FUM against NRMS on the cue-word world with 20 epochs). Run from the
# repository root on a machine with a CUDA device and newsrec's dependencies installed;
# results are printed and, when $OUT is set, also written there.
set -uo pipefail
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 NEWSREC_PROGRESS=0
OUT="${OUT:-$(mktemp -d)}"
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import torch, torch_geometric, pytorch_lightning as pl; print('torch', torch.__version__, 'pyg', torch_geometric.__version__, 'lightning', pl.__version__)"
step="${1:-all}"
if [[ $step == all || $step == tests ]]; then
  $PY -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_nn.py 2>&1 | tail -25 | tee "$OUT/tests.txt"
fi
if [[ $step == all || $step == encoders ]]; then
  $PY benchmarks/encoders.py --device cuda 2>&1 | tee "$OUT/encoders.txt"
fi
EFF=(--device cuda --threads 8 --workers 6 --steps 30 --impressions 8192)
if [[ $step == all || $step == efficiency ]]; then
  $PY benchmarks/efficiency.py "${EFF[@]}" 2>&1 | tee "$OUT/efficiency_fp32.txt"
  $PY benchmarks/efficiency.py "${EFF[@]}" --bf16 2>&1 | tee "$OUT/efficiency_bf16.txt"
fi
if [[ $step == all || $step == skewed ]]; then
  $PY benchmarks/efficiency.py "${EFF[@]}" --knob popularity_sigma=2.0 \
    --models NRMS GLORY "GLORY (sampled edges)" "GLORY (approximate)" 2>&1 | tee "$OUT/efficiency_skewed.txt"
fi
if [[ $step == fum_quality ]]; then  # not in "all": FUM against NRMS with more training, 3 seeds, ReLU'd FUM too
  CUE=(--knob num_cues=10 --knob num_aspects=5 --knob topic_strength=0.5)
  for ws in 4 0; do
    $PY benchmarks/quality.py --accelerator gpu --users 3000 --news 1500 --epochs 20 --seeds 0 1 2 \
      --models popularity nrms fum_linear_news fum oracle "${CUE[@]}" --knob word_strength=$ws \
      --json "$OUT/fum_quality_ws$ws.json" 2>&1 | tail -9 | tee "$OUT/fum_quality_ws$ws.txt"
  done
fi
