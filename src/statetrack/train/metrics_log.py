"""A run's metrics file: one JSON object per line (``{"kind": "train" | "eval", "step": ..., ...}``)."""

from __future__ import annotations

import json
from pathlib import Path

METRICS = "metrics.jsonl"  # its file name in a run folder


class MetricsLog:
    """Appends records to ``path`` (None: writes nothing), each flushed at once so a killed run keeps them.

    ``resume_step``: the step the run continues from; lines after it are dropped first, because the resumed
    run writes them again."""

    def __init__(self, path: str | Path | None, resume_step: int = 0):
        self.file = None
        if path is not None:
            path = Path(path)
            if path.exists():
                keep = [ln for ln in path.read_text().splitlines()
                        if ln.strip() and json.loads(ln)["step"] <= resume_step]  # fmt: skip
                path.write_text("".join(ln + "\n" for ln in keep))
            self.file = open(path, "a")  # noqa: SIM115 - closed by close()

    def write(self, rec: dict) -> None:
        if self.file is not None:
            self.file.write(json.dumps(rec) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
