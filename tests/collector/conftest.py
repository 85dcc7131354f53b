"""The ``start_collector`` fixture: a real ``policywatch-collector`` process, always stopped."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.services import free_port
from tests.collector.harness import COLLECTOR, RunningCollector


@pytest.fixture
def start_collector(tmp_path: Path) -> Iterator[Callable[..., RunningCollector]]:
    """Factory: ``start_collector("--ttl", "2", ...)`` runs the real command on a free loopback port."""
    started: list[RunningCollector] = []

    def start(*args: str, ready: bool = True) -> RunningCollector:
        port = free_port()
        log_path = tmp_path / f"collector-{len(started)}.log"
        argv = [str(COLLECTOR), "--host", "127.0.0.1", "--port", str(port), "--drain-interval", "0.2", *args]
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
