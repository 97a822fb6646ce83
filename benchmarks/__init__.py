"""Benchmark scripts: ours against the anchors, through statetrack's public API, on one harness (harness.py).

Run from the repository root as ``python -m benchmarks.<script> [--out FILE] [--print-only]``; each report goes to
``results/benchmarks/<device>/<script>.md`` by default, with the device, versions and command at its head.

- delta_rule_kernels: the delta rule's accuracy (o, final state, gradients vs fp64) and fwd+bwd speed and memory
  against flash-linear-attention and SDPA (``--shapes issue|short|small``; tuning arguments per column).
- delta_rule_profile: where the delta rule's kernel time goes, per kernel, precision or block setting.
- scans: diag_scan and selective_scan in GB/s and % of copy bandwidth, ours vs the torch path and fla;
  ``--sweep`` over their triton_config / algorithm settings.
- slstm: the fused sLSTM kernels vs the loop.
- ops_cpu: the chunked CPU paths vs the naive loops, with each case's floor on the machine.
- tasks_throughput: task data generation vs one CPU training step.
- train_steps: the trainer's step per mixer (CPU or GPU; compile, CUDA graph).
- train_loop: the real training loop's steps/s per mixer on a GPU.
- lm_decode, lm_train_step: the causal LM's decoding and training speed against fla's DeltaNet LM.
- plot_results: the H100 summary figure from the stored tables.
- gpu_tests.sh: the kernel and CUDA-graph tests compiled on a GPU.
"""
