"""Registers and spills of the sLSTM kernels compiled for sm_90, offline on a CPU (not a timing).

    python benchmarks/slstm_spills.py [--out benchmarks/results/slstm_spills_sm90.md]

Compiles ``slstm_fwd_kernel`` / ``slstm_bwd_kernel`` (src/statetrack/ops/slstm/triton/kernels.py) with
``triton.compile`` for GPUTarget("cuda", 90, 32) to PTX and runs the ptxas that triton ships (``-v``) on it: its
"Used N registers" and spill bytes per thread. A program keeps the head's four [K, K] fp32 blocks of r in registers,
so K decides whether it fits; the launcher's warps (ops/slstm/triton/scan.py) are what is compiled.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from report import save_to, say  # benchmarks/report.py (this script's folder is on sys.path)
from statetrack.ops.slstm.triton import kernels
from statetrack.ops.slstm.triton.scan import launch_warps

PTRS = {"fwd": ["WX", "R", "Hs", "Cs", "Ns", "Ms"], "bwd": ["WX", "R", "Hs", "Cs", "Ns", "Ms", "DH", "DWX"]}


def ptxas_report(fn, ptrs: list[str], const: dict, warps: int) -> tuple[str, str]:
    sig = {p: "*fp32" for p in ptrs} | {"B": "i32", "T": "i32"} | {c: "constexpr" for c in const}
    attrs = {(i,): [["tt.divisibility", 16]] for i, p in enumerate(sig) if p in ptrs}
    cc = triton.compile(ASTSource(fn, sig, const, attrs), target=GPUTarget("cuda", 90, 32),
                        options={"num_warps": warps})  # fmt: skip
    ptxas = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(cc.asm["ptx"])
    err = subprocess.run([ptxas, "-v", "--gpu-name=sm_90a", f.name, "-o", os.devnull], capture_output=True,
                         text=True).stderr  # fmt: skip
    os.unlink(f.name)
    regs = re.search(r"Used (\d+) registers", err)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", err)
    return (regs.group(1) if regs else "?"), (f"{spill.group(1)} / {spill.group(2)}" if spill else "?")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    save_to(a.out)
    say("# sLSTM kernels on sm_90: registers and spills per thread (offline compile, not a timing)\n")
    say(f"- triton {triton.__version__}; command: `python {' '.join(sys.argv)}`")
    say("- H = 4 heads, 16 batch rows per program, T a run-time bound, fp32\n")
    say("| K | warps | forward regs | forward spill stores / loads (B) | backward regs | backward spill (B) |")
    say("|---:|---:|---:|---:|---:|---:|")
    for K in (16, 32, 64, 128):
        warps = launch_warps(max(16, K))
        const = {"H": 4, "K": K, "BB": 16, "BK": max(16, K), "T_I": 0}
        f = ptxas_report(kernels.slstm_fwd_kernel, PTRS["fwd"], {**const, "SAVE": True}, warps)
        b = ptxas_report(kernels.slstm_bwd_kernel, PTRS["bwd"], const, warps)
        say(f"| {K} | {warps} | {f[0]} | {f[1]} | {b[0]} | {b[1]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
