"""policywatch-evaluator settings: environment, flags over environment, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.server import build_parser, main, settings_from_args


def test_environment_then_flags(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("POLICYWATCH_DATABASE_URL", "sqlite:///from-env.db")
    monkeypatch.setenv("POLICYWATCH_PORT", "9999")
    settings = settings_from_args(build_parser().parse_args([]))
    assert (settings.database_url, settings.port, settings.host) == ("sqlite:///from-env.db", 9999, "127.0.0.1")
    settings = settings_from_args(build_parser().parse_args(["--database-url", "sqlite:///flag.db", "--port", "81"]))
    assert (settings.database_url, settings.port) == ("sqlite:///flag.db", 81)
    assert settings_from_args(build_parser().parse_args(["--no-migrate"])).migrate is False


def test_bad_settings_exit_2_with_the_reason(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--host", "0.0.0.0", "--database-url", f"sqlite:///{tmp_path}/x.db"]) == 2
    assert "refusing to listen on 0.0.0.0" in capsys.readouterr().err
    assert main(["--port", "70000"]) == 2
    assert "port" in capsys.readouterr().err
    assert main(["--tls-cert-file", str(tmp_path / "c.pem")]) == 2
    assert "TLS needs both" in capsys.readouterr().err
