"""What every output records about how it was made: command line, versions, devices, wall time, throughput."""

from __future__ import annotations

import datetime
import functools
import hashlib
import importlib.metadata
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

import statetrack


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_state() -> dict:
    """The commit of the statetrack checkout and whether it had uncommitted changes (None outside git)."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return {"commit": None, "dirty": None}
        st = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True,
                            text=True, timeout=10)  # fmt: skip
        return {"commit": rev.stdout.strip(), "dirty": bool(st.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


@functools.lru_cache(maxsize=1)
def source_tree() -> dict:
    """sha256 of the statetrack package's files (sorted relative paths and contents; caches left out) and their
    count. Two runs with the same hash ran the same code, whatever git says (uncommitted edits count)."""
    root = Path(statetrack.__file__).resolve().parent
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts
                   and p.suffix not in (".pyc", ".pyo"))  # fmt: skip
    for p in files:
        digest.update(p.relative_to(root).as_posix().encode() + b"\0")
        digest.update(p.read_bytes() + b"\0")
    return {"sha256": digest.hexdigest()[:16], "files": len(files)}


def versions() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "numpy": _version("numpy"),
        "statetrack": statetrack.__version__,  # also right when run from a source tree that is not installed
        "triton": _version("triton"),
        "git": git_state(),
        "source": source_tree(),
    }


def devices_info(devices: list[str]) -> dict:
    info = {"devices": devices, "host": platform.node(), "cpu": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count()}  # fmt: skip
    if devices and devices[0].startswith("cuda") and torch.cuda.is_available():  # not visible: a report-only call
        info["gpus"] = [torch.cuda.get_device_name(torch.device(d)) for d in devices]
    return info


def throughput(trained: int, wall_seconds: float, devices: list[str]) -> dict:
    """Runs per device-hour of this invocation: runs trained now / (wall hours x GPUs) (or x 1 CPU)."""
    n = len(devices) if devices and devices[0].startswith("cuda") else 1
    unit = "GPU" if n and devices[0].startswith("cuda") else "CPU"
    hours = wall_seconds / 3600 * n
    return {"runs_trained": trained, "wall_seconds": round(wall_seconds, 2), "device_count": n, "unit": unit,
            f"runs_per_{unit}_hour": round(trained / hours, 1) if trained and hours > 0 else None}  # fmt: skip


def rate_text(throughput_: dict) -> str | None:
    """ "N runs per GPU-hour" (or CPU-hour) from a :func:`throughput` or :func:`all_runs` dict; None if it has none."""
    return next((f"{v:g} runs per {k.split('_')[2]}-hour" for k, v in throughput_.items()
                 if k.startswith("runs_per_") and v), None)  # fmt: skip


def runs_span(results: list[dict]) -> float:
    """Seconds during which at least one of ``results`` (result.json dicts) was training: the union of their
    [finished_at - wall_seconds, finished_at] intervals. Over a sweep made by several invocations (resumed,
    sharded) this is its time on the devices, restarts and idle gaps between invocations left out."""
    spans = []
    for r in results:
        if r.get("finished_at") and r.get("wall_seconds") is not None:
            end = datetime.datetime.fromisoformat(r["finished_at"]).timestamp()
            spans.append((end - float(r["wall_seconds"]), end))
    total, cur = 0.0, None
    for start, end in sorted(spans):
        if cur is None or start > cur[1]:
            total += 0.0 if cur is None else cur[1] - cur[0]
            cur = [start, end]
        else:
            cur[1] = max(cur[1], end)
    return total + (0.0 if cur is None else cur[1] - cur[0])


def all_runs(results: list[dict], devices: list[str]) -> dict:
    """The whole experiment's throughput from its runs (see :func:`runs_span`), per device of this invocation,
    and the devices the runs say they were trained on ("made_on", sorted, distinct)."""
    span = runs_span(results)
    thr = throughput(len(results), span, devices)
    made_on = sorted({r["device"] for r in results if r.get("device")})
    made_from: dict[str, int] = {}  # source-tree hash -> runs ("unrecorded": results from before the hash)
    for r in results:
        h = r.get("source_sha256") or "unrecorded"
        made_from[h] = made_from.get(h, 0) + 1
    return {"runs": len(results), "span_seconds": round(span, 1), "device_count": thr["device_count"],
            "unit": thr["unit"], **{k: v for k, v in thr.items() if k.startswith("runs_per_")},
            "made_on": made_on, "made_from": dict(sorted(made_from.items(), key=lambda kv: -kv[1]))}  # fmt: skip


def record(argv: list[str] | None, devices: list[str], **extra) -> dict:
    return {
        "command": "statetrack " + shlex.join(argv) if argv is not None else shlex.join(sys.argv),
        "argv": sys.argv,
        "started_at": extra.pop("started_at", time.strftime("%Y-%m-%dT%H:%M:%S%z")),
        "versions": versions(),
        "device": devices_info(devices),
        **extra,
    }
