#!/usr/bin/env bash
# The Triton kernel tests compiled on a real GPU, at larger shapes than the interpreter runs in CI
# (delta rule: T up to 600, head dims 32-80, beta in [0, 2] and [1.9, 2], gates, n_h 1-3, ragged dims, varlen;
# diag_scan / selective_scan: T up to 4100, 200 channels, decays at and near +-1 and 0, N 5-64, bf16/fp16, both
# selective algorithms; sLSTM: the Table 3 shapes, values and gradients vs the fp64 loop; the fused layer ops (short
# conv + SiLU, q/k L2 norm, gated RMSNorm: T up to 1000, 3072 channels, head dims 20-256, fp64 and fp32) and the
# DeltaNet family's layer with them, also under bf16 autocast).
#   benchmarks/gpu_tests.sh [extra pytest args]
# With pytest-xdist importable, the kernel tests run in GPU_TEST_WORKERS processes (default 4) sharing the GPU:
# most of their time is Triton compiling, which is CPU work. The CUDA-graph tests (training step, decoding, ensembles) run
# alone afterwards, with the determinism test (each Table 3 key trained again, also by two processes sharing the GPU,
# losses compared bitwise; STATETRACK_TEST_MPS=1 adds two processes through MPS).
set -euo pipefail
cd "$(dirname "$0")/.."
export STATETRACK_TEST_DEVICE=cuda
unset TRITON_INTERPRET
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())"
par=(-p no:xdist)
if python3 -c "import xdist" 2>/dev/null; then
  par=(-n "${GPU_TEST_WORKERS:-4}")
fi
python3 -m pytest tests/ops/test_delta_rule_triton.py tests/ops/test_delta_rule_recurrent_triton.py \
  tests/ops/test_diag_scan_triton.py tests/ops/test_selective_scan_triton.py tests/ops/test_slstm.py \
  tests/ops/test_fused_layer_ops.py tests/layers/test_delta_net_fused.py \
  -q -p no:cacheprovider "${par[@]}" "$@"
python3 -m pytest tests/train/test_graphed.py tests/models/test_decode_graph.py tests/train/test_ensemble.py \
  tests/train/test_determinism_gpu.py -q -p no:cacheprovider -p no:xdist "$@"
