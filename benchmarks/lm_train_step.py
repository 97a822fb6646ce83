"""Language-model training speed end to end: statetrack's StateTrackForCausalLM (DeltaNet, min_eigenvalue = -1,
output gate) against flash-linear-attention's DeltaNetForCausalLM (allow_neg_eigval, use_gate) of the same
size, in one run: tokens/s, peak memory and MFU of a full step (forward, fused loss, backward, fused AdamW),
bf16 autocast over fp32 weights; then a torch.profiler summary of our step (CUDA time and memory per op).

    python -m benchmarks.lm_train_step [--out FILE.md] [--layers 24] [--width 1024] [--heads 8] [--batch 8]
        [--seq 2048] [--steps 10] [--profile] [--models ours,fla,ours]

MFU counts the FLOPs of the algorithm: 6 x (linear weights, LM head included) per token for the matmuls, plus
the chunked delta rule's own products (forward per token and head: 2C(3K + 2V) + 6KV + 2C^2/3 for chunks of
C = 64; backward twice that), over the H100's dense bf16 peak (989 TFLOP/s). The step is written out here (the
model's own fused loss from ``labels``): statetrack.train's step builders take a logits-returning model and a
masked loss, which would materialise the [B, T, vocab] logits this benchmark is meant to avoid.
"""

from __future__ import annotations

import gc
import time

import torch

from statetrack.models import StateTrackConfig, StateTrackForCausalLM
from statetrack.ops import value_checks

from .harness import Report, anchor, has_cuda, parser

VOCAB = 32000
MODELS = {"ours": "statetrack StateTrackForCausalLM", "fla": "fla DeltaNetForCausalLM"}  # --models: the rows' names
PEAK_BF16 = 989e12


def ours(a):
    cfg = StateTrackConfig(vocab_size=VOCAB, hidden_size=a.width, num_hidden_layers=a.layers, mixer="deltanet",
                           mixer_settings={"deltanet": {"n_heads": a.heads, "use_output_gate": True}},
                           min_eigenvalue=-1.0)  # fmt: skip
    return StateTrackForCausalLM(cfg).cuda()


def theirs(a):
    mods, why = anchor("fla.models")
    if mods is None:
        return None, why
    cfg = mods[0].DeltaNetConfig(vocab_size=VOCAB, hidden_size=a.width, num_hidden_layers=a.layers,
                                 num_heads=a.heads, use_gate=True, allow_neg_eigval=True,
                                 fuse_cross_entropy=True)  # fmt: skip
    return mods[0].DeltaNetForCausalLM(cfg).cuda(), None


def flops_per_token(model, a) -> float:
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    C, K = 64, a.width // a.heads
    rec = a.heads * (2 * C * (3 * K + 2 * K) + 6 * K * K + 2 * C * C / 3)
    return 6 * linear + 3 * rec * a.layers


def timed(model, a, steps: int):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    ids = torch.randint(0, VOCAB, (a.batch, a.seq), device="cuda")

    def step(checks: bool = False):
        # statetrack pretrain checks the ops' input value ranges (a host sync per op) in its first step only
        # (train.value_checks = "auto" on CUDA); so does this step
        with value_checks(checks), torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    for i in range(3):
        step(checks=i == 0)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(steps):
        loss = step()
    torch.cuda.synchronize()
    dt = (time.perf_counter() - t) / steps
    assert torch.isfinite(loss)
    return a.batch * a.seq / dt, torch.cuda.max_memory_allocated() / 2**30, step


def profile(step, rows: int = 25) -> str:
    """The per-op table (CUDA time, memory) of two steps."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as prof

    with prof(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], profile_memory=True) as p:
        for _ in range(2):
            step()
        torch.cuda.synchronize()
    return p.key_averages().table(sort_by="cuda_time_total", row_limit=rows, max_name_column_width=60)


def build_parser():
    p = parser(__doc__)
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--models", default="ours,fla", help="models to time, in order (a repeat times one again)")
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    picked = a.models.split(",")
    if any(m not in MODELS for m in picked):  # before the device: a bad list fails at once, anywhere
        raise SystemExit(f"--models takes a comma list of {list(MODELS)}, got {a.models!r}")
    if not has_cuda("benchmarks.lm_train_step"):
        return 2
    import transformers

    rep = Report("lm_train_step", f"# LM training step: {a.layers} layers x width {a.width}, {a.heads} heads, vocab "
                 f"{VOCAB}, B {a.batch} x T {a.seq}, bf16 autocast, fused AdamW", a.out, print_only=a.print_only,
                 argv=argv)  # fmt: skip
    say = rep.say
    rep.header(transformers=transformers.__version__, fla=anchor("fla")[1])
    say("| model | params | tokens/s | peak GiB | MFU |")
    say("|---|---:|---:|---:|---:|")
    our_profile = None
    makers = {"ours": lambda: (ours(a), None), "fla": lambda: theirs(a)}
    for name, make in ((MODELS[m], makers[m]) for m in picked):
        model, why = make()
        if model is None:
            say(f"| {name} | - | {why} | - | - |")
            continue
        n = sum(p.numel() for p in model.parameters())
        step = None
        try:
            tps, mem, step = timed(model, a, a.steps)
            mfu = tps * flops_per_token(model, a) / PEAK_BF16
            say(f"| {name} | {n / 1e6:.0f}M | {tps:,.0f} | {mem:.1f} | {mfu:.1%} |")
        except Exception as e:  # noqa: BLE001 - report, keep the other row
            say(f"| {name} | {n / 1e6:.0f}M | failed: {type(e).__name__}: {str(e)[:200]} | - | - |")
        if a.profile and step is not None and name.startswith("statetrack") and our_profile is None:
            our_profile = profile(step)
        # the step holds the model and its optimiser: drop both before the next model's peak memory is measured
        del model, step
        gc.collect()
        torch.cuda.empty_cache()
    if our_profile is not None:
        say("")
        say("## Our step, per op (torch.profiler, 2 steps)")
        rep.code(our_profile)
    return rep.done()


if __name__ == "__main__":
    raise SystemExit(main())
