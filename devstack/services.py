"""Throwaway real servers for the demo, the tests and the benchmarks: PostgreSQL, Prometheus and Alertmanager.

Each is Debian's own binary, started on a free loopback port with data in a temporary directory, and always
stopped (``stop()`` is idempotent; the pytest fixtures call it in ``finally``). Plain classes, so that the demo
can reuse them outside pytest.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``url``; returns (status, body) for any HTTP answer, raises OSError when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # loopback test URLs only
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_until(predicate: Any, *, timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as err:  # retried until the deadline, reported then
            last_error = err
        time.sleep(interval)
    detail = f" (last error: {last_error})" if last_error else ""
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


def dies_with_parent(argv: Sequence[str]) -> list[str]:
    """``argv`` run so that it gets SIGTERM when this process dies, however it dies (SIGKILL too): util-linux's
    ``setpriv --pdeathsig`` sets the parent-death signal, which ``execve`` keeps. Without it a killed demo or
    test run would leave its services running, as each runs in a session of its own."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--", *argv] if setpriv else list(argv)


class ManagedProcess:
    """A child process with its output in a log file, stopped with SIGTERM then SIGKILL, and sent SIGTERM if
    this process dies first (``dies_with_parent``). Start it from the main thread: the kernel sends that
    signal when the thread that started it ends."""

    def __init__(self, argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # closed in stop()
        self.proc = subprocess.Popen(
            dies_with_parent(self.argv),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=timeout)
        self._log.close()


def _wait_http_ready(process: ManagedProcess, url: str, *, timeout: float, name: str) -> None:
    def ready() -> bool:
        if not process.alive():
            raise RuntimeError(f"{name} exited with {process.proc.returncode}:\n{process.log_tail()}")
        try:
            status, _ = http_get(url, timeout=1.0)
        except OSError:
            return False
        return status == 200

    try:
        wait_until(ready, timeout=timeout, what=f"{name} at {url}")
    except TimeoutError as err:
        raise TimeoutError(f"{err}\n{process.log_tail()}") from None


class EvaluatorServer:
    """``policywatch-evaluator`` (``python -m api.server``) on a free loopback port over ``database_url``, for
    benchmarks: started by the constructor, ready once ``/healthz`` answers, always stopped with ``stop()``."""

    def __init__(
        self, database_url: str, *, log_path: Path, args: Sequence[str] = (), env: Mapping[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        argv = [sys.executable, "-m", "api.server", "--port", str(self.port), "--database-url", database_url, *args]
        self.process = ManagedProcess(argv, log_path=log_path, env={**os.environ, **(env or {})})
        try:
            _wait_http_ready(self.process, f"{self.url}/healthz", timeout=60, name="policywatch-evaluator")
        except BaseException:
            self.process.stop()
            raise

    def stop(self) -> None:
        self.process.stop(timeout=15)


def _postgres_bindir() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not candidates:
        raise FileNotFoundError("PostgreSQL server binaries not found under /usr/lib/postgresql; run scripts/setup")
    return candidates[-1].parent


class PostgresServer:
    """A PostgreSQL cluster made with initdb in a temporary directory, listening on loopback only.

    As root the server runs as the ``postgres`` system user (initdb refuses root).
    """

    def __init__(self, *, workdir: Path | None = None, port: int | None = None) -> None:
        self.bindir = _postgres_bindir()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="pwt-pg-"))
        self.datadir = self.workdir / "data"
        self.port = port or free_port()
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.process: ManagedProcess | None = None

    def _as_user(self, argv: Sequence[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", self.user, "--", *argv]
        return list(argv)

    def start(self, timeout: float = 60.0) -> PostgresServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.workdir, user=self.user)
            os.chmod(self.workdir, 0o700)
        subprocess.run(
            self._as_user(
                [str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", "postgres", "-A", "trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        argv = self._as_user(
            [
                str(self.bindir / "postgres"),
                "-D",
                str(self.datadir),
                "-p",
                str(self.port),
                "-k",
                str(self.workdir),
                "-c",
                f"listen_addresses={LOOPBACK}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ]
        )
        self.process = ManagedProcess(argv, log_path=self.workdir / "postgres.log")

        def accepting() -> bool:
            assert self.process is not None
            if not self.process.alive():
                raise RuntimeError(f"postgres exited:\n{self.process.log_tail()}")
            probe = subprocess.run(
                [str(self.bindir / "pg_isready"), "-h", LOOPBACK, "-p", str(self.port), "-U", "postgres"],
                capture_output=True,
            )
            return probe.returncode == 0

        wait_until(accepting, timeout=timeout, what=f"PostgreSQL on port {self.port}")
        return self

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3 driver) of ``database``."""
        return f"postgresql+psycopg://postgres@{LOOPBACK}:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                str(self.bindir / "psql") if (self.bindir / "psql").exists() else "psql",
                "-h",
                LOOPBACK,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-tAX",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return result.stdout.strip()

    def create_database(self, name: str) -> str:
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: use letters, digits and '_' only")
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
        shutil.rmtree(self.workdir, ignore_errors=True)


class PrometheusServer:
    """Debian's Prometheus with a given configuration (dict or YAML text) and optional rule files."""

    binary = "/usr/bin/prometheus"

    def __init__(
        self,
        config: Mapping[str, Any] | str,
        *,
        rule_files: Sequence[Path] = (),
        workdir: Path | None = None,
        port: int | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="pwt-prom-"))
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        cfg: dict[str, Any] = yaml.safe_load(config) if isinstance(config, str) else dict(config)
        if rule_files:
            cfg["rule_files"] = [str(Path(p).resolve()) for p in rule_files]
        self.config_path = self.workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        self.extra_args = list(extra_args)
        self.process: ManagedProcess | None = None

    def start(self, timeout: float = 60.0) -> PrometheusServer:
        argv = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--web.enable-lifecycle",
            *self.extra_args,
        ]
        self.process = ManagedProcess(argv, log_path=self.workdir / "prometheus.log")
        _wait_http_ready(self.process, f"{self.url}/-/ready", timeout=timeout, name="Prometheus")
        return self

    def api(self, path: str, **params: str) -> Any:
        """GET an /api/v1 endpoint and return its ``data``; raises on a non-success answer."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        status, body = http_get(f"{self.url}/api/v1/{path}{query}")
        doc = json.loads(body)
        if status != 200 or doc.get("status") != "success":
            raise RuntimeError(f"Prometheus /api/v1/{path} answered {status}: {doc}")
        return doc["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        data = self.api("query", query=promql)
        result: list[dict[str, Any]] = data["result"]
        return result

    def targets_up(self) -> dict[str, str]:
        """scrape URL -> health ("up", "down", "unknown") of every active target."""
        return {t["scrapeUrl"]: t["health"] for t in self.api("targets")["activeTargets"]}

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
        shutil.rmtree(self.workdir, ignore_errors=True)


class AlertmanagerServer:
    """Debian's Alertmanager with a given configuration, clustering off, on loopback."""

    binary = "/usr/bin/prometheus-alertmanager"

    def __init__(
        self, config: Mapping[str, Any] | str, *, workdir: Path | None = None, port: int | None = None
    ) -> None:
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="pwt-am-"))
        self.port = port or free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        text = config if isinstance(config, str) else yaml.safe_dump(dict(config), sort_keys=False)
        self.config_path = self.workdir / "alertmanager.yml"
        self.config_path.write_text(text)
        self.process: ManagedProcess | None = None

    def start(self, timeout: float = 60.0) -> AlertmanagerServer:
        argv = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address={LOOPBACK}:{self.port}",
            "--cluster.listen-address=",
        ]
        self.process = ManagedProcess(argv, log_path=self.workdir / "alertmanager.log")
        _wait_http_ready(self.process, f"{self.url}/-/ready", timeout=timeout, name="Alertmanager")
        return self

    def alerts(self) -> list[dict[str, Any]]:
        status, body = http_get(f"{self.url}/api/v2/alerts")
        if status != 200:
            raise RuntimeError(f"Alertmanager /api/v2/alerts answered {status}: {body[:200]!r}")
        result: list[dict[str, Any]] = json.loads(body)
        return result

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
        shutil.rmtree(self.workdir, ignore_errors=True)


WEBHOOK_MAX_BODY = 1024 * 1024


class WebhookReceiver:
    """An Alertmanager webhook receiver on loopback that keeps every JSON notification POSTed to it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                if length > WEBHOOK_MAX_BODY:
                    self.send_error(413, "body too large")
                    return
                try:
                    doc = json.loads(self.rfile.read(length))
                except ValueError:
                    self.send_error(400, "body is not JSON")
                    return
                if isinstance(doc, dict):
                    with receiver._lock:
                        receiver.notifications.append(doc)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # base class signature
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook", daemon=True)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def alerts(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every alert of every notification received so far, oldest first; only ``status`` ones if given."""
        with self._lock:
            alerts = [alert for doc in self.notifications for alert in doc.get("alerts", [])]
        return [a for a in alerts if status is None or a.get("status") == status]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
