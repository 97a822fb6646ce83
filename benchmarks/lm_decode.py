"""Decoding speed of a 24-layer, width-1024 DeltaNet LM (min_eigenvalue = -1): statetrack's generate() (one
CUDA graph per step) against flash-linear-attention's DeltaNetForCausalLM (allow_neg_eigval) of the same size,
in one run, bf16, greedy, random weights.

Prints tokens/s at batch 1, 16 and 64 (64 new tokens after a 128-token prompt) and the time to the first token
of a 2048-token prompt.

    python -m benchmarks.lm_decode [--out FILE.md] [--layers 24] [--width 1024] [--heads 8] [--batches 1,16,64]
"""

from __future__ import annotations

import time

import torch

from statetrack.models import StateTrackConfig, StateTrackForCausalLM
from statetrack.ops import value_checks

from .harness import Report, anchor, has_cuda, parser

VOCAB = 32000


def ours(layers: int, width: int, heads: int, graphs: str):
    cfg = StateTrackConfig(vocab_size=VOCAB, hidden_size=width, num_hidden_layers=layers, mixer="deltanet",
                           mixer_settings={"deltanet": {"n_heads": heads, "use_output_gate": True}},
                           min_eigenvalue=-1.0, decode_graphs=graphs)  # fmt: skip
    return StateTrackForCausalLM(cfg).to("cuda", torch.bfloat16).eval()


def theirs(layers: int, width: int, heads: int):
    mods, why = anchor("fla.models")
    if mods is None:
        return None, why
    cfg = mods[0].DeltaNetConfig(vocab_size=VOCAB, hidden_size=width, num_hidden_layers=layers, num_heads=heads,
                                 use_gate=True, allow_neg_eigval=True)  # fmt: skip
    return mods[0].DeltaNetForCausalLM(cfg).to("cuda", torch.bfloat16).eval(), None


def tokens_per_s(model, batch: int, prompt: int, new: int, reps: int = 3) -> float:
    ids = torch.randint(0, VOCAB, (batch, prompt), device="cuda")
    kw = dict(attention_mask=torch.ones_like(ids), max_new_tokens=new, min_new_tokens=new, do_sample=False,
              pad_token_id=0)  # fmt: skip
    with torch.no_grad():
        model.generate(ids, **kw)  # warm-up: compiles, records graphs
        torch.cuda.synchronize()
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            out = model.generate(ids, **kw)
            torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t)
    assert out.shape == (batch, prompt + new)
    return batch * new / best


def kernels_per_step(model, batch: int) -> int | None:
    """CUDA kernels one eager decoding step launches (what a graph replays; at LM widths their count, not their work,
    bounds the step), from a profile of ``decode_step`` after a 16-token prompt; None for a model without it."""
    if not hasattr(model, "decode_step"):
        return None
    from torch.profiler import ProfilerActivity, profile

    ids = torch.randint(0, VOCAB, (batch, 16), device="cuda")
    with torch.no_grad():
        states = model(ids, use_cache=True).cache.states
        model.decode_step(ids[:, -1], states)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof, value_checks(False):  # as the graph records it
            model.decode_step(ids[:, -1], states)
            torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def first_token_s(model, prompt: int) -> float:
    ids = torch.randint(0, VOCAB, (1, prompt), device="cuda")
    kw = dict(attention_mask=torch.ones_like(ids), max_new_tokens=1, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        model.generate(ids, **kw)
        torch.cuda.synchronize()
        t = time.perf_counter()
        model.generate(ids, **kw)
        torch.cuda.synchronize()
    return time.perf_counter() - t


def build_parser():
    p = parser(__doc__)
    p.add_argument("--layers", type=int, default=24)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--batches", default="1,16,64")
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    if not has_cuda("benchmarks.lm_decode"):
        return 2
    import transformers

    rep = Report("lm_decode", f"# LM decoding: {a.layers} layers x width {a.width}, {a.heads} heads, vocab {VOCAB}, "
                 "bf16, greedy", a.out, print_only=a.print_only, argv=argv)  # fmt: skip
    say = rep.say
    rep.header(transformers=transformers.__version__, fla=anchor("fla")[1])
    fla_model, why = theirs(a.layers, a.width, a.heads)
    rows = [("statetrack generate (CUDA graph per step)", ours(a.layers, a.width, a.heads, "on")),
            ("statetrack generate (eager steps)", ours(a.layers, a.width, a.heads, "off")),
            ("fla DeltaNetForCausalLM generate", fla_model)]  # fmt: skip
    say(f"fla: {why or anchor('fla')[1]}")
    n_params = sum(p.numel() for p in rows[0][1].parameters())
    say(
        f"parameters: statetrack {n_params / 1e6:.1f}M"
        + (f", fla {sum(p.numel() for p in fla_model.parameters()) / 1e6:.1f}M" if fla_model else "")
    )
    batches = [int(b) for b in a.batches.split(",")]
    say("")
    say("| model | " + " | ".join(f"tokens/s at batch {b}" for b in batches) + " | first token of a 2048 prompt (ms) |")
    say("|---|" + "---:|" * (len(batches) + 1))
    notes = []
    for name, model in rows:
        if model is None:
            say(f"| {name} | " + " | ".join("-" for _ in batches) + " | - |")
            continue
        cells = []
        for b in batches:
            try:
                cells.append(f"{tokens_per_s(model, b, 128, 64):,.0f}")
            except Exception as e:  # noqa: BLE001 - report the failure in its cell, keep the rest
                cells.append(f"failed ({type(e).__name__}: {str(e)[:80]})")
        ttft = first_token_s(model, 2048) * 1e3
        say(f"| {name} | " + " | ".join(cells) + f" | {ttft:.1f} |")
        if (n := kernels_per_step(model, 1)) is not None:
            notes.append(f"{name}: {n} CUDA kernels per eager decoding step (batch 1)")
        del model
        torch.cuda.empty_cache()
    say("")
    for n in notes:
        say(f"- {n}")
    return rep.done()


if __name__ == "__main__":
    raise SystemExit(main())
