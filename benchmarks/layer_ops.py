"""The DeltaNet layer's fused ops on a GPU: ours (Triton) vs flash-linear-attention's (fla.modules) vs our torch
references, side by side: forward and forward+backward ms, memory held for the backward, peak memory, error.

    python -m benchmarks.layer_ops [--B 8 --T 2048 --d-model 1024 --heads 8] [--no-fla] [--no-torch] [--out FILE.md]
    TRITON_INTERPRET=1 python -m benchmarks.layer_ops --smoke      # CPU: tiny shapes, checks the script only

The ops at the LM shape of issue 18 (24 layers x width 1024, 8 heads of K = 128, B 8 x T 2048), bf16 activations
and fp32 weights, as under the LM's bf16 autocast:
- short conv + SiLU over the fused q|k|v projection, x [B, T, 3 D], W = 4, no bias (fla's ShortConvolution has
  none): ours ``statetrack.ops.short_conv``; fla ``fla.modules.causal_conv1d.causal_conv1d(activation="silu")``.
- L2 norm of q [B, T, H, K] (eps 1e-6): ours ``statetrack.ops.l2_normalize`` on a contiguous q and, as the layer
  calls it, on q's strided columns of the q|k|v tensor (no copy); fla ``fla.modules.L2Norm`` (contiguous q). fla's
  own DeltaNet layer normalises q and k inside its delta-rule kernel instead (``use_qk_l2norm_in_kernel``).
- gated RMSNorm of o with gate [B, T, H, K], weight [K] (eps 1e-6): ours ``statetrack.ops.rms_norm_gated``; fla
  ``fla.modules.FusedRMSNormGated`` (swish gate).
Our torch column is the same function with ``backend="torch"`` (the reference, the CPU path; what the layer ran on
CUDA before the fused kernels).

ms: triton.testing.do_bench median after warm-up; fwd+bwd: the forward and ``torch.autograd.grad`` of every input
with a fixed cotangent. held MiB: memory allocated after the forward (output and what autograd keeps for the
backward) beyond the inputs; peak MiB: the largest allocation of one forward+backward beyond the inputs. err: the
forward's relative L2 error against the fp64 torch reference on the same bf16-rounded inputs. ``--smoke`` runs
everything at tiny shapes on the CPU (ours only under TRITON_INTERPRET=1, fla off); its times mean nothing.
"""

from __future__ import annotations

import torch

from statetrack.ops import l2_normalize, rms_norm_gated, short_conv, value_checks

from .harness import Report, anchor, parser, peak_mib, smoke_note, smoke_or_cuda, time_ms, try_run


def build_parser():
    p = parser(__doc__)
    p.add_argument("--B", type=int, default=8)
    p.add_argument("--T", type=int, default=2048)
    p.add_argument("--d-model", type=int, default=1024, help="D; the conv runs over 3 D channels (q|k|v)")
    p.add_argument("--heads", type=int, default=8, help="H; K = D / H")
    p.add_argument("--conv-size", type=int, default=4)
    p.add_argument("--no-fla", action="store_true", help="skip fla's columns")
    p.add_argument("--no-torch", action="store_true", help="skip our torch reference's columns")
    p.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (checks the script only)")
    return p


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def fla_modules():
    """fla.modules and its causal_conv1d (fla.modules.causal_conv1d in fla 0.6, fla.modules.convolution before)."""
    mods, version = anchor("fla.modules")
    if mods is None:
        return None, version
    conv, why = anchor("fla.modules.causal_conv1d")
    if conv is None:
        conv, why = anchor("fla.modules.convolution")
    if conv is None:
        return None, f"{version}, but no causal_conv1d ({why})"
    return (mods[0], conv[0]), version


