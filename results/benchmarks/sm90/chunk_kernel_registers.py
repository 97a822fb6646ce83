"""Registers and spills of the chunked delta-rule kernels as delta_rule_triton launches them for one shape and
precision, compiled for sm_90 on a machine without a GPU (triton.compile to PTX, then ptxas -v from Triton's own
bundle). The launches are captured by replacing the chunk module's kernels_for (CPU tensors, 132 SMs assumed).

    python results/benchmarks/sm90/chunk_kernel_registers.py B,T,H,D PRECISION [KEY=N,...] [--gate]
    (KEY=N: triton_config; --gate: with a log_decay, the gated kernels)
"""

import subprocess
import sys
import tempfile
import types

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.compiler import ASTSource

from statetrack.ops.delta_rule.inputs import normalize
from statetrack.ops.delta_rule.triton import chunk as ch
from statetrack.ops.delta_rule.triton import kernels_chunk as kc

launches = []


class Cap:
    def __init__(self, fn):
        self.fn = fn

    def __getitem__(self, grid):
        def go(*args, **kw):
            launches.append((self.fn, args, kw))

        return go


fake = types.SimpleNamespace(**{n: Cap(getattr(kc, n)) for n in dir(kc) if n.endswith("_kernel")})
ch.kernels_for = lambda dev, mod: fake
ch.sm_count = lambda dev: 132
GATE = "--gate" in sys.argv
sys.argv = [a for a in sys.argv if a != "--gate"]
B, T, H, D = [int(x) for x in sys.argv[1].split(",")]
prec = sys.argv[2]
torch.manual_seed(0)
q = torch.randn(B, T, H, D, dtype=torch.bfloat16, requires_grad=True)
k = torch.nn.functional.normalize(torch.randn(B, T, H, D), dim=-1).bfloat16().requires_grad_()
v = torch.randn(B, T, H, D, dtype=torch.bfloat16, requires_grad=True)
beta = (torch.rand(B, T, H) * 2).requires_grad_()
kk, vv, bb, _ = normalize(q, k, v, beta, None, None, None)
tuning = {kv.split("=")[0]: int(kv.split("=")[1]) for kv in sys.argv[3].split(",")} if len(sys.argv) > 3 else None
g = (-0.1 * torch.rand(B, T, H)).requires_grad_() if GATE else None
o, s = ch.delta_rule_triton(q, kk, vv, bb, g, D**-0.5, None, precision=prec, config=tuning)
(o.float().sum() + s.sum()).backward()
seen = set()


def ty(a):
    if isinstance(a, torch.Tensor):
        return "*" + {torch.bfloat16: "bf16", torch.float32: "fp32", torch.float16: "fp16", torch.int32: "i32"}[a.dtype]
    if isinstance(a, bool):
        return "i1"
    if isinstance(a, int):
        return "i32" if abs(a) < 2**31 else "i64"
    if isinstance(a, float):
        return "fp32"
    raise TypeError(type(a))


for fn, args, kw in launches:
    if fn.__name__ in seen:
        continue
    seen.add(fn.__name__)
    opts = {"num_warps": kw.pop("num_warps", 4), "num_stages": kw.pop("num_stages", 3)}
    names = fn.arg_names
    consts = dict(kw)
    sig = {}
    for n, a in zip(names, args, strict=False):
        sig[n] = ty(a)
    for n in names:
        if n in consts:
            sig[n] = "constexpr"
    k_ = triton.compile(ASTSource(fn, sig, constexprs=consts), target=GPUTarget("cuda", 90, 32), options=opts)
    f = tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False)
    f.write(k_.asm["ptx"])
    f.close()
    r = subprocess.run(
        [get_ptxas(90).path, "-v", "--gpu-name=sm_90a", f.name, "-o", "/dev/null"], capture_output=True, text=True
    )
    info = [l.split(":")[-1].strip() for l in r.stderr.splitlines() if "Used" in l or "spill" in l]
    print(
        fn.__name__,
        opts,
        {k2: v2 for k2, v2 in consts.items() if k2.startswith("B") or k2 in ("PREC", "K", "V")},
        info,
        flush=True,
    )
