"""Flags and Felix's environment names."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.cli import main
from collector.config import ConfigError, parse_config


def test_defaults() -> None:
    c = parse_config([], {})
    assert (c.port, c.ttl, c.mark_mask, c.map_size, c.max_series, c.drain_interval) == (
        9081,
        60,
        0x3FFF,
        16384,
        10000,
        1,
    )
    assert c.enabled and c.tls is None
    # the default mask avoids kube-proxy's 0x4000/0x8000 and Calico's 0xffff0000
    assert c.mark_mask & (0x4000 | 0x8000 | 0xFFFF0000) == 0


def test_flags() -> None:
    c = parse_config(
        [
            "--port",
            "9999",
            "--ttl",
            "5",
            "--mark-mask",
            "0xff00",
            "--map-size",
            "16",
            "--max-series",
            "3",
            "--drain-interval",
            "0.5",
        ],
        {},
    )
    assert (c.port, c.ttl, c.mark_mask, c.map_size, c.max_series, c.drain_interval) == (9999, 5, 0xFF00, 16, 3, 0.5)


def test_felix_env_and_flag_precedence(tmp_path: Path) -> None:
    cert, key, ca = (tmp_path / n for n in ("c.pem", "k.pem", "ca.pem"))
    for f in (cert, key, ca):
        f.write_text("x")
    env = {
        "FELIX_PROMETHEUSREPORTERPORT": "9555",
        "FELIX_PROMETHEUSREPORTERCERTFILE": str(cert),
        "FELIX_PROMETHEUSREPORTERKEYFILE": str(key),
        "FELIX_PROMETHEUSREPORTERCAFILE": str(ca),
        "FELIX_PROMETHEUSREPORTERENABLED": "true",
    }
    c = parse_config([], env)
    assert c.port == 9555 and c.tls is not None and (c.tls.cert, c.tls.key, c.tls.ca) == (cert, key, ca)
    assert parse_config(["--port", "9081"], env).port == 9081
    assert not parse_config([], {"FELIX_PROMETHEUSREPORTERENABLED": "false"}).enabled


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "0"], {}, "--port: 0 is out of range"),
        (["--port", "http"], {}, "--port: 'http' is not a port number"),
        ([], {"FELIX_PROMETHEUSREPORTERPORT": "70000"}, "FELIX_PROMETHEUSREPORTERPORT: 70000 is out of range"),
        (["--ttl", "-1"], {}, "--ttl: '-1' must be a positive"),
        (["--ttl", "nan"], {}, "--ttl: 'nan' must be a positive"),
        (["--mark-mask", "0x0"], {}, "--mark-mask: '0x0' must be a non-zero 32-bit mask"),
        (["--mark-mask", "0x1ffffffff"], {}, "non-zero 32-bit"),
        (["--mark-mask", "ff!"], {}, "not hexadecimal"),
        (["--map-size", "0"], {}, "--map-size: 0 is out of range"),
        (["--max-series", "many"], {}, "--max-series: 'many' is not an integer"),
        (["--drain-interval", "90"], {}, "longer than --ttl"),
        (["--tls-cert", "/nonexistent.pem"], {}, "--tls-cert: '/nonexistent.pem' is not a readable file"),
        ([], {"FELIX_PROMETHEUSREPORTERENABLED": "maybe"}, "FELIX_PROMETHEUSREPORTERENABLED: 'maybe' is not a boolean"),
        (["--bogus"], {}, "unrecognized arguments: --bogus"),
    ],
)
def test_bad_values_name_the_setting(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(argv, env)
    assert message in str(info.value)


def test_tls_needs_cert_and_key(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ConfigError, match="both a certificate and its key"):
        parse_config(["--tls-ca", str(ca)], {})


def test_main_prints_one_line_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--max-series", "-5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["policywatch-collector: error: --max-series: -5 is out of range; use 1-16777216"]


def test_disabled_reporter_exits_0(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FELIX_PROMETHEUSREPORTERENABLED", "false")
    assert main([]) == 0
    assert "disabled" in capsys.readouterr().err


def test_restart_and_attribution_flags() -> None:
    default = parse_config([], {})
    assert default.bpf_dir == Path("/sys/fs/bpf/policywatch")
    assert default.state_file == Path("/run/policywatch/collector-state.json")
    assert (default.export_unmarked, default.uninstall) == (False, False)
    config = parse_config(
        ["--export-unmarked", "--uninstall", "--bpf-dir", "/sys/fs/bpf/pw2", "--state-file", "/tmp/s.json"], {}
    )
    assert config.export_unmarked and config.uninstall
    assert (config.bpf_dir, config.state_file) == (Path("/sys/fs/bpf/pw2"), Path("/tmp/s.json"))
    for bad in ("relative/dir", "/sys"):
        with pytest.raises(ConfigError, match="--bpf-dir: .* must be a directory inside a bpffs mount"):
            parse_config(["--bpf-dir", bad], {})


def test_flow_logs_off_by_default_and_on_with_a_url(tmp_path: Path) -> None:
    assert parse_config([], {}).flow_logs is None
    token = tmp_path / "token"
    token.write_text("secret\n")
    c = parse_config(
        ["--flow-logs", "--flow-logs-url", "http://ev:8080", "--flow-logs-token-file", str(token)], {}
    ).flow_logs
    assert c is not None and (c.url, c.flush_interval, c.token_file) == ("http://ev:8080", 15.0, token)
    env = {"POLICYWATCH_FLOW_LOGS": "true", "POLICYWATCH_FLOW_LOGS_URL": "https://os:9200"}
    c = parse_config([], {**env, "FELIX_FLOWLOGSFLUSHINTERVAL": "5"}).flow_logs
    assert c is not None and (c.url, c.flush_interval) == ("https://os:9200", 5.0)
    c = parse_config(["--flow-logs-flush-interval", "2"], {**env, "FELIX_FLOWLOGSFLUSHINTERVAL": "5"}).flow_logs
    assert c is not None and c.flush_interval == 2.0  # the flag wins


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--flow-logs"], "--flow-logs needs --flow-logs-url"),
        (["--flow-logs", "--flow-logs-url", "ev:8080"], "must be an http:// or https:// URL"),
        (
            ["--flow-logs", "--flow-logs-url", "http://e", "--flow-logs-flush-interval", "0"],
            "--flow-logs-flush-interval",
        ),
        (["--flow-logs", "--flow-logs-url", "http://e", "--flow-logs-token-file", "/nonexistent"], "not a readable"),
        (["--flow-logs", "--flow-logs-url", "http://e", "--flow-map-size", "0"], "--flow-map-size"),
    ],
)
def test_flow_logs_bad_values_name_the_flag(argv: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(argv, {})
