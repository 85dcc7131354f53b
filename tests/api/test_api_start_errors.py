"""Errors a person can act on (issue 17.7): bad TLS files and addresses are one line before anything
starts, a read-only SQLite database is refused at start, ``policywatchctl --ca-file`` names the file, and
503s ask to retry later without naming the database's host or user."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url

from api.app import create_app
from api.ctl.main import main as ctl_main
from api.db import migrate
from api.server import main as server_main
from api.settings import Settings
from tests.api.support import no_services


def _pair(directory: Path, name: str) -> tuple[Path, Path]:
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={name}"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_bad_tls_files_are_one_line_before_anything_starts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert_a, key_a = _pair(tmp_path, "a")
    _cert_b, key_b = _pair(tmp_path, "b")
    junk = tmp_path / "junk.pem"
    junk.write_text("not pem\n")
    database = tmp_path / "never.db"
    cases = [
        (cert_a, key_b, "is not the private key of certificate"),
        (junk, key_a, "is not a PEM certificate"),
        (cert_a, junk, "is not a PEM private key"),
        (key_a, cert_a, "is not a PEM certificate"),
    ]
    for cert, key, expected in cases:
        argv = ["--tls-cert-file", str(cert), "--tls-key-file", str(key), "--database-url", f"sqlite:///{database}"]
        assert server_main(argv) == 2
        line = _one_line(capsys)
        assert expected in line and line.startswith("policywatch-evaluator: ")
    assert not database.exists()  # checked before migrating


def test_bracketed_ipv6_host_is_accepted_and_unresolvable_names_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert Settings(host="[::1]").host == "::1"
    assert Settings(host=" 127.0.0.1 ").host == "127.0.0.1"
    database = tmp_path / "x.db"
    tokens = {"POLICYWATCH_WRITE_TOKENS": "w" * 24}
    with pytest.MonkeyPatch.context() as env:
        for name, value in tokens.items():
            env.setenv(name, value)
        assert server_main(["--host", "no-such-host.invalid", "--database-url", f"sqlite:///{database}"]) == 2
    assert not database.exists()
    assert "cannot listen on 'no-such-host.invalid'" in _one_line(capsys)


def test_read_only_sqlite_is_refused_at_start(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ro.db"
    migrate(f"sqlite:///{path}")
    assert server_main(["--database-url", f"sqlite:///file:{path}?mode=ro&uri=true"]) == 1
    assert "is read-only for this process" in _one_line(capsys)


def test_ctl_missing_or_bad_ca_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("not pem\n")
    for ca, expected in ((tmp_path / "missing.pem", "no such file"), (junk, "not a PEM CA bundle")):
        with pytest.raises(SystemExit) as exited:
            ctl_main(["get", "globalalerts", "--ca-file", str(ca)])
        message = str(exited.value.code)
        assert message.startswith(f"policywatchctl: --ca-file {ca}: ") and expected in message
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.postgres
def test_log_store_503s_have_retry_after_and_no_database_host_or_user(
    sqlite_url: str, postgres_server: object, pg_database: str
) -> None:
    # A real PostgreSQL that refuses the log store's role: the driver's message names host, port and role.
    real = make_url(pg_database)
    logs = real.set(username="secret_role_x", password="pw").render_as_string(hide_password=False)
    app = create_app(
        Settings(database_url=sqlite_url, log_database_url=logs),
        registry=CollectorRegistry(),
        service_factory=no_services,
    )
    alert = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalAlert",
        "metadata": {"name": "a"},
        "spec": {"severity": 50, "dataSet": "flows", "description": "d", "query": "action=deny", "period": "5m"},
    }
    with TestClient(app) as client:
        for response in (
            client.post("/datasets/flows/_bulk", content='{"end_time": 1700000000, "action": "deny"}\n'),
            client.post("/globalalerts/test", json=alert),
        ):
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "5"
            message = response.json()["message"]
            for secret in ("secret_role_x", str(real.host), str(real.port)):
                assert secret not in message, message
