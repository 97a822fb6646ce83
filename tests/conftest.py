"""Test-wide settings."""

import os

import torch

# pytest-xdist runs one worker per core; several OpenMP threads per worker would oversubscribe the cores, and
# spin-waiting threads then make small ops orders of magnitude slower.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
