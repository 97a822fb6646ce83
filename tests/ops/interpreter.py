"""Running a test file of Triton kernels in Triton's interpreter (CPU tensors), from a normal test process.

The interpreter must be switched on before triton is imported, for the whole process, so a kernel test module
re-runs itself in a fresh subprocess with ``TRITON_INTERPRET=1``: nothing leaks into other modules or xdist workers.
Inside, ``RUNNABLE`` is true and the kernel tests run; outside they skip.
"""

from __future__ import annotations

import os
import subprocess
import sys

DEVICE = os.environ.get("STATETRACK_TEST_DEVICE", "cpu")
GPU = DEVICE == "cuda"
INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"
RUNNABLE = GPU or INTERPRET


def rerun_in_interpreter(path: str, timeout: int = 600) -> None:
    """Run the tests of ``path`` in a subprocess under the interpreter; fail with its output if any fails."""
    env = dict(os.environ, TRITON_INTERPRET="1", STATETRACK_TEST_DEVICE="cpu", OMP_NUM_THREADS="1")
    env.pop("PYTEST_XDIST_WORKER", None)
    cmd = [sys.executable, "-m", "pytest", path, "-q", "-p", "no:xdist", "-p", "no:cacheprovider", "-x"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stdout[-6000:] + res.stderr[-3000:]
