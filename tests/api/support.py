"""Helpers shared by the API tests: app and process starters, sample objects. Test modules import these, never
each other or a conftest."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from api.app import create_app
from api.deps import Services
from api.settings import Settings
from devstack.services import free_port
from evaluator.engine.runtime import Service


def no_services(_services: Services) -> list[Service]:
    return []


def make_client(url: str, **settings: object) -> TestClient:
    app = create_app(
        Settings(database_url=url, **settings),
        registry=CollectorRegistry(),
        service_factory=no_services,
    )
    return TestClient(app)


class EvaluatorProcess:
    """``policywatch-evaluator`` in a subprocess on a free loopback port; always stopped."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tmp_path / "evaluator.log"
        self.url = ""

    def start(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        scheme: str = "http",
        ca: str | None = None,
        port: int | None = None,
    ) -> str:
        port = port or free_port()
        database = f"sqlite:///{self.tmp_path / 'server.db'}"
        argv = [sys.executable, "-m", "api.server", "--port", str(port), "--database-url", database]
        argv += ["--log-level", "warning", *args]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
        self.url = f"{scheme}://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"evaluator exited: {self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", verify=_verify(ca), timeout=2).status_code == 200:
                    return self.url
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(f"evaluator did not answer: {self.log.read_text()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _verify(ca: str | None) -> ssl.SSLContext | bool:
    return ssl.create_default_context(cafile=ca) if ca else False


def alert(name: str = "ssh-deny", **spec_changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "description": "ssh denied from ${source_namespace}/${source_name_aggr}: ${sum}",
        "severity": 80,
        "dataSet": "flows",
        "period": "5m",
        "lookback": "15m",
        "query": "action=deny AND dest_port=22",
        "aggregateBy": ["source_namespace", "source_name_aggr"],
        "field": "num_flows",
        "metric": "sum",
        "condition": "gt",
        "threshold": 0,
    }
    spec.update(spec_changes)
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalAlert", "metadata": {"name": name}, "spec": spec}


TEMPLATE_NAMES = [
    "policy.pod",
    "policy.globalnetworkpolicy",
    "policy.globalnetworkset",
    "policy.serviceaccount",
    "network.cloudapi",
    "network.ssh",
    "network.lateral.access",
    "network.lateral.originate",
    "dns.servfail",
    "dns.dos",
]


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key
