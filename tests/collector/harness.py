"""Helpers of the collector root tests: a real ``policywatch-collector`` process and its metrics
(the traffic senders are in ``devstack.traffic``)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

COLLECTOR = Path(sys.executable).with_name("policywatch-collector")


class RunningCollector:
    def __init__(self, proc: subprocess.Popen[str], port: int, log_path: Path) -> None:
        self.proc = proc
        self.port = port
        self.log_path = log_path

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def program_id(self) -> int:
        match = re.search(r"attached BPF program id (\d+)", self.log)
        assert match, self.log
        return int(match.group(1))

    def scrape(self, path: str = "/metrics") -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=10)

    def series(self) -> dict[tuple[str, str, str], float]:
        """{(metric, policy, srcIP): value} from /metrics."""
        response = self.scrape()
        assert response.status_code == 200, response.text
        return {
            (s.name, s.labels["policy"], s.labels["srcIP"]): s.value
            for family in text_string_to_metric_families(response.text)
            for s in family.samples
        }

    def health(self, name: str, **labels: str) -> float | None:
        """One sample of /collector/metrics (e.g. ``health("policywatch_collector_unattributed_drops_total",
        namespace="ns")``), or None when it is not there."""
        response = self.scrape("/collector/metrics")
        assert response.status_code == 200, response.text
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return None

    def wait_for(
        self, check: Callable[[dict[tuple[str, str, str], float]], bool], timeout: float = 10.0
    ) -> dict[tuple[str, str, str], float]:
        deadline = time.monotonic() + timeout
        while True:
            current = self.series()
            if check(current) or time.monotonic() > deadline:
                return current
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return int(self.proc.returncode)
