"""Fixtures of the API tests: a migrated database (SQLite file, or a fresh real PostgreSQL database) and
an app/client over it with its own Prometheus registry and no background services."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from api.app import Service, create_app
from api.db import make_engine, migrate
from api.deps import Services
from api.settings import Settings
from tests.fixtures.services import free_port


def no_services(_services: Services) -> list[Service]:
    return []


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'policywatch.db'}"
    migrate(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database: SQLite, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'policywatch.db'}"
    else:
        url = str(request.getfixturevalue("pg_database"))
    migrate(url)
    return url


def make_client(url: str, **settings: object) -> TestClient:
    app = create_app(
        Settings(database_url=url, **settings),
        registry=CollectorRegistry(),
        service_factory=no_services,
    )
    return TestClient(app)


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with make_client(db_url) as test_client:
        yield test_client


@pytest.fixture
def sqlite_client(sqlite_url: str) -> Iterator[TestClient]:
    with make_client(sqlite_url) as test_client:
        yield test_client


@pytest.fixture
def engine_for(db_url: str) -> Iterator[object]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


class EvaluatorProcess:
    """``policywatch-evaluator`` in a subprocess on a free loopback port; always stopped."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.process: subprocess.Popen[bytes] | None = None
        self.log = tmp_path / "evaluator.log"
        self.url = ""

    def start(self, *args: str, env: dict[str, str] | None = None, scheme: str = "http", ca: str | None = None) -> str:
        port = free_port()
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


@pytest.fixture
def evaluator(tmp_path: Path) -> Iterator[EvaluatorProcess]:
    process = EvaluatorProcess(tmp_path)
    try:
        yield process
    finally:
        process.stop()
