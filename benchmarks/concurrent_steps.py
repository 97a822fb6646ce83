"""Aggregate training steps per second of K runs of one model trained at once on one GPU (not a test).

    python benchmarks/concurrent_steps.py [--task modarith] [--models all|"Transformer;DeltaNet [-1,1]"]
        [--ks 1,4,8,16] [--steps 60] [--compile] [--out benchmarks/results/FILE.md]

Each run is a Table 3 model (statetrack.reproduce.experiments.table3_models) with its own weights, AdamW and
CUDA-graphed step (statetrack.train.graphed); the K runs replay their graphs round-robin, each on its own CUDA
stream, from one host thread, so kernels of different runs may overlap. The batch of each run is sampled once
(the timing is the GPU's). With --ks 1 it measures one run; benchmarks/gpu_sharing.sh starts several such
processes at once (with or without NVIDIA MPS).

Known limit (H100, torch 2.11, benchmarks/results/gpu_sharing_h100.md): for most models at batch 1024, replaying
a graph after a second graph was captured in the same process fails with an illegal memory access, so K > 1
only works for some models (sLSTM); the reproduce sweep therefore keeps one run per worker process.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from report import say, start_gpu_report  # benchmarks/report.py (this script's folder is on sys.path)
from statetrack.models import ModelConfig, TokenClassifier
from statetrack.ops import value_checks
from statetrack.reproduce.experiments import table3_models
from statetrack.tasks import get_task
from statetrack.train.graphed import autocast_factory, build_step, pad_batch
from statetrack.train.loop import fixed_width, masked_cross_entropy, param_groups


def make_run(spec, task, batch_size: int, seed: int, compile_: bool, device, own_stream: bool = True):
    """(step function, one fixed batch on the GPU) of one run of ``spec``."""
    torch.manual_seed(seed)
    cfg = ModelConfig(**{**spec.model, "vocab_size": task.vocab_size})
    model = TokenClassifier(cfg).to(device)
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=torch.tensor(1e-4, device=device), fused=True,
                            capturable=True)  # fmt: skip
    fwd = torch.compile(model, dynamic=False) if compile_ else model
    b = task.sample(batch_size, generator=torch.Generator().manual_seed(seed))
    x, y, m = pad_batch(b.input, b.target, b.mask, fixed_width(task, None), task.pad_id)
    batch = tuple(t.to(device) for t in (x, y, m))
    clip = spec.train.get("grad_clip", 0.0)
    stream = torch.cuda.Stream()  # each run captures and replays on its own stream (see GraphedStep)
    with torch.cuda.stream(stream):
        step = build_step(model, fwd, opt, masked_cross_entropy, clip, autocast_factory("cuda", True, True),
                          example=batch, stream=stream if own_stream else None)  # fmt: skip
    return step, batch, stream


def aggregate_rate(runs, steps: int) -> float:
    """Steps per second of all runs together, each replaying on its own stream."""
    for _ in range(3):  # warm-up
        for step, batch, s in runs:
            with torch.cuda.stream(s):
                step(*batch)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        for step, batch, s in runs:
            with torch.cuda.stream(s):
                step(*batch)
    torch.cuda.synchronize()
    return steps * len(runs) / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="modarith")
    p.add_argument("--models", default="all", help="labels separated by ;")
    p.add_argument("--ks", default="1,4,8,16")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--shared-capture-stream", action="store_true", help="capture every graph on torch's default")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    if not start_gpu_report(a.out):
        return 2
    dev = torch.device("cuda")
    task = get_task(a.task)
    specs = [s for s in table3_models(a.task) if a.models == "all" or s.label in a.models.split(";")]
    ks = [int(k) for k in a.ks.split(",")]
    say(f"# Concurrent runs on one GPU: aggregate steps/s ({a.task}, Table 3 models)\n")
    say(f"- device: {torch.cuda.get_device_name()}; torch {torch.__version__}; compile {a.compile}")
    say(f"- command: `python {' '.join(sys.argv)}`\n")
    say("| model | batch | 1 run steps/s | " + " | ".join(f"{k} runs steps/s (x)" for k in ks[1:]) + " | peak GiB |")
    say("|---|---:|---:|" + "---:|" * (len(ks) - 1) + "---:|")
    torch._dynamo.config.cache_size_limit = max(64, max(ks) * 2)
    for spec in specs:
        bs = spec.train.get("batch_size", 1024)
        torch.cuda.reset_peak_memory_stats()
        with value_checks(False):
            runs = [
                make_run(spec, task, bs, seed, a.compile, dev, not a.shared_capture_stream) for seed in range(max(ks))
            ]
            rates = []
            for k in ks:
                rates.append(aggregate_rate(runs[:k], a.steps))
                print(f"  {spec.label}: {k} runs, {rates[-1]:.0f} steps/s", file=sys.stderr, flush=True)
        peak = torch.cuda.max_memory_allocated() / 2**30
        cells = [f"{r:.0f} ({r / rates[0]:.1f}x)" for r in rates[1:]]
        say(f"| {spec.label} | {bs} | {rates[0]:.0f} | " + " | ".join(cells) + f" | {peak:.1f} |")
        del runs
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
