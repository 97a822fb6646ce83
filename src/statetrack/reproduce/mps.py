"""NVIDIA MPS for a sweep's worker processes (``statetrack reproduce --mps``).

Processes that share a GPU without MPS take turns on it; with MPS their kernels run at the same time. On the
H100 that made 6 Table 3 runs train 1.2x (DeltaNet) to 1.9x (sLSTM) faster together than one after the other
(docs/reproduce.md, "Sharing a GPU"). MPS is a user-level daemon that ships with the driver
(``nvidia-cuda-mps-control``); it changes no setting of the GPU. If one is already serving this process's
environment (``CUDA_MPS_PIPE_DIRECTORY`` holds its control pipe), it is used as it is; otherwise one is started
with its pipe and log folders in a temporary folder, the workers (spawned afterwards) inherit the environment
that points to it, and it is told to quit when the sweep ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

CONTROL = "nvidia-cuda-mps-control"
ENV = ("CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY")


@contextlib.contextmanager
def mps_daemon(enabled: bool = True, log=print) -> Iterator[str | None]:
    """Within the block, CUDA processes started by this one share GPUs through MPS. Yields the pipe folder
    (None when not enabled)."""
    if not enabled:
        yield None
        return
    running = os.environ.get(ENV[0])
    if running and (Path(running) / "control").exists():
        log(f"MPS: using the daemon already serving {running}")
        yield running
        return
    exe = shutil.which(CONTROL)
    if exe is None:
        raise RuntimeError(f"--mps: {CONTROL} is not on PATH (it comes with the NVIDIA driver)")
    root = Path(tempfile.mkdtemp(prefix="statetrack-mps-"))
    env = {ENV[0]: str(root / "pipe"), ENV[1]: str(root / "log")}
    for d in env.values():
        Path(d).mkdir()
    subprocess.run([exe, "-d"], env={**os.environ, **env}, check=True, timeout=60)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    log(f"MPS: started a daemon ({env[ENV[0]]})")
    try:
        yield env[ENV[0]]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        res = subprocess.run([exe], input="quit\n", text=True, env={**os.environ, **env}, capture_output=True,
                             timeout=60)  # fmt: skip
        if res.returncode != 0:
            log(f"MPS: stopping the daemon failed ({res.returncode}): {res.stderr.strip()}")
        shutil.rmtree(root, ignore_errors=True)
