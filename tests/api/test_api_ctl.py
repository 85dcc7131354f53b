"""policywatchctl end to end against a running policywatch-evaluator (subprocess on loopback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from api.ctl.main import main as ctl
from api.ctl.resources import UsageError, resource_type
from tests.api.support import TEMPLATE_NAMES, EvaluatorProcess, self_signed

ALERTS_YAML = """
apiVersion: projectcalico.org/v3
kind: GlobalAlert
metadata:
  name: ssh-deny
spec:
  description: "ssh denied from ${source_namespace}: ${sum}"
  severity: 80
  dataSet: flows
  lookback: 15m
  query: action=deny AND dest_port=22
  aggregateBy: [source_namespace]
  field: num_flows
  metric: sum
  condition: gt
  threshold: 0
---
apiVersion: projectcalico.org/v3
kind: GlobalAlert
metadata:
  name: dns-servfail
spec:
  description: "SERVFAIL for ${client_namespace}"
  severity: 30
  dataSet: dns
  query: rcode = SERVFAIL
  aggregateBy: [client_namespace]
"""

BAD_YAML = """
apiVersion: projectcalico.org/v3
kind: GlobalAlert
metadata:
  name: bad
spec:
  description: "x"
  severity: 500
  dataSet: flows
  query: rtype = A
