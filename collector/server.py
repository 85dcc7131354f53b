"""HTTP(S) endpoint: ``/metrics`` (denied packets) and ``/collector/metrics`` (collector health)."""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
# Accept header -> (body, content type)
Render = Callable[[str], tuple[bytes, str]]


def negotiated(registry: CollectorRegistry) -> Render:
    """prometheus_client's own encoders (text or OpenMetrics, as the scraper asks)."""

    def render(accept: str) -> tuple[bytes, str]:
        encoder, content_type = choose_encoder(accept)
        return encoder(registry), content_type

    return render


def plain_text(render_text: Callable[[], bytes]) -> Render:
    return lambda _accept: (render_text(), TEXT_FORMAT)


HEALTH_PATH = "/collector/metrics"


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path | None = None  # with a CA, clients must present a certificate it signed


def tls_context(files: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile=str(files.cert), keyfile=str(files.key))
    if files.ca is not None:
        context.load_verify_locations(cafile=str(files.ca))
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    address_family = socket.AF_INET
    routes: Mapping[str, Render] = {}
    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[socket.socket, object]:
        sock, addr = self.socket.accept()
        if self.tls is not None:
            sock.settimeout(10)
            # The handshake happens in the handler thread, so one slow or bad client cannot stall accept().
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS handshake with %s refused: %s", self.client_address[0], exc)
                self.close_connection = True
                raise ConnectionAbortedError from exc

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionAbortedError, ssl.SSLError, ConnectionResetError, TimeoutError):
            pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        render = self.server.routes.get(path)
        if render is None:
            body = f"not found: {path}; metrics are at {METRICS_PATH} and {HEALTH_PATH}\n".encode()
            self._reply(404, "text/plain; charset=utf-8", body)
            return
        try:
            body, content_type = render(self.headers.get("Accept", ""))
        except Exception:  # a broken collector must not take the endpoint down
            log.exception("building %s failed", path)
            self._reply(500, "text/plain; charset=utf-8", b"internal error building metrics\n")
            return
        self._reply(200, content_type, body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def _reply(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s " + format, self.client_address[0], *args)


class MetricsServer:
    """Binds at construction (so a busy port fails early), serves in a background thread after ``start()``."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        metrics: Render,
        health: Render,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        server_cls = type("_BoundServer", (_Server,), {"address_family": _family(host)})
        self._server: _Server = server_cls((host, port), _Handler)
        self._server.routes = {METRICS_PATH: metrics, HEALTH_PATH: health}
        self._server.tls = tls
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
