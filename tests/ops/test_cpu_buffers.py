"""The CPU scratch pool of the chunked delta rule: reuse, and a bounded amount of idle memory."""

from __future__ import annotations

import numpy as np

from statetrack.ops._cpu_buffers import _ScratchPool


def test_pool_reuses_free_buffers_and_keeps_those_in_use():
    pool = _ScratchPool(idle_limit=1 << 30)
    a = pool.take(4096)
    assert pool.take(4096) is not a  # ``a`` is still held: a new buffer
    del a
    b = pool.take(4096)
    assert any(b is arr for arr in pool.arrays) and len(pool.arrays) == 2  # a free one of that size came back


def test_pool_drops_idle_buffers_over_its_limit_largest_first():
    """Regression: dropping buffers of different sizes used list.remove, which compares NumPy arrays with ==
    (elementwise, a broadcasting error) -- seen in a CPU sweep of 5-layer DeltaNets."""
    pool = _ScratchPool(idle_limit=3000)
    for n in (1000, 4000, 2000, 1500):
        pool.take(n)  # none held: each becomes idle at once
    held = pool.take(500)
    sizes = sorted(a.nbytes for a in pool.arrays if a is not held)
    assert sum(sizes) <= 3000 and sizes == [1000, 1500]  # 4000 and 2000 dropped, the small ones kept
    assert isinstance(held, np.ndarray) and held.nbytes == 500