"""


@pytest.mark.parametrize(
    "alias",
    ["globalalert", "globalalerts", "GlobalAlerts", "globalalert.projectcalico.org", "globalalerts.projectcalico.org",
     "globalalert.p", "globalalerts.p", "GLOBALALERT.P"],
)  # fmt: skip
def test_aliases(alias: str) -> None:
    assert resource_type(alias).kind == "GlobalAlert"
    assert resource_type(alias.lower().replace("alert", "alerttemplate", 1)).kind == "GlobalAlertTemplate"


@pytest.mark.parametrize("alias", ["globalalertz", "globalalert.x", "alerts", "globalalert.projectcalico.org.x"])
def test_bad_aliases(alias: str) -> None:
    with pytest.raises(UsageError, match="unknown resource type"):
        resource_type(alias)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = ctl(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_end_to_end(evaluator: EvaluatorProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = evaluator.start()
    conn = ["--server", server]
    alerts = tmp_path / "alerts.yaml"
    alerts.write_text(ALERTS_YAML)

    code, out, err = run(capsys, "create", "-f", str(alerts), *conn)
    assert code == 0, err
    assert 'Successfully created GlobalAlert "ssh-deny"' in out and 'GlobalAlert "dns-servfail"' in out
    assert "Warning" not in err  # the default period and lookback leave no gap for the default flush interval

    code, out, err = run(capsys, "create", "-f", str(alerts), *conn)
    assert code == 1 and "already exists" in err

    code, out, err = run(capsys, "get", "globalalerts", *conn)
    assert code == 0 and out.split() == ["NAME", "dns-servfail", "ssh-deny"]

    code, out, _ = run(capsys, "get", "globalalert.p", "-o", "wide", *conn)
    header, *rows = out.splitlines()
    assert header.split()[:4] == ["NAME", "DATASET", "SEVERITY", "PERIOD"] and "HEALTHY" in header
    assert rows[1].split()[:5] == ["ssh-deny", "flows", "80", "5m0s", "15m0s"] and "sum(num_flows)" in rows[1]

    code, out, _ = run(capsys, "get", "globalalert", "ssh-deny", "-o", "yaml", *conn)
    exported = yaml.safe_load(out)
    assert exported["kind"] == "GlobalAlert" and exported["metadata"]["resourceVersion"] == "1"

    code, out, _ = run(capsys, "get", "GlobalAlerts", "-o", "json", *conn)
    listed = json.loads(out)
    assert listed["kind"] == "GlobalAlertList" and len(listed["items"]) == 2

    # replace honours the resourceVersion in the file; apply takes the latest.
    exported["spec"]["severity"] = 81
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(exported))
    code, out, err = run(capsys, "replace", "-f", str(edited), *conn)
    assert code == 0 and 'Successfully replaced GlobalAlert "ssh-deny"' in out, err
    code, out, err = run(capsys, "replace", "-f", str(edited), *conn)
    # one global resourceVersion sequence: ssh-deny 1, dns-servfail 2, the replace 3
    assert code == 1 and "resourceVersion 1 is now 3" in err
    code, out, err = run(capsys, "apply", "-f", str(edited), *conn)
    assert code == 0 and 'Successfully configured GlobalAlert "ssh-deny"' in out, err

    # Invalid objects: every reason from the server, exit 1.
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_YAML)
    code, out, err = run(capsys, "apply", "-f", str(bad), *conn)
    assert code == 1
    assert "spec.severity: must be from 1 to 100 (value: 500)" in err
    assert "spec.query: unknown key 'rtype'" in err

    code, out, err = run(capsys, "delete", "globalalert", "dns-servfail", "nope", *conn)
    assert code == 1 and 'Successfully deleted GlobalAlert "dns-servfail"' in out and "not found" in err
    code, out, err = run(capsys, "delete", "-f", str(edited), *conn)
    assert code == 0
    code, out, err = run(capsys, "get", "globalalerts", *conn)
    assert (code, out, err) == (0, "", "No resources found.\n")  # kubectl's habit: no header line for nothing

    code, out, err = run(capsys, "load-templates", *conn)
    assert code == 0, err
    assert out.count("Successfully created GlobalAlertTemplate") == 10
    code, out, err = run(capsys, "load-templates", *conn)
    assert code == 0 and out.count("Successfully configured GlobalAlertTemplate") == 10
    code, out, _ = run(capsys, "get", "globalalerttemplates.projectcalico.org", *conn)
    assert sorted(out.split()[1:]) == sorted(TEMPLATE_NAMES)


def test_stdin_env_and_console_script(evaluator: EvaluatorProcess) -> None:
    server = evaluator.start()
    env = {**os.environ, "POLICYWATCH_SERVER": server}
    ctl_cmd = [sys.executable, "-m", "api.ctl.main"]
    result = subprocess.run(
        [*ctl_cmd, "apply", "-f", "-"], input=ALERTS_YAML, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    result = subprocess.run([*ctl_cmd, "get", "globalalerts"], env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["NAME", "dns-servfail", "ssh-deny"]
    unreachable = {**os.environ, "POLICYWATCH_SERVER": "http://127.0.0.1:9"}
    result = subprocess.run(
        [*ctl_cmd, "get", "globalalerts"], env=unreachable, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1 and "cannot reach the evaluator at http://127.0.0.1:9" in result.stderr


def test_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "get", "pods")
    assert code == 2 and "unknown resource type 'pods'" in err
    code, _, err = run(capsys, "apply", "-f", str(tmp_path / "absent.yaml"))
    assert code == 2 and "cannot read" in err
    broken = tmp_path / "broken.yaml"
    broken.write_text("a: [")
    code, _, err = run(capsys, "create", "-f", str(broken))
    assert code == 2 and "invalid YAML at line 1" in err
    code, _, err = run(capsys, "delete", "globalalert")
    assert code == 2 and "usage" in err


def test_tls_and_tokens(evaluator: EvaluatorProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cert, key = self_signed(tmp_path)
    tokens = tmp_path / "tokens"
    write, read = "w" * 24, "r" * 24
    tokens.write_text(f"write {write}\nread {read}\n")
    server = evaluator.start(
        "--tls-cert-file",
        str(cert),
        "--tls-key-file",
        str(key),
        "--token-file",
        str(tokens),
        scheme="https",
        ca=str(cert),
    )
    assert server.startswith("https://")
    alerts = tmp_path / "alerts.yaml"
    alerts.write_text(ALERTS_YAML)
    base = ["--server", server, "--ca-file", str(cert)]
    code, _, err = run(capsys, "apply", "-f", str(alerts), *base)
    assert code == 1 and "missing bearer token" in err
    code, _, err = run(capsys, "apply", "-f", str(alerts), *base, "--token", read)
    assert code == 1 and "needs a write token" in err
    code, out, err = run(capsys, "apply", "-f", str(alerts), *base, "--token", write)
    assert code == 0, err
    code, out, err = run(capsys, "get", "globalalerts", *base, "--token", read)
    assert code == 0 and out.split() == ["NAME", "dns-servfail", "ssh-deny"]
    code, _, err = run(capsys, "get", "globalalerts", "--server", server, "--token", read)
    assert code == 1 and "cannot reach the evaluator" in err and "CERTIFICATE_VERIFY_FAILED" in err


def test_server_refuses_unsafe_settings(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "api.server", "--host", "0.0.0.0", "--database-url", f"sqlite:///{tmp_path}/x.db"],
        capture_output=True, text=True, timeout=60, env={k: v for k, v in os.environ.items() if "TOKEN" not in k},
    )  # fmt: skip
    assert result.returncode == 2 and "refusing to listen on 0.0.0.0" in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "api.server", "--database-url", "postgresql+psycopg://u:secret@127.0.0.1:9/db"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1 and "cannot migrate" in result.stderr and "secret" not in result.stderr
