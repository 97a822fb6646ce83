"""prefix_sum: the log-step scan equals torch.cumsum (values and gradients, fp64, any length and dim), and "auto"
keeps torch.cumsum wherever that runs in deterministic mode."""

from __future__ import annotations

import pytest
import torch

from statetrack.ops.prefix_sum import prefix_sum


@pytest.mark.parametrize("T", [1, 2, 3, 63, 65, 1000])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_log_step_equals_cumsum(T, dim):
    g = torch.Generator().manual_seed(T)
    shape = [3, 4, 5]
    shape[dim] = T
    x = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    y = prefix_sum(x, dim, algorithm="log_step")
    ref = torch.cumsum(x, dim)
    assert y.shape == x.shape and y.dtype == x.dtype
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    (gx,) = torch.autograd.grad((y * w).sum(), x)
    (gr,) = torch.autograd.grad((ref * w).sum(), x)
    torch.testing.assert_close(gx, gr, rtol=1e-12, atol=1e-12)


def test_log_step_is_close_in_fp32_and_bitwise_repeatable():
    x = torch.randn(2, 4096, 3, generator=torch.Generator().manual_seed(0))
    a, b = prefix_sum(x, 1, algorithm="log_step"), prefix_sum(x.clone(), 1, algorithm="log_step")
    assert torch.equal(a, b)
    torch.testing.assert_close(a, torch.cumsum(x.double(), 1).float(), rtol=1e-4, atol=1e-4)


def test_auto_is_torch_cumsum_off_cuda_even_in_deterministic_mode():
    x = torch.randn(3, 70, generator=torch.Generator().manual_seed(1))
    old = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert torch.equal(prefix_sum(x, 1), torch.cumsum(x, 1))  # torch.cumsum is deterministic on the CPU
    finally:
        torch.use_deterministic_algorithms(old)
    assert torch.equal(prefix_sum(x, -1), torch.cumsum(x, -1))
    with pytest.raises(ValueError, match="algorithm"):
        prefix_sum(x, 1, algorithm="cub")
