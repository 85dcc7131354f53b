"""policywatchctl against a real evaluator, the kubectl/calicoctl way: get events, -o name, -o jsonpath=,
apply -f DIR (-R), global flags before the command, a 404 without a header line, and create from a template."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

from api.ctl.events import since_time
from api.ctl.main import main as ctl
from api.ctl.output import OutputError, check_output, render_template
from evaluator.events import Event, SqlEventStore
from tests.api.support import EvaluatorProcess

NOW = datetime.now(UTC).replace(microsecond=0)


def alert(name: str, severity: int = 50, **spec: object) -> dict[str, object]:
    body = {"description": "denied ${source_namespace}", "severity": severity, "dataSet": "flows"}
    body.update({"query": "action = deny", "aggregateBy": ["source_namespace"], **spec})
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalAlert", "metadata": {"name": name}, "spec": body}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = ctl(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def server(evaluator: EvaluatorProcess) -> str:
    return evaluator.start()


def test_apply_a_directory_recursively_with_global_flags_first(
    server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "alerts"
    (root / "team").mkdir(parents=True)
    (root / "a.yaml").write_text(yaml.safe_dump(alert("a", 20)))
    (root / "team" / "b.yml").write_text(yaml.safe_dump(alert("b", 80)))
    (root / "team" / "c.json").write_text(json.dumps(alert("c", 90)))
    (root / "README.md").write_text("not an object")

    code, out, err = run(capsys, "--server", server, "apply", "-f", str(root))
    assert code == 0, err
    assert out.splitlines() == ['Successfully created GlobalAlert "a"']
    code, out, err = run(capsys, "--server", server, "apply", "-R", "-f", str(root))
    assert code == 0, err
    assert out.splitlines() == [
        'Successfully configured GlobalAlert "a"',
        'Successfully created GlobalAlert "b"',
        'Successfully created GlobalAlert "c"',
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "--server", server, "apply", "-f", str(empty))
    assert code == 2 and "no .yaml, .yml or .json files" in err

    code, out, _ = run(capsys, "--server", server, "get", "globalalerts", "-o", "name")
    assert out.splitlines() == [f"globalalert.projectcalico.org/{n}" for n in ("a", "b", "c")]
    path = "jsonpath={.items[?(@.spec.severity > 50)].metadata.name}"
    code, out, _ = run(capsys, "--server", server, "get", "globalalerts", "-o", path)
    assert (code, out) == (0, "b c")
    code, out, _ = run(capsys, "get", "globalalert", "b", "-o", 'jsonpath={.spec.severity}{"\\n"}', "--server", server)
    assert (code, out) == (0, "80\n")
    code, _, err = run(capsys, "--server", server, "get", "globalalerts", "-o", "jsonpath={range .items[*]}")
    assert code == 2 and "{range}...{end} is not supported" in err


def test_a_missing_object_prints_no_header(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--server", server, "get", "globalalert", "nope")
    assert code == 1 and out == ""
    assert 'Failed to get GlobalAlert "nope"' in err and "404" in err
    code, out, err = run(capsys, "--server", server, "get", "globalalerts")
    assert (code, out, err) == (0, "", "No resources found.\n")
    code, _, err = run(capsys, "--server", server, "get", "globalalerts", "--since", "1h")
    assert code == 2 and "--alert, --since and --dismissed filter events" in err


def test_get_events_filters_and_formats(
    server: str, evaluator: EvaluatorProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = sa.create_engine(f"sqlite:///{evaluator.tmp_path / 'server.db'}")
    store = SqlEventStore(engine)
    store.add(
        [
            Event(time=NOW - timedelta(hours=3), alert="a", description="old one", severity=20, record={}, key="1"),
            Event(NOW - timedelta(minutes=5), "a", "ssh from dev", 20, {"n": "dev"}, summary="ssh: dev", key="2"),
            Event(time=NOW - timedelta(minutes=1), alert="b", description="dns", severity=80, record={}, key="3"),
        ]
    )
    engine.dispose()

    code, out, err = run(capsys, "--server", server, "get", "events")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["TIME", "ALERT", "SEVERITY", "SUMMARY", "DISMISSED"]
    assert [line.split()[1] for line in lines[1:]] == ["b", "a", "a"]  # newest first
    assert "ssh: dev" in lines[2]

    code, out, _ = run(capsys, "--server", server, "get", "events", "--alert", "a", "--since", "1h", "-o", "json")
    body = json.loads(out)
    assert [e["summary"] for e in body["items"]] == ["ssh: dev"]
    code, out, _ = run(capsys, "--server", server, "get", "events", "--alert", "a", "-o", "yaml")
    assert [e["description"] for e in yaml.safe_load(out)["items"]] == ["ssh from dev", "old one"]
    code, out, _ = run(capsys, "--server", server, "get", "ev", "-o", "jsonpath={.items[*].alert}")
    assert out == "b a a"
    code, out, err = run(capsys, "--server", server, "get", "events", "--alert", "zzz")
    assert (code, out, err) == (0, "", "No events found.\n")
    code, _, err = run(capsys, "--server", server, "get", "events", "--since", "yesterday")
    assert code == 2 and "--since 'yesterday'" in err
    code, _, err = run(capsys, "--server", server, "get", "events", "-o", "name")
    assert code == 2 and "unknown output format 'name'" in err


def test_create_an_alert_from_a_template(server: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    template = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalAlertTemplate",
        "metadata": {"name": "ns.denied"},
        "spec": {
            "description": "denied in <namespace> from ${source_namespace}",
            "severity": 60,
            "dataSet": "flows",
            "query": "action = deny AND dest_namespace = <namespace>",
            "aggregateBy": ["source_namespace"],
        },
    }
    file = tmp_path / "template.yaml"
    file.write_text(yaml.safe_dump(template))
    assert run(capsys, "--server", server, "create", "-f", str(file))[0] == 0

    code, _, err = run(
        capsys, "--server", server, "create", "globalalert", "prod-denied", "--from-template", "ns.denied"
    )
    assert code == 2 and "<namespace>" in err and "--set 'namespace=...'" in err
    code, _, err = run(
        capsys, "--server", server, "create", "globalalert", "x", "--from-template", "ns.denied", "--set", "nope=1"
    )
    assert code == 2 and "neither a blank of this template" in err
    code, out, _ = run(
        capsys, "--server", server, "create", "globalalert", "prod-denied", "--from-template", "ns.denied",
        "--set", "namespace=prod", "--set", "severity=90", "--dry-run",
    )  # fmt: skip
    assert code == 0 and yaml.safe_load(out)["spec"]["severity"] == 90
    assert run(capsys, "--server", server, "get", "globalalert", "prod-denied")[0] == 1  # a dry run creates nothing

    code, out, err = run(
        capsys, "--server", server, "create", "globalalert", "prod-denied", "--from-template", "ns.denied",
        "--set", "<namespace>=prod", "--set", "severity=90",
    )  # fmt: skip
    assert code == 0, err
    assert out == 'Successfully created GlobalAlert "prod-denied" from GlobalAlertTemplate "ns.denied"\n'
    assert "Warning" not in err
    code, out, _ = run(capsys, "--server", server, "get", "globalalert", "prod-denied", "-o", "json")
    created = json.loads(out)
    assert created["spec"]["query"] == "action = deny AND dest_namespace = prod"
    assert created["spec"]["description"] == "denied in prod from ${source_namespace}"
    assert created["spec"]["severity"] == 90
    assert created["metadata"]["labels"] == {"policywatch.io/template": "ns.denied"}
    code, _, err = run(capsys, "--server", server, "create", "globalalert", "y", "--from-template", "absent")
    assert code == 1 and 'Failed to create GlobalAlertTemplate "absent"' in err


def test_output_formats_are_checked_before_any_request() -> None:
    assert check_output("jsonpath={.metadata.name}") == "jsonpath={.metadata.name}"
    with pytest.raises(OutputError, match="unknown output format 'table'"):
        check_output("table")
    with pytest.raises(OutputError, match="unbalanced braces"):
        check_output("jsonpath={.metadata.name")
    with pytest.raises(OutputError, match="invalid jsonpath expression"):
        check_output("jsonpath={.items[}")
    data = {"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"aggregateBy": ["k", "l"]}}
    assert render_template('name={.metadata.name} keys={.spec.aggregateBy[*]}{"\\t"}{.missing}', data) == (
        "name=a keys=k l\t"
    )
    assert render_template("{.metadata.labels}", data) == '{"x": "1"}'


def test_since_takes_a_duration_or_a_time() -> None:
    assert since_time("90m", now=NOW) == NOW - timedelta(minutes=90)
    assert since_time("2026-01-02T03:04:05Z") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="RFC 3339"):
        since_time("soon")
