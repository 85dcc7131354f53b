"""Shared fixtures: real PostgreSQL, Prometheus, Alertmanager and network namespaces, always cleaned up.

Markers (see pyproject): ``root`` tests skip, printing why, only where namespaces/BPF truly cannot be used.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import pytest
from fastapi.testclient import TestClient

from api.db import migrate
from devstack.netns import Netns, netns_support
from devstack.services import AlertmanagerServer, PostgresServer, PrometheusServer, WebhookReceiver
from tests.api.support import EvaluatorProcess, make_client
from tests.fixtures.kube import KubeCluster, KubeTestApiserver, env_kubeconfig

REPO_ROOT = Path(__file__).resolve().parent.parent


@cache
def _netns_unavailable_reason() -> str | None:
    return netns_support()


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None:
        reason = _netns_unavailable_reason()
        if reason is not None:
            pytest.skip(f"root/netns test: {reason}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL cluster for the whole run (initdb in a temp dir, loopback, free port)."""
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    """One real kube-apiserver (+ etcd) for the whole run, or ``POLICYWATCH_TEST_KUBECONFIG``'s cluster."""
    configured = env_kubeconfig()
    if configured is not None:
        yield KubeCluster(configured)
        return
    reason = KubeTestApiserver.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    server = KubeTestApiserver()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL of a database shared by the session (create your own tables/schemas in it)."""
    return postgres_server.create_database("policywatch_session")


@pytest.fixture
def pg_database(postgres_server: PostgresServer) -> str:
    """SQLAlchemy URL of a fresh, empty database for one test."""
    return postgres_server.create_database(f"t_{secrets.token_hex(6)}")


_Server = TypeVar("_Server", PrometheusServer, AlertmanagerServer)


def _server_factory(kind: type[_Server]) -> Iterator[Callable[..., _Server]]:
    """Yield ``start(config, **kwargs)`` for ``kind``; every server it started is stopped afterwards."""
    started: list[_Server] = []

    def start(config: Mapping[str, Any] | str, **kwargs: Any) -> _Server:
        server = kind(config, **kwargs)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def prometheus() -> Iterator[Callable[..., PrometheusServer]]:
    """Factory: ``prometheus(config, rule_files=[...])`` starts Debian's Prometheus; all are stopped after."""
    yield from _server_factory(PrometheusServer)


@pytest.fixture
def alertmanager() -> Iterator[Callable[..., AlertmanagerServer]]:
    """Factory: ``alertmanager(config)`` starts Debian's Alertmanager; all are stopped after."""
    yield from _server_factory(AlertmanagerServer)


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    """An Alertmanager webhook receiver on loopback (``webhook.url``, ``webhook.alerts(status)``); stopped after."""
    receiver = WebhookReceiver().start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture
def netns() -> Iterator[Netns]:
    """Namespaces, veths, nft tables and processes made through it are removed after the test, pass or fail."""
    reason = _netns_unavailable_reason()
    if reason is not None:
        pytest.skip(f"netns fixture: {reason}")
    made = Netns()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def evaluator(tmp_path: Path) -> Iterator[EvaluatorProcess]:
    process = EvaluatorProcess(tmp_path)
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database: SQLite, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'policywatch.db'}"
    else:
        url = str(request.getfixturevalue("pg_database"))
    migrate(url)
    return url


@pytest.fixture
def client(db_url: str) -> Iterator[TestClient]:
    with make_client(db_url) as test_client:
        yield test_client
