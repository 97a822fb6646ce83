"""What every benchmark script shares: timing, peak memory, the optional anchors, and a report that is printed as
it is made and kept in ``results/benchmarks/<device>/<name>.md`` line by line (a run cut short keeps what it
measured), with the device, versions and exact command at its head, and sections that fail alone.

    rep = Report("scans", "Signed scans: ours vs fla", args.out)   # args from harness.parser(__doc__)
    rep.header(fla=fla_version)
    with rep.section("speed"):
        rep.table("shape", "ms")
        rep.row("8, 4096", f"{time_ms(fn):.3f}")

Scripts run from the repository root as ``python -m benchmarks.<script>`` and call only public statetrack names.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import json
import os
import platform
import re
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "benchmarks"


# ---------------------------------------------------------------------------------------------------- the machine
def has_cuda(script: str = "this benchmark") -> bool:
    """True on a CUDA machine; else says "<script> needs a CUDA GPU" on stderr (the scripts then exit 2)."""
    if torch.cuda.is_available():
        return True
    print(f"{script} needs a CUDA GPU", file=sys.stderr)
    return False


def interpreter() -> bool:
    """Whether Triton's interpreter was asked for (TRITON_INTERPRET=1): the kernels then run on the CPU."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def smoke_or_cuda(args, script: str, **small) -> str | None:
    """The device of a script with a ``--smoke`` mode: "cpu" with --smoke (``args`` shrunk to ``small``, no fla,
    printed unless --out), else "cuda" where there is one, else None (said on stderr; the script then exits 2)."""
    if args.smoke:
        for name, value in small.items():
            setattr(args, name, value)
        args.no_fla = True
        args.print_only = args.print_only or args.out is None
        return "cpu"
    return "cuda" if has_cuda(f"benchmarks.{script} (or --smoke on a CPU)") else None


def smoke_note(device: str) -> str:
    """The line a report's header starts with on a smoke run ("" on CUDA)."""
    return "" if device == "cuda" else f"CPU smoke run ({'Triton interpreter' if interpreter() else 'torch only'}); "


def device_slug(device: str | torch.device | None = None) -> str:
    """The results folder of a device: "h100", "h200", "a100", ... for CUDA GPUs (:func:`gpu_slug`), else "cpu"."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return gpu_slug(torch.cuda.get_device_name(device)) if device.type == "cuda" else device.type


def gpu_slug(name: str) -> str:
    """ "NVIDIA H100 80GB HBM3" -> "h100": the model number, else the whole name in lower case with dashes."""
    m = re.search(r"\b([A-Z]{1,2}\d{2,4}[A-Z]?)\b", name)
    return (m.group(1) if m else re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")).lower()


def device_text(device: str | torch.device | None = None) -> str:
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.multi_processor_count} SMs, {props.total_memory / 2**30:.0f} GiB)"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def versions(**extra: str) -> str:
    """ "python X, torch Y, triton Z, statetrack W" plus ``extra`` (e.g. fla=...)."""
    import statetrack

    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    try:
        import triton

        parts.append(f"triton {triton.__version__}")
    except ImportError:
        pass
    parts.append(f"statetrack {statetrack.__version__}")
    return ", ".join(parts + [f"{k} {v}" for k, v in extra.items()])


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on every platform
        return "n/a"


def anchor(*modules: str) -> tuple[tuple | None, str]:
    """An optional anchor library's modules (e.g. "fla.ops.delta_rule") and its version, or (None, why) when it
    cannot be imported here: the anchors may be missing, ours run either way."""
    try:
        top = importlib.import_module(modules[0].split(".")[0])
        mods = tuple(importlib.import_module(n) for n in modules)
    except Exception as e:  # noqa: BLE001 - any import failure means "not available"
        return None, f"not available ({type(e).__name__}: {str(e)[:120]})"
    return mods, getattr(top, "__version__", "?")


# -------------------------------------------------------------------------------------------------------- timing
def time_ms(
    fn: Callable[[], object], *, cuda: bool | None = None, warmup: int = 25, rep: int = 100, repeats: int = 5
) -> float:
    """Median milliseconds of ``fn()``. On the GPU (``cuda``; default: when CUDA is available):
    triton.testing.do_bench (warm-up, L2 flushed between calls) where triton is importable, else CUDA events
    around each of ``repeats`` calls after one warm-up; on the CPU: wall clock of ``repeats`` calls after one."""
    if torch.cuda.is_available() if cuda is None else cuda:
        try:
            from triton.testing import do_bench
        except ImportError:
            do_bench = None
        if do_bench is not None:
            return float(do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))
        fn()
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def train_logs(run_dir: Path) -> list[dict]:
    """The "train" records of a run's metrics log (``statetrack.train.METRICS`` in ``run_dir``), in order."""
    from statetrack.train import METRICS

    lines = (run_dir / METRICS).read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "train"]


