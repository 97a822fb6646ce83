"""The run cache: a key per run config, atomic result files, and the run folders under ``--out/runs/``.

A run's key is the sha256 of its config as canonical JSON (sorted keys, no whitespace), minus the fields that
do not change what is measured (where it runs, bookkeeping, output paths), plus the numeric precision and the
task test-set version. A finished run leaves ``runs/<key>/result.json``, written atomically (temporary file,
fsync, rename), so a sweep killed at any moment never leaves a half-written result and never loses a finished
one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from statetrack.tasks import TEST_SET_VERSION

# Bump when the meaning of a result changes (what the worker measures or how); old results are then ignored.
KEY_VERSION = 1
RESULT = "result.json"

# dotted config fields that do not change the measurement
NOT_IN_KEY = frozenset({
    "name", "train.device", "train.progress", "train.out_dir", "train.prefetch", "train.threads",
    "train.eval_batch_size", "train.log_every", "train.ckpt_every", "train.keep_last", "train.compile",
    "train.value_checks", "model.settings.backend", "train.deterministic",
})  # fmt: skip


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict) and k != "task_args":
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def _plain(v):
    """JSON-stable values: tuples as lists, ints that are floats kept as floats (1e-3 and 0.001 agree)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def key_payload(config: dict, precision: str) -> dict:
    """What the key hashes: the config's fields (flattened, filtered), the precision and the versions."""
    flat = {k: _plain(v) for k, v in _flatten(config).items() if k not in NOT_IN_KEY}
    return {"key_version": KEY_VERSION, "test_set_version": TEST_SET_VERSION, "precision": precision, "config": flat}


def config_key(config: dict, precision: str = "fp32") -> str:
    """16 hex digits naming a run: sha256 of the canonical JSON of :func:`key_payload`.

    config: ``ExperimentConfig.to_dict()`` (nested dict). Stable across processes, machines and dict order.
    """
    text = json.dumps(key_payload(config, precision), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_dir(out: str | Path, key: str) -> Path:
    return Path(out) / "runs" / key


def load_result(out: str | Path, key: str) -> dict | None:
    """The finished result of run ``key`` under ``out``, or None (not run, unfinished, or from another key)."""
    p = run_dir(out, key) / RESULT
    if not p.is_file():
        return None
    try:
        res = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return res if res.get("key") == key else None
