"""The HTTP(S) endpoint: routes, TLS, and client-certificate checks, with certificates made by openssl."""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Gauge

from collector.exporter import denied_registry, render_text
from collector.series import SeriesStore
from collector.server import MetricsServer, TlsFiles, negotiated, plain_text, tls_context


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client", "stranger"):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={name}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=d,
        )
    for name in ("server", "client"):
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san.ext",
            "-out",
            f"{name}.pem",
            cwd=d,
        )
    # signed by itself, not by the CA
    openssl(
        "x509", "-req", "-in", "stranger.csr", "-signkey", "stranger.key", "-days", "1", "-out", "stranger.pem", cwd=d
    )
    return d


def make_server(tls: ssl.SSLContext | None = None) -> MetricsServer:
    store = SeriesStore(ttl=60, max_series=10)
    store.add(policy="p", src_ip="10.1.1.1", packets=2, nbytes=120)
    health = CollectorRegistry()
    Gauge("policywatch_collector_series", "series", registry=health).set(1)
    server = MetricsServer(
        host="127.0.0.1",
        port=0,
        metrics=plain_text(lambda: render_text(denied_registry(store))),
        health=negotiated(health),
        tls=tls,
    )
    server.start()
    return server


@pytest.fixture
def plain() -> Iterator[MetricsServer]:
    server = make_server()
    yield server
    server.stop()


def test_routes_keep_health_out_of_metrics(plain: MetricsServer) -> None:
    base = f"http://127.0.0.1:{plain.port}"
    metrics = httpx.get(f"{base}/metrics")
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'calico_denied_packets{policy="p",srcIP="10.1.1.1"} 2' in metrics.text
    assert "policywatch_collector" not in metrics.text
    health = httpx.get(f"{base}/collector/metrics")
    assert health.status_code == 200 and "policywatch_collector_series 1.0" in health.text
    assert "calico_denied" not in health.text
    missing = httpx.get(f"{base}/nope")
    assert missing.status_code == 404 and "/metrics" in missing.text


def test_port_in_use_fails_at_construction(plain: MetricsServer) -> None:
    with pytest.raises(OSError) as info:
        MetricsServer(
            host="127.0.0.1", port=plain.port, metrics=plain_text(lambda: b""), health=plain_text(lambda: b"")
        )
    assert info.value.errno is not None


def test_tls_with_client_certificates(pki: Path) -> None:
    server = make_server(tls_context(TlsFiles(cert=pki / "server.pem", key=pki / "server.key", ca=pki / "ca.pem")))
    url = f"https://127.0.0.1:{server.port}/metrics"
    try:
        ok = httpx.get(url, verify=_client_ctx(pki, "client"))
        assert ok.status_code == 200 and "calico_denied_packets" in ok.text
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            httpx.get(url, verify=_client_ctx(pki, None))  # no client certificate
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            httpx.get(url, verify=_client_ctx(pki, "stranger"))  # certificate the CA did not sign
        with pytest.raises(httpx.RemoteProtocolError):
            httpx.get(f"http://127.0.0.1:{server.port}/metrics")  # plain HTTP to a TLS port
        # the server still serves after the refused clients
        assert httpx.get(url, verify=_client_ctx(pki, "client")).status_code == 200
    finally:
        server.stop()


def test_tls_without_ca_accepts_any_client(pki: Path) -> None:
    server = make_server(tls_context(TlsFiles(cert=pki / "server.pem", key=pki / "server.key")))
    try:
        assert httpx.get(f"https://127.0.0.1:{server.port}/metrics", verify=_client_ctx(pki, None)).status_code == 200
    finally:
        server.stop()


def test_bad_key_file_is_an_ssl_error(pki: Path) -> None:
    with pytest.raises(ssl.SSLError):
        tls_context(TlsFiles(cert=pki / "server.pem", key=pki / "client.key"))


def test_garbage_request_does_not_kill_the_server(plain: MetricsServer) -> None:
    with socket.create_connection(("127.0.0.1", plain.port), timeout=5) as s:
        s.sendall(b"\x00\x01garbage\r\n\r\n")
        s.recv(1024)
    assert httpx.get(f"http://127.0.0.1:{plain.port}/metrics").status_code == 200


def _client_ctx(pki: Path, name: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    if name is not None:
        ctx.load_cert_chain(str(pki / f"{name}.pem"), str(pki / f"{name}.key"))
    return ctx
