"""Where and how a run executes: the device, bf16 autocast, the CUDA graph and the ops' value checks.

Each is a named setting of :class:`~statetrack.train.config.TrainConfig` whose default is "auto"; the
functions here hold auto's rule (stated in each docstring and in docs/training.md) and refuse a setting that
cannot apply on the device or path chosen.
"""

from __future__ import annotations

import contextlib

import torch

from statetrack.ops import value_checks

from .config import TrainConfig


def resolve_device(name: str, what: str = "train.device") -> torch.device:
    """A device setting (``what``, named in the error): "auto" is CUDA when available, else the CPU; "cuda"
    without CUDA raises."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} = {name!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return dev


def uses_amp(tc: TrainConfig, device: torch.device) -> bool:
    """``train.amp``: bf16 autocast with "bf16", and with "auto" on CUDA (fp32 on the CPU)."""
    return tc.amp == "bf16" or (tc.amp == "auto" and device.type == "cuda")


def uses_cuda_graph(tc: TrainConfig, device: torch.device) -> bool:
    """``train.cuda_graph``: "auto" is on for CUDA, off on the CPU; "on" without CUDA raises."""
    if tc.cuda_graph == "on" and device.type != "cuda":
        raise ValueError(f"train.cuda_graph = 'on' needs a CUDA device, got train.device = {tc.device!r}")
    return tc.cuda_graph == "on" or (tc.cuda_graph == "auto" and device.type == "cuda")


def value_check_phases(setting: str, device: torch.device, graphed: bool) -> tuple[bool | None, bool | None]:
    """``setting`` (``train.value_checks`` of ``statetrack train`` and of ``statetrack pretrain``) as (checks
    during the run's first step, checks after it); None = the process default of :mod:`statetrack.ops` (on
    unless ``STATETRACK_VALUE_CHECKS=0``).

    The ops' value-range checks (beta in [0, 2], ...) read tensors back, a host sync per op. "auto": on the CPU
    the process default throughout; on CUDA the process default for the first step of this process (a resumed
    run's first step included), then off. "on": every step and evaluation (not with a CUDA graph: a replayed
    graph cannot check, so that raises). "first_step": on for the first step, then off. "off": never. The
    "first step" of a graphed run is its eager warm-up before capture; the capture itself is never checked.
    """
    if setting == "on" and graphed:
        raise ValueError(
            "train.value_checks = 'on' cannot apply to a CUDA-graphed step (a replayed graph checks nothing); "
            "set train.cuda_graph = 'off', or train.value_checks = 'first_step' or 'auto'"
        )
    return {
        "auto": (None, False) if device.type == "cuda" else (None, None),
        "on": (True, True),
        "first_step": (True, False),
        "off": (False, False),
    }[setting]


class CheckPhases:
    """The phases of :func:`value_check_phases` over a run: the first phase's checks in ``stack`` from here on
    (None: the process default), the later phase's from the first :meth:`stepped` on."""

    def __init__(self, phases: tuple[bool | None, bool | None], stack: contextlib.ExitStack):
        self.first, self.later = phases
        self._stack, self._switch = stack, True
        if self.first is not None:
            stack.enter_context(value_checks(self.first))

    def stepped(self) -> None:
        """Call after every training step: after the run's first, the later phase begins."""
        if self._switch:
            self._switch = False
            if self.later != self.first:
                self._stack.enter_context(value_checks(self.later))
