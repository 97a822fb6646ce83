"""Registers and spills of every Triton kernel our launchers run at a shape, compiled for sm_90 on a CPU machine.

    python benchmarks/kernel_spills.py [--out benchmarks/results/kernel_spills_sm90.md]

Not a timing: it says which kernels spill registers to local memory (slow) at the launch configurations the library
really picks, before any GPU time is spent. How: Triton is given a stand-in driver that reports an sm_90 target;
``ops._triton.kernels_for`` is swapped for a wrapper whose ``kernel[grid](...)`` compiles (``JITFunction.warmup``)
instead of launching, and the launchers run as usual on CPU tensors (they allocate their outputs; nothing is
computed). Each compiled kernel's PTX goes through the ptxas that Triton ships (``-v``): "Used N registers" and spill
bytes per thread. The launchers are told the GPU has 132 SMs (an H100), as their block choices depend on it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import tempfile

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.runtime import driver

from report import save_to, say  # benchmarks/report.py (this script's folder is on sys.path)

SMS = 132
ROWS: list[tuple[str, str, int, int, str]] = []  # (case, kernel, warps, registers, spills)


class _Sm90Driver:
    """Just what JITFunction.run asks of a driver before it compiles."""

    def get_current_device(self):
        return 0

    def get_current_stream(self, device=None):
        return 0

    def get_current_target(self):
        return GPUTarget("cuda", 90, 32)

    def get_active_torch_device(self):
        return torch.device("cpu")

    def get_device_interface(self):
        return torch.cuda

    def is_active(self):
        return True


def ptxas(ptx: str) -> tuple[int, str]:
    exe = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas")
    with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
        f.write(ptx)
    err = subprocess.run([exe, "-v", "--gpu-name=sm_90a", f.name, "-o", os.devnull], capture_output=True,
                         text=True).stderr  # fmt: skip
    os.unlink(f.name)
    regs = re.search(r"Used (\d+) registers", err)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", err)
    return (int(regs.group(1)) if regs else -1), (f"{spill.group(1)} / {spill.group(2)}" if spill else "?")


class _CompileOnly:
    """A kernel module whose ``kernel[grid](*args, **kw)`` compiles and records registers and spills."""

    case = ""

    def __init__(self, module):
        self.module = module

    def __getattr__(self, name):
        fn = getattr(self.module, name)
        if not hasattr(fn, "warmup"):
            return fn
        outer = self

        class _Launch:
            def __getitem__(self, grid):
                def compile_only(*args, **kw):
                    regs, spills = ptxas(fn.warmup(*args, grid=grid, **kw).asm["ptx"])
                    ROWS.append((outer.case, name, kw.get("num_warps", 4), regs, spills))

                return compile_only

        return _Launch()


def install() -> None:
    """Route every launcher's kernels through :class:`_CompileOnly` and report an H100's SM count."""
    driver.set_active(_Sm90Driver())
    import statetrack.ops._triton as tri

    wrap = lambda device, module: _CompileOnly(importlib.import_module(module))  # noqa: E731
    for name in ("delta_rule.triton.chunk", "delta_rule.triton.recurrent", "diag_scan.triton.diag",
                 "diag_scan.triton.selective", "diag_scan.triton.selective_steps", "slstm.triton.scan"):  # fmt: skip
        mod = importlib.import_module(f"statetrack.ops.{name}")
        mod.kernels_for = wrap
        if hasattr(mod, "sm_count"):
            mod.sm_count = lambda device: SMS
    tri.sm_count = lambda device: SMS


def _leaf(*shape, dtype=torch.bfloat16):
    return torch.randn(*shape, dtype=dtype).requires_grad_()


def delta_rule_case(N, T, H, D, n_h=1, **config):
    chunk = importlib.import_module("statetrack.ops.delta_rule.triton.chunk")
    q, k, v = _leaf(N, T, H, D), _leaf(N, T, n_h, H, D), _leaf(N, T, n_h, H, D)
    o, _ = chunk.delta_rule_triton(q, k, v, _leaf(N, T, n_h, H), None, D**-0.5, None, config=config or None)
    o.backward(torch.ones_like(o))


def recurrent_case(N, T, H, D):
    rec = importlib.import_module("statetrack.ops.delta_rule.triton.recurrent")
    q, k, v = _leaf(N, T, H, D), _leaf(N, T, 1, H, D), _leaf(N, T, 1, H, D)
    o, _ = rec.delta_rule_recurrent_triton(q, k, v, _leaf(N, T, 1, H), None, D**-0.5, None)
    o.backward(torch.ones_like(o))


def scan_case(B, T, D):
    from statetrack.ops.diag_scan.triton import diag_scan_triton

    h, _ = diag_scan_triton(_leaf(B, T, D), _leaf(B, T, D))
    h.backward(torch.ones_like(h))


def selective_case(B, T, Dm, N, **config):
    from statetrack.ops.diag_scan.triton import selective_scan_triton

    A = -torch.rand(Dm, N).requires_grad_()
    y, _ = selective_scan_triton(_leaf(B, T, Dm), _leaf(B, T, Dm), A, _leaf(B, T, N), _leaf(B, T, N),
                                 torch.ones(Dm, requires_grad=True), _leaf(B, T, Dm), **config)  # fmt: skip
    y.backward(torch.ones_like(y))


def slstm_case(B, T, H, K):
    from statetrack.ops.slstm.triton import slstm_scan_triton

    h = slstm_scan_triton(_leaf(B, T, 4, H, K, dtype=torch.float32), _leaf(H, K, 4, K, dtype=torch.float32))
    h.backward(torch.ones_like(h))


CASES = [
    ("delta_rule chunked (N, T, H, D) = (2, 128, 16, 128)", delta_rule_case, (2, 128, 16, 128), {}),
    ("delta_rule chunked (8, 128, 8, 64)", delta_rule_case, (8, 128, 8, 64), {}),
    ("delta_rule chunked n_h = 2 (8, 128, 8, 64)", delta_rule_case, (8, 128, 8, 64), {"n_h": 2}),
    ("delta_rule token by token (1024, 40, 4, 32)", recurrent_case, (1024, 40, 4, 32), {}),
    ("diag_scan (8, 256, 2048)", scan_case, (8, 256, 2048), {}),
    ("selective_scan (8, 256, 2048, N = 16)", selective_case, (8, 256, 2048, 16), {}),
    ("selective_scan (1024, 40, 256, N = 16): Table 3's Mamba, steps", selective_case, (1024, 40, 256, 16), {}),
    ("selective_scan, the same, tiles", selective_case, (1024, 40, 256, 16), {"path": "tiles"}),
    ("selective_scan, the same, steps unrolled by 2", selective_case, (1024, 40, 256, 16), {"unroll_steps": 2}),
    ("selective_scan, the same, steps of 16 channels", selective_case, (1024, 40, 256, 16), {"block_d_steps": 16}),
    ("selective_scan, the same, steps of 8 channels", selective_case, (1024, 40, 256, 16), {"block_d_steps": 8}),
    ("selective_scan, the same, steps, no prefetch", selective_case, (1024, 40, 256, 16), {"prefetch_steps": False}),
    ("sLSTM (1024, 40, H = 4, K = 32)", slstm_case, (1024, 40, 4, 32), {}),
    ("sLSTM (1024, 40, H = 1, K = 64)", slstm_case, (1024, 40, 1, 64), {}),
    ("sLSTM (64, 40, H = 1, K = 128): auto takes the loop here", slstm_case, (64, 40, 1, 128), {}),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None)
    ap.add_argument("--only", default="", help="cases whose label contains this text")
    a = ap.parse_args(argv)
    install()
    save_to(a.out)
    say("# Triton kernels on sm_90: registers and spills per thread at the launchers' own configurations\n")
    say("Offline compile on a CPU machine, not a timing (see the script's docstring).\n")
    say(f"- triton {triton.__version__}, torch {torch.__version__}; command: `python {' '.join(sys.argv)}`")
    say("- bf16 inputs (the sLSTM: fp32); forward and backward launches; T changes the compiled code only below the")
    say("  selective scan's checkpoint interval (64 steps)\n")
    say("| case | kernel | warps | registers | spill stores / loads (B) |")
    say("|---|---|---:|---:|---:|")
    for label, fn, shape, kw in CASES:
        if a.only not in label:
            continue
        _CompileOnly.case = label
        start = len(ROWS)
        fn(*shape, **kw)
        for _, kernel, warps, regs, spills in ROWS[start:]:
            say(f"| {label} | {kernel} | {warps} | {regs} | {spills} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
