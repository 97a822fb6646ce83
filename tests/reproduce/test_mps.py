"""reproduce --mps: the MPS daemon is started for the sweep (with a fake nvidia-cuda-mps-control), its
environment reaches the workers and is restored afterwards, and an already running daemon is reused."""

from __future__ import annotations

import os
import stat

import pytest

from statetrack.reproduce.mps import CONTROL, ENV, mps_daemon

FAKE = """#!/bin/sh
# records its calls; "-d" creates the control pipe as the real daemon does
echo "args=$* pipe=$CUDA_MPS_PIPE_DIRECTORY" >> "$CALLS"
if [ "$1" = "-d" ]; then touch "$CUDA_MPS_PIPE_DIRECTORY/control"; else cat >> "$CALLS"; fi
"""


@pytest.fixture
def fake_control(tmp_path, monkeypatch):
    exe = tmp_path / "bin" / CONTROL
    exe.parent.mkdir()
    exe.write_text(FAKE)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{exe.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("CALLS", str(tmp_path / "calls.txt"))
    for k in ENV:
        monkeypatch.delenv(k, raising=False)
    return tmp_path / "calls.txt"


def test_daemon_started_for_the_block_and_told_to_quit(fake_control):
    with mps_daemon(True, log=lambda *_: None) as pipe:
        assert os.environ[ENV[0]] == pipe and os.path.exists(os.path.join(pipe, "control"))
        assert os.environ[ENV[1]].endswith("log")
    assert all(k not in os.environ for k in ENV)  # restored: later processes do not look for a stopped daemon
    calls = fake_control.read_text().splitlines()
    assert calls[0] == f"args=-d pipe={pipe}"
    assert calls[1] == f"args= pipe={pipe}" and calls[2] == "quit"
    assert not os.path.exists(pipe)  # its temporary folder is removed


def test_running_daemon_is_reused_and_disabled_does_nothing(fake_control, tmp_path, monkeypatch):
    (tmp_path / "pipe").mkdir()
    (tmp_path / "pipe" / "control").touch()
    monkeypatch.setenv(ENV[0], str(tmp_path / "pipe"))
    with mps_daemon(True, log=lambda *_: None) as pipe:
        assert pipe == str(tmp_path / "pipe")
    with mps_daemon(False) as pipe:
        assert pipe is None
    assert not fake_control.exists()  # never called


def test_missing_control_binary_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(ENV[0], raising=False)
    with pytest.raises(RuntimeError, match="--mps: nvidia-cuda-mps-control is not on PATH"):
        with mps_daemon(True):
            pass