def steady_rate(logs: list[dict]) -> float:
    """Steps/s of a run after its first log line (warm-up, compilation and graph capture excluded): each record's
    steps_per_s covers the steps since the one before, so their harmonic mean; nan with fewer than two records."""
    rates = [r["steps_per_s"] for r in logs[1:]]
    return len(rates) / sum(1 / r for r in rates) if rates else float("nan")


def peak_mib(fn: Callable[[], object], *, cuda: bool | None = None) -> float | None:
    """GPU memory of one ``fn()`` at its peak beyond what was allocated before it (MiB); None off the GPU."""
    if not (torch.cuda.is_available() if cuda is None else cuda):
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def try_run(fn: Callable[[], object], width: int = 160) -> tuple[object | None, str | None]:
    """(fn(), None), or (None, "Error: first line") when it raises: a failed cell, not a failed run."""
    try:
        return fn(), None
    except Exception as e:  # noqa: BLE001 - report, do not die
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
        first = str(e).splitlines()[0] if str(e) else ""
        return None, f"{type(e).__name__}: {first}"[:width]


# -------------------------------------------------------------------------------------------------------- report
def parser(doc: str | None) -> argparse.ArgumentParser:
    """An argument parser with the report's options: --out FILE, --print-only."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None,
                   help="the report file (default: results/benchmarks/<device>/<name>.md)")  # fmt: skip
    p.add_argument("--print-only", action="store_true", help="print the report, write no file")
    return p


class Report:
    """Lines printed as they come and, unless ``print_only``, rewritten to ``out`` after each (Markdown).

    Args:
        name: the script's name (benchmarks/<name>.py) and the file's stem under results/benchmarks/<device>/
            when ``out`` is None.
        title: the first line (a Markdown heading).
        out: the file, or None for the default place.
        device: the device measured (default: CUDA if present, else the CPU): names the folder and the header.
        suffix: the default file's suffix (".md"; ".txt" for the plain-text reports).
        argv: the script's arguments when main() was called with them (default: sys.argv's), for the header.
    """

    def __init__(
        self,
        name: str,
        title: str,
        out: Path | str | None = None,
        *,
        print_only: bool = False,
        device: str | torch.device | None = None,
        suffix: str = ".md",
        argv: list[str] | None = None,
    ):
        self.device, self.name, self.argv = device, name, argv
        self.path = None if print_only else Path(out) if out else RESULTS / device_slug(device) / f"{name}{suffix}"
        self.lines: list[str] = []
        self.t0 = time.perf_counter()
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.say(title)

    def say(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)
        if self.path is not None:
            self.path.write_text("\n".join(self.lines) + "\n")

    def header(self, *notes: str, **versions_extra: str) -> None:
        """Date, device, versions (``versions_extra`` added, e.g. fla="0.6.0"), command, then ``notes``."""
        self.say()
        self.say(f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}")
        self.say(f"- device: {device_text(self.device)}")
        self.say(f"- versions: {versions(**versions_extra)}")
        self.say(f"- command: `{self.command()}`")
        for n in notes:
            self.say(f"- {n}")
        self.say()

    def table(self, *columns: str, right: int = 0) -> None:
        """A table's header row; the last ``right`` columns right-aligned."""
        self.say("| " + " | ".join(columns) + " |")
        self.say("|" + "---|" * (len(columns) - right) + "---:|" * right)

    def row(self, *cells: object) -> None:
        self.say("| " + " | ".join(str(c) for c in cells) + " |")

    def code(self, text: str) -> None:
        self.say("```")
        self.say(text.rstrip("\n"))
        self.say("```")

    @contextlib.contextmanager
    def section(self, name: str):
        """A part of the report that fails alone: its traceback is reported in place and the run goes on."""
        try:
            yield
        except Exception:  # noqa: BLE001 - keep the other sections
            self.say(f"section {name} failed:")
            self.code(traceback.format_exc()[-3000:])
            self.say()

    def command(self) -> str:
        """The command line as run: ``python -m benchmarks.<script> args...``."""
        args = sys.argv[1:] if self.argv is None else list(self.argv)
        return " ".join(["python -m", f"benchmarks.{self.name}", *args])

    def done(self) -> int:
        self.say(f"total {time.perf_counter() - self.t0:.0f} s")
        return 0
