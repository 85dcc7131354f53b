"""``policywatchctl query``: JSON on success (exit 0), error with a caret on failure (exit 2)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from api.ctl.main import main

REPO = Path(__file__).resolve().parents[3]


def test_prints_dsl_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "--dataset", "dns", "(qtype = A OR qtype = AAAA) AND rcode != NoError"]) == 0
    dsl = json.loads(capsys.readouterr().out)
    assert dsl == {
        "bool": {
            "filter": [
                {
                    "bool": {
                        "should": [{"term": {"qtype": "A"}}, {"term": {"qtype": "AAAA"}}],
                        "minimum_should_match": 1,
                    }
                },
                {"bool": {"must_not": [{"term": {"rcode": "NoError"}}]}},
            ]
        }
    }


def test_prints_sql_that_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "--dataset", "flows", "--sql", 'source_ip = "10.0.0.0/8" AND proto = 6']) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["query"] == 'source_ip = "10.0.0.0/8" AND proto = tcp'
    assert "BETWEEN '40a000000' AND '40affffff'" in result["sql"]
    # The literal SQL is valid against the store's schema.
    from sqlalchemy import create_engine

    from evaluator.db import metadata
    from evaluator.logstore import table_for, values_table_for

    engine = create_engine("sqlite://")
    metadata.create_all(engine, tables=[table_for("flows"), values_table_for("flows")])
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        assert raw.execute(result["sql"]).fetchall() == []
    engine.dispose()


def test_postgresql_dialect_writes_like(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["query", "--dataset", "dns", "--sql", "--dialect", "postgresql", "qname IN {'*.example.com'}"]
    assert main(args) == 0
    assert "LIKE '%.example.com' ESCAPE" in json.loads(capsys.readouterr().out)["sql"]


def test_error_has_caret_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["query", "--dataset", "dns", "rcode = NXDomain AND (rtype = A or rtype = AAAA)"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert lines[0] == (
        "policywatchctl query: unknown key 'rtype' for data set dns at position 22; did you mean \"rrsets.type\"?"
    )
    assert lines[1] == "rcode = NXDomain AND (rtype = A or rtype = AAAA)"
    assert lines[2] == " " * 22 + "^"


def test_long_query_error_shows_a_window(capsys: pytest.CaptureFixture[str]) -> None:
    text = "count > 1 AND " * 500 + "bogus = 1"
    assert main(["query", "--dataset", "dns", text]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[1].startswith("...") and err[1].endswith("bogus = 1")
    assert err[2].index("^") == err[1].index("bogus")


def test_console_script_reads_stdin_and_exits_2() -> None:
    script = Path(sys.executable).with_name("policywatchctl")
    ok = subprocess.run(
        [str(script), "query", "--dataset", "flows", "-"],
        input="action = allow",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {"term": {"action": "allow"}}
    bad = subprocess.run(
        [str(script), "query", "--dataset", "flows", 'dest_labels="application=postgres"'],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert 'did you mean "dest_labels.labels"?' in bad.stderr
    assert bad.stderr.splitlines()[-1] == "^"


def test_template_placeholders_only_with_flag(capsys: pytest.CaptureFixture[str]) -> None:
    text = 'dest_namespace="<desired namespace>" AND dest_port=80'
    assert main(["query", "--dataset", "flows", text]) == 2
    assert "invalid value for key 'dest_namespace'" in capsys.readouterr().err
    assert main(["query", "--dataset", "flows", "--template", text]) == 0
    dsl = json.loads(capsys.readouterr().out)
    assert dsl["bool"]["filter"][0] == {"term": {"dest_namespace": "<desired namespace>"}}
