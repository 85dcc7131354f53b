"""The ``start_collector`` fixture: a real ``policywatch-collector`` process, always stopped and uninstalled."""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.services import free_port
from tests.collector.harness import COLLECTOR, RunningCollector


@pytest.fixture
def collector_dirs(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(bpffs pin directory, state file) of this test's collectors; the pins are removed (detached) afterwards."""
    from collector.bpf_loader import uninstall

    bpf_dir = Path("/sys/fs/bpf") / f"pwtest-{secrets.token_hex(4)}"
    try:
        yield bpf_dir, tmp_path / "collector-state.json"
    finally:
        uninstall(bpf_dir)


@pytest.fixture
def start_collector(tmp_path: Path, collector_dirs: tuple[Path, Path]) -> Iterator[Callable[..., RunningCollector]]:
    """Factory: ``start_collector("--ttl", "2", ...)`` runs the real command on a free loopback port.

    Every start of one test shares its pin directory and state file, so a second start is a restart."""
    started: list[RunningCollector] = []
    bpf_dir, state_file = collector_dirs

    def start(*args: str, ready: bool = True, port: int | None = None) -> RunningCollector:
        port = port or free_port()
        log_path = tmp_path / f"collector-{len(started)}.log"
        argv = [str(COLLECTOR), "--host", "127.0.0.1", "--port", str(port), "--drain-interval", "0.2"]
        argv += ["--bpf-dir", str(bpf_dir), "--state-file", str(state_file), *args]
        with log_path.open("w") as log_file:
            proc = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
        running = RunningCollector(proc, port, log_path)
        started.append(running)
        if ready:
            deadline = time.monotonic() + 60
            while "attached BPF program id" not in running.log:
                assert proc.poll() is None, f"collector exited {proc.returncode}:\n{running.log}"
                assert time.monotonic() < deadline, f"collector not ready in 60 s:\n{running.log}"
                time.sleep(0.1)
        return running

    try:
        yield start
    finally:
        for running in started:
            running.stop()