# ------------------------------------------------------------------------------------------------------- the ops
def make_ops(args, dev, fla, torch_ok):
    """{op: (inputs, {column: fn(*inputs) -> tensor}, fp64 reference fn)}; bf16 activations, fp32 weights."""
    B, T, D, H, W = args.B, args.T, args.d_model, args.heads, args.conv_size
    K = D // H
    g = torch.Generator(device="cpu").manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    bf = torch.bfloat16
    qkv = r(B, T, 3 * D).to(dev, bf)
    wc = (r(3 * D, W) / W**0.5).to(dev)
    q = r(B, T, H, K).to(dev, bf)
    o, gate = r(B, T, H, K).to(dev, bf), r(B, T, H, K).to(dev, bf)
    wn = (1 + 0.1 * r(K)).to(dev)
    ops = {}

    cols = {"ours": lambda x, w: short_conv(x, w, backend="triton")[0]}
    if torch_ok:
        cols["torch"] = lambda x, w: short_conv(x, w, backend="torch")[0]
    if fla:
        cols["fla"] = lambda x, w: fla[1].causal_conv1d(x, w, activation="silu")[0]
    ref = lambda x, w: short_conv(x, w, backend="torch")[0]  # noqa: E731
    ops[f"short conv + SiLU [{B}, {T}, {3 * D}], W {W}"] = ([qkv, wc], cols, ref)

    cols = {"ours": lambda x: l2_normalize(x, 1e-6, backend="triton")}
    if torch_ok:
        cols["torch"] = lambda x: l2_normalize(x, 1e-6, backend="torch")
    if fla:
        l2 = fla[0].L2Norm(eps=1e-6)
        cols["fla"] = lambda x: l2(x)
    ops[f"L2 norm of q [{B}, {T}, {H}, {K}]"] = ([q], cols, lambda x: l2_normalize(x, 1e-6, backend="torch"))

    def q_of(x):  # q's columns of the q|k|v tensor, as the layer reads them (strides T 3D, 3D, K, 1)
        return x[..., :D].view(B, T, H, K)

    cols = {"ours": lambda x: l2_normalize(q_of(x), 1e-6, backend="triton")}
    if torch_ok:
        cols["torch"] = lambda x: l2_normalize(q_of(x), 1e-6, backend="torch")
    if fla:
        cols["fla (needs a copy)"] = lambda x: l2(q_of(x).contiguous())
    ops[f"L2 norm of q read from q|k|v [{B}, {T}, {3 * D}]"] = (
        [qkv], cols, lambda x: l2_normalize(q_of(x), 1e-6, backend="torch"))  # fmt: skip

    cols = {"ours": lambda x, z, w: rms_norm_gated(x, w, z, 1e-6, backend="triton")}
    if torch_ok:
        cols["torch"] = lambda x, z, w: rms_norm_gated(x, w, z, 1e-6, backend="torch")
    if fla:
        norm = fla[0].FusedRMSNormGated(K, eps=1e-6).to(dev)
        cols["fla"] = lambda x, z, w: torch.func.functional_call(norm, {"weight": w}, (x, z))
    ref = lambda x, z, w: rms_norm_gated(x, w, z, 1e-6, backend="torch")  # noqa: E731
    ops[f"gated RMSNorm [{B}, {T}, {H}, {K}]"] = ([o, gate, wn], cols, ref)
    return ops


def held_mib(fn, inputs, cuda: bool) -> float | None:
    """Memory allocated after one forward (output + what autograd keeps) beyond what was there, MiB."""
    if not cuda:
        return None
    leaves = [t.detach().requires_grad_() for t in inputs]
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    out = fn(*leaves)
    torch.cuda.synchronize()
    held = (torch.cuda.memory_allocated() - base) / 2**20
    del out
    return held


def measure(rep, name, col, fn, inputs, ref, cuda):
    """One row: fn's times, memory and error (a failing cell reports its error and the run goes on)."""
    out, err = try_run(lambda: fn(*inputs))
    if err:
        rep.row(name, col, err, "", "", "", "")
        return
    e = rel(out, ref)
    leaves = [t.detach().requires_grad_() for t in inputs]
    dy = torch.randn_like(out)

    def fwd():
        with torch.no_grad():
            return fn(*inputs)

    def fwd_bwd():
        return torch.autograd.grad(fn(*leaves), leaves, dy)

    ms_f, err_f = try_run(lambda: time_ms(fwd, cuda=cuda))
    ms_b, err_b = try_run(lambda: time_ms(fwd_bwd, cuda=cuda))
    held, _ = try_run(lambda: held_mib(fn, inputs, cuda))
    peak, _ = try_run(lambda: peak_mib(fwd_bwd, cuda=cuda))
    fmt = lambda v, f: "-" if v is None else format(v, f)  # noqa: E731
    rep.row(name, col, err_f or fmt(ms_f, ".3f"), err_b or fmt(ms_b, ".3f"), fmt(held, ".1f"), fmt(peak, ".1f"),
            f"{e:.2e}")  # fmt: skip


def section_ops(rep, args, dev, fla):
    ops = make_ops(args, dev, fla, not args.no_torch)
    rep.table("op", "path", "fwd ms", "fwd+bwd ms", "held MiB", "peak MiB", "err vs fp64", right=5)
    for name, (inputs, cols, ref_fn) in ops.items():
        ref = ref_fn(*[t.double() for t in inputs])
        for col, fn in cols.items():
            measure(rep, name, col, fn, inputs, ref, dev == "cuda")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    dev = smoke_or_cuda(args, "layer_ops", B=2, T=40, d_model=64, heads=2)
    if dev is None:
        return 2
    fla, fla_version = (None, "disabled") if args.no_fla else fla_modules()
    rep = Report("layer_ops", "# DeltaNet layer ops: fused short conv, L2 norm, gated RMSNorm: ours vs fla",
                 args.out, print_only=args.print_only, device=dev, argv=argv)  # fmt: skip
    mode = smoke_note(dev)
    rep.header(f"{mode}B {args.B}, T {args.T}, width {args.d_model}, {args.heads} heads, conv {args.conv_size}; "
               "bf16 activations, fp32 weights", fla=fla_version)  # fmt: skip
    with value_checks(False), rep.section("ops"):
        section_ops(rep, args, dev, fla)
    return rep.done()


if __name__ == "__main__":
    raise SystemExit(main())
