"""Shared fixtures of the experiment tests: start deltahall under a 2-process launcher (CPU, gloo)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(
    launcher: str, argv: list[str], *, cwd: Path, timeout: float = 300
) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``deltahall <argv>`` with 2 processes under ``torchrun`` or ``accelerate launch``."""
    port = str(free_port())
    if launcher == "torchrun":
        exe = shutil.which("torchrun") or sys.executable
        cmd = [
            exe,
            "--nproc_per_node",
            "2",
            "--master_port",
            port,
            "-m",
            "deltahall.cli.main",
            *argv,
        ]
        if exe == sys.executable:
            cmd[1:1] = ["-m", "torch.distributed.run"]
    else:
        cmd = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            "--num_processes",
            "2",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            port,
            "-m",
            "deltahall.cli.main",
            *argv,
        ]
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONUNBUFFERED="1",
    )
    env.pop("WORLD_SIZE", None)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return proc, time.perf_counter() - t0


def run_single(
    argv: list[str], *, cwd: Path, timeout: float = 300
) -> tuple[subprocess.CompletedProcess[str], float]:
    """The same command with one process."""
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "deltahall.cli.main", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return proc, time.perf_counter() - t0


@pytest.fixture
def launch2():
    """``launch2(launcher, argv, cwd=...) -> (CompletedProcess, seconds)``: 2 processes."""
    return launch


@pytest.fixture
def launch1():
    """``launch1(argv, cwd=...) -> (CompletedProcess, seconds)``: 1 process."""
    return run_single
