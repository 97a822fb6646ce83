"""Training steps per second of the paper's parity model, per mixer (not a test).

    python -m benchmarks.train_steps [--device cpu|cuda] [--compile] [--cuda-graph] [--mixers deltanet,mamba,...]
        [--steps 5] [--warmup 2] [--batch-size 1024] [--threads N] [--out FILE.md]

Model (paper.md 5.1.2): 2 blocks, width 128, 4 heads, SwiGLU MLP, min_eigenvalue = -1 where the mixer has
one; parity batches of 1024 sequences with lengths 3-40 (padded to the batch's longest, <= 40). One step =
forward, backward and AdamW update, the trainer's own (statetrack.train: make_optimizer, build_step; bf16 autocast
on CUDA, fp32 on CPU). Batches are drawn before timing, so the numbers are the model's; the sampler's cost per
batch is printed too. Anchor (H100, measured by the lead): flash-linear-attention 0.6.0's DeltaNet model at this
size, 36 steps/s.
"""

from __future__ import annotations

import json
import statistics
import time

import torch

from statetrack.layers import MIXERS
from statetrack.models import ModelConfig, TokenClassifier
from statetrack.ops import value_checks
from statetrack.tasks import get_task
from statetrack.train import TrainConfig, autocast_factory, build_step, make_optimizer, masked_cross_entropy, pad_batch

from .harness import Report, has_cuda, load_average, parser

ANCHOR = "flash-linear-attention 0.6.0 DeltaNet model, same size, H100: 36 steps/s (27.6 ms/step)"


def model_config(mixer: str, vocab: int, backend: str) -> ModelConfig:
    """The parity model of paper.md 5.1.2; the flat keys a mixer does not take are dropped, as old configs' were."""
    return ModelConfig.from_dict({"mixer": mixer, "vocab_size": vocab, "d_model": 128, "n_layers": 2, "n_heads": 4,
                                  "min_eigenvalue": -1.0, "backend": backend})  # fmt: skip


def bench(mixer: str, batches, device, compile_: bool, steps: int, warmup: int, vocab: int, backend="auto",
          cuda_graph: bool = False) -> dict:  # fmt: skip
    torch.manual_seed(0)
    model = TokenClassifier(model_config(mixer, vocab, backend)).to(device)
    opt = make_optimizer(model, TrainConfig(lr=1e-3, weight_decay=0.1), device, graphed=cuda_graph)
    fwd = torch.compile(model, dynamic=not cuda_graph) if compile_ else model
    # the training loop's own step, captured as one CUDA graph with --cuda-graph
    run = build_step(model, fwd, opt, masked_cross_entropy, 0.0,
                     autocast_factory(device.type, device.type == "cuda", cuda_graph),
                     example=batches[0] if cuda_graph else None)  # fmt: skip

    def step(b):
        return run(*b)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(warmup):
        step(batches[i % len(batches)])
    sync()
    times = []
    # as in statetrack.train: the ops' value-range checks (a host sync each) only run before timing on a GPU
    with value_checks(device.type != "cuda"):
        for i in range(steps):
            t0 = time.perf_counter()
            step(batches[(warmup + i) % len(batches)])
            sync()
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    return {"mixer": mixer, "params": model.num_parameters(), "ms_per_step": 1000 * med, "steps_per_s": 1 / med,
            "min_ms": 1000 * min(times)}  # fmt: skip


def build_parser():
    p = parser(__doc__)
    p.add_argument("--device", default="cpu")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--backend", default="auto", help="op backend of the DeltaNet family and Mamba")
    p.add_argument("--cuda-graph", action="store_true", help="capture the whole training step as one CUDA graph")
    p.add_argument("--mixers", default=",".join(MIXERS))
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if device.type == "cuda" and not has_cuda("benchmarks.train_steps --device cuda"):
        return 2
    task = get_task("parity")
    g = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    raw = [task.sample(a.batch_size, generator=g) for _ in range(4)]
    sample_ms = 1000 * (time.perf_counter() - t0) / len(raw)
    # one padded length for all batches (a CUDA graph replays fixed shapes; padding is masked out of the loss)
    T = max(b.input.shape[1] for b in raw)
    batches = [tuple(t.to(device) for t in pad_batch(b.input, b.target, b.mask, T, task.pad_id)) for b in raw]
    title = f"# Training steps/s, parity model (2 layers, width 128, 4 heads, batch {a.batch_size}, lengths 3-40)"
    rep = Report("train_steps", title, a.out, print_only=a.print_only, device=device, argv=argv)
    rep.header(
        f"load average at start (1/5/15 min): {load_average()}",
        f"compile: {a.compile}; CUDA graph: {a.cuda_graph}; op backend: {a.backend}; "
        f"autocast: {'bf16' if device.type == 'cuda' else 'none (fp32)'}",
        f"timing: median of {a.steps} steps after {a.warmup} warm-up steps; batches pre-sampled "
        f"(the parity sampler takes {sample_ms:.1f} ms per batch on this host's CPU)",
        f"anchor: {ANCHOR}",
    )
    rep.table("mixer", "params", "ms/step", "steps/s", right=3)
    rows = []
    for mixer in a.mixers.split(","):
        try:
            r = bench(mixer, batches, device, a.compile, a.steps, a.warmup, task.vocab_size, a.backend, a.cuda_graph)
        except Exception as e:  # noqa: BLE001 - one mixer failing must not hide the others
            rep.row(mixer, f"failed: {type(e).__name__}: {e}", "", "")
            continue
        rows.append(r)
        rep.row(r["mixer"], f"{r['params']:,}", f"{r['ms_per_step']:.1f}", f"{r['steps_per_s']:.2f}")
    rep.say()
    rep.say("<!-- json: " + json.dumps(rows) + " -->")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
