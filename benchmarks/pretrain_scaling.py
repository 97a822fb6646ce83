"""Pretraining on several processes: ``statetrack pretrain`` under torchrun at N = 1, 2, 4, ... one after the
other in one run, each N with the same global batch (the config's micro-batch per rank, grad_accum = N_max / N
micro-steps), so that every N sees the same tokens per step: tokens/s per GPU and its ratio to N = 1 (weak
scaling of the micro-batch per GPU), peak memory per GPU (rank 0), and the loss after the same tokens. Then a
resharded resume: the N_max run's checkpoint from halfway resumes at N_max / 2 processes (torch.distributed.
checkpoint reshards it) and its losses are printed beside the uninterrupted N_max run's.

    python -m benchmarks.pretrain_scaling [--out FILE.md] [--config deltanet_340m_11] [--nprocs 1,2,4]
        [--steps 40] [--warmup 10] [--smoke] [key=value ...]   # overrides, e.g. train.data_cache=.devdata

--nprocs defaults to the counts in 1, 2, 4, 8 up to the visible GPUs. ``--smoke``: the tiny config on the CPU
(gloo), N = 1 and 2, 20 steps (checks the script only; CPU rates say nothing about GPUs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from statetrack.lm.checkpoint import list_checkpoints
from statetrack.lm.pretrain_config import load_pretrain_config
from statetrack.train.metrics_log import METRICS

from .harness import Report, parser, smoke_note, smoke_or_cuda
from .pretrain_overhead import loop_rate


def torchrun(n: int) -> list[str]:
    """The launcher for n processes on this host (torchrun beside this Python, else its module)."""
    exe = Path(sys.executable).with_name("torchrun")
    base = [str(exe)] if exe.is_file() else [sys.executable, "-m", "torch.distributed.run"]
    return [*base, "--standalone", "--nproc-per-node", str(n), "-m", "statetrack", "pretrain"]


def records(out: Path) -> list[dict]:
    """The train lines of a run folder's metrics."""
    lines = (out / METRICS).read_text().splitlines()
    return [r for r in map(json.loads, lines) if r.get("kind") == "train"]


def launch(n: int, config: str, out: Path, overrides: list[str], resume: bool = False) -> None:
    """One ``statetrack pretrain`` of n processes; its output goes to out/../<name>.log (shown if it fails)."""
    log = out.with_suffix(".log")
    cmd = [*torchrun(n), config, f"train.out_dir={out}", *overrides] + (["--resume"] if resume else [])
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    with log.open("a") as f:
        p = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, check=False)
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{log.read_text()[-3000:]}")


def default_nprocs() -> list[int]:
    gpus = torch.cuda.device_count()
    return [n for n in (1, 2, 4, 8) if n <= gpus]


def build_parser():
    p = parser(__doc__)
    p.add_argument("--config", default="deltanet_340m_11")
    p.add_argument("--nprocs", default=None, help="process counts, e.g. 1,2,4 (each divides the largest)")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=10, help="steps left out of the rates (compile, allocator)")
    p.add_argument("--smoke", action="store_true", help="the tiny config on the CPU, gloo (checks the script only)")
    p.add_argument("overrides", nargs="*", help="key=value overrides of the pretraining config")
    return p


def parse_nprocs(text: str) -> list[int]:
    """--nprocs: positive counts, each dividing the largest (the global batch is split among them)."""
    try:
        nprocs = [int(n) for n in text.split(",")]
    except ValueError:
        nprocs = []
    if not nprocs or any(n < 1 or max(nprocs) % n for n in nprocs):
        raise SystemExit(f"--nprocs takes positive process counts that divide the largest, e.g. 1,2,4; got {text!r}")
    return nprocs


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    if a.nprocs:  # before the device: a bad setting fails at once, anywhere
        parse_nprocs(a.nprocs)
    if a.steps % 10 or a.warmup % 10 or a.steps < 2 * a.warmup:
        raise SystemExit(f"--steps and --warmup must be multiples of 10 (the loop logs every 10 steps) and --steps "
                         f"at least twice --warmup; got {a.steps} and {a.warmup}")  # fmt: skip
    dev = smoke_or_cuda(a, "pretrain_scaling", config="tiny", steps=20, warmup=10, nprocs="1,2")
    if dev is None:
        return 2
    nprocs = parse_nprocs(a.nprocs) if a.nprocs else default_nprocs()
    top = max(nprocs)
    cfg = load_pretrain_config(a.config, a.overrides)
    tc = cfg.train
    half = a.steps // 2
    over = [f"train.steps={a.steps}", f"train.warmup_steps={min(tc.warmup_steps, a.warmup)}", "train.log_every=10",
            "train.eval_every=0", f"train.ckpt_every={half}", "train.keep_last=2", "train.progress=false",
            "train.async_checkpoint=off", f"train.device={dev}", *a.overrides]  # fmt: skip
    accum = tc.grad_accum * top  # micro-steps of the whole global batch
    rep = Report("pretrain_scaling", f"# Pretraining on 1 to {top} processes: {a.config}", a.out,
                 print_only=a.print_only, argv=argv)  # fmt: skip
    rep.header()
    rep.say(f"{smoke_note(dev)}micro-batch {tc.batch_size} x T {tc.seq_len} per rank, global batch "
            f"{tc.batch_size * accum} sequences (grad_accum = {accum} / N), {a.steps} steps, rates after "
            f"{a.warmup}; overrides: {over}")  # fmt: skip
    rep.table("N", "tokens/s", "tokens/s per GPU", "per GPU / N=1", "peak GiB per GPU", f"loss at step {a.steps}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = None
        for n in nprocs:
            out = root / f"n{n}"
            launch(n, a.config, out, [*over, f"train.grad_accum={accum // n}"])
            rate, recs = loop_rate(out, a.warmup), records(out)
            per = rate / n
            base = per if base is None else base
            peak = recs[-1].get("peak_gib")
            rep.row(str(n), f"{rate:,.0f}", f"{per:,.0f}", f"{per / base:.1%}", "-" if peak is None else f"{peak:.1f}",
                    f"{recs[-1]['loss']:.4f}")  # fmt: skip
        if top >= 2:
            rep.say("")
            rep.say(f"## Resharded resume: N = {top}'s checkpoint at step {half} resumed at N = {top // 2}")
            src, dst = root / f"n{top}", root / "resumed"
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns(METRICS, "*.log"))
            for s, c in list_checkpoints(dst / "checkpoints"):
                if s > half:
                    shutil.rmtree(c)
            launch(top // 2, a.config, dst, [*over, f"train.grad_accum={accum // (top // 2)}"], resume=True)
            ref = {r["step"]: r["loss"] for r in records(src)}
            again = {r["step"]: r["loss"] for r in records(dst)}
            rep.table("step", f"loss, N = {top} throughout", f"loss, resumed at N = {top // 2}", "difference")
            for s in sorted(again):
                rep.row(str(s), f"{ref[s]:.4f}", f"{again[s]:.4f}", f"{again[s] - ref[s]:+.4f}")
    return rep.done()


if __name__ == "__main__":
    raise SystemExit(main())
