"""policywatch-evaluator settings: environment, flags over environment, clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.app import create_app
from api.server import build_parser, main, settings_from_args
from api.settings import Settings
from evaluator.engine.config import EngineSettings


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


def test_engine_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLICYWATCH_ALERTMANAGER_URL", "http://from-env:9093")
    monkeypatch.setenv("POLICYWATCH_SCHEDULER_ENABLED", "true")
    settings = settings_from_args(build_parser().parse_args([]))
    assert isinstance(settings, EngineSettings)
    assert (settings.alertmanager_url, settings.scheduler_enabled, settings.log_store) == (
        "http://from-env:9093",
        True,
        "sql",
    )
    args = [
        "--alertmanager-url=http://am:9093",
        "--no-scheduler",
        "--log-store=opensearch",
        "--event-store=opensearch",
        "--opensearch-url=https://os:9200",
    ]
    settings = settings_from_args(build_parser().parse_args(args))
    assert settings.alertmanager_url == "http://am:9093"
    assert settings.scheduler_enabled is False
    assert (settings.log_store, settings.event_store, settings.opensearch_url) == (
        "opensearch",
        "opensearch",
        "https://os:9200",
    )
    assert settings_from_args(build_parser().parse_args(["--scheduler"])).scheduler_enabled is True


def test_bad_engine_flags_exit_non_zero_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--log-store", "elasticsearch"])
    assert exit_.value.code == 2
    assert "argument --log-store: invalid choice: 'elasticsearch'" in capsys.readouterr().err
    assert main(["--alertmanager-url", "alertmanager:9093"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must start with http:// or https://" in err
    assert main(["--event-store", "opensearch"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs POLICYWATCH_OPENSEARCH_URL (--opensearch-url)" in err


def test_the_app_engine_runs_on_the_process_settings(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path}/x.db", alertmanager_url="http://am:9093", scheduler_enabled=False
    )
    app = create_app(settings)
    runtime = app.state.services.runtime
    assert runtime.settings is settings
    assert runtime.scheduler not in runtime.services()
