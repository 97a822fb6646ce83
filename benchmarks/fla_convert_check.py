"""Does a converted fla checkpoint compute what fla computes, on the GPU? For each of fla 0.6.0's DeltaNet, Gated
DeltaNet and Gated DeltaProduct (allow_neg_eigval = True, random weights): build the fla model on CUDA, convert it
in memory with statetrack.lm.convert_fla.convert_fla_state_dict, and run both on the same tokens.

The reference is fla in fp32 with its exact recurrent kernels (every layer's mode set to "fused_recurrent"; fla's
chunked kernels take no fp32 inputs). Printed per model type, as relative errors ||logits - ref|| / ||ref||:
    fla bf16      fla's own bf16 model (its default chunked kernels) against the reference: the floor
    ours bf16     the converted model in bf16 (statetrack's default kernels) against the reference
    ours vs fla   the two bf16 models against each other
    ours fp32     the converted model in fp32 against the reference (the conversion itself: ~1e-6)
"ours bf16" should be of the order of "fla bf16". A hybrid (attention on one layer) runs too when flash-attn is
installed (fla's attention layer needs it). Weights are drawn so that every path matters (fla's init, std 0.02,
leaves the recurrences near zero); --fla-init keeps fla's own.

    python -m benchmarks.fla_convert_check [--layers 2] [--width 256] [--batch 2] [--seq 1024] [--out FILE]
"""

from __future__ import annotations

import importlib.metadata as md

import torch

from statetrack.lm.convert_fla import convert_fla_state_dict

from .harness import Report, anchor, has_cuda, parser

VOCAB = 4096


def cases(width: int) -> dict[str, tuple[str, dict]]:
    """name -> (fla config class name, config fields); heads of 64 (K) as in fla's usual configs."""
    H = width // 64
    return {
        "delta_net": ("DeltaNetConfig", dict(num_heads=H, use_gate=True)),
        "gated_deltanet": ("GatedDeltaNetConfig", dict(num_heads=H, head_dim=64, expand_v=2.0)),
        "gated_deltaproduct": ("GatedDeltaProductConfig", dict(num_heads=H, head_dim=64, expand_v=2.0,
                                                               num_householder=2, use_forget_gate=True)),
        "delta_net+attn": ("DeltaNetConfig", dict(num_heads=H, attn=dict(layers=[1], num_heads=H))),
    }  # fmt: skip


def build(fla_models, config_name: str, fields: dict, layers: int, width: int, fla_init: bool, seed: int):
    cfg = getattr(fla_models, config_name)(hidden_size=width, num_hidden_layers=layers, vocab_size=VOCAB,
                                           allow_neg_eigval=True, **fields)  # fmt: skip
    model_cls = getattr(fla_models, config_name.replace("Config", "ForCausalLM"))
    torch.manual_seed(seed)
    model = model_cls(cfg).to("cuda").eval()
    if not fla_init:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "conv1d" in name:
                    p.normal_(0.0, 0.5)
                elif p.dim() == 2:
                    p.normal_(0.0, 1.0 if "embeddings" in name else p.shape[1] ** -0.5)
                elif "norm" in name:
                    p.normal_(1.0, 0.2)
    return model


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm())


def set_mode(model, mode: str) -> None:
    for layer in model.model.layers:
        if hasattr(layer.attn, "mode"):
            layer.attn.mode = mode


def version(name: str) -> str:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return "not installed"


def build_parser():
    ap = parser(__doc__)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--seq", type=int, default=1024, help="tokens (> 64: fla's chunked kernels in bf16)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fla-init", action="store_true", help="keep fla's initialisation (std 0.02)")
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not has_cuda("benchmarks.fla_convert_check"):
        return 2
    rep = Report("fla_convert_check", "# fla checkpoints converted to statetrack: logits against fla's", args.out,
                 print_only=args.print_only, argv=argv)  # fmt: skip
    rep.header(
        f"shapes: {args.layers} layers, width {args.width}, vocab {VOCAB}, batch {args.batch} x {args.seq} tokens, "
        f"allow_neg_eigval = True, {'fla init' if args.fla_init else 'random weights (see docstring)'}",
        **{n: version(n) for n in ("fla-core", "flash-linear-attention", "transformers", "flash-attn")},
    )
    mods, why = anchor("fla.models")
    if mods is None:
        rep.say(f"fla: {why}; nothing to compare against")
        return 1
    fla_models = mods[0]
    has_flash = anchor("flash_attn")[0] is not None  # fla's attention layer needs it
    rep.say("relative error ||logits - ref|| / ||ref||, ref = fla fp32 (fused_recurrent kernels)")
    rep.say()
    rep.say("| model | fla bf16 (floor) | ours bf16 | ours vs fla (bf16) | ours fp32 |")
    rep.say("| --- | --- | --- | --- | --- |")
    g = torch.Generator().manual_seed(args.seed + 1)
    ids = torch.randint(0, VOCAB, (args.batch, args.seq), generator=g).cuda()
    for name, (config_name, fields) in cases(args.width).items():
        if "attn" in fields and not has_flash:
            row = f"| {name} | skipped: flash-attn is not installed (fla's attention layer needs it) | | | |"
        else:
            fla = build(fla_models, config_name, fields, args.layers, args.width, args.fla_init, args.seed)
            ours = convert_fla_state_dict(fla.config.to_dict(), fla.state_dict())
            with torch.no_grad():
                set_mode(fla, "fused_recurrent")
                ref = None if "attn" in fields else fla(ids).logits.float()  # flash-attn has no fp32
                ours32 = ours(ids).logits.float()
                set_mode(fla, "chunk")
                fla16 = fla.to(torch.bfloat16)(ids).logits.float()
                ours16 = ours.to(torch.bfloat16)(ids).logits.float()
            if ref is None:
                ref, note = ours32, " (hybrid: ref = ours fp32, as flash-attn takes no fp32)"
            else:
                note = ""
            errs = (rel(fla16, ref), rel(ours16, ref), rel(ours16, fla16), rel(ours32, ref))
            row = f"| {name}{note} | " + " | ".join(f"{e:.2e}" for e in errs) + " |"
            del fla, ours
            torch.cuda.empty_cache()
        rep.say(row)
    return rep.done()


if __name__ == "__main__":
    raise SystemExit(main())
