"""policywatchctl get events shows an event's dismissal (who, and when with -o wide) and filters on it, against a
real evaluator with tokens; the state is the one the Alerts page and ``GET /events?dismissed=`` see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from api.ctl.main import main as ctl
from evaluator.events import Event, SqlEventStore
from tests.api.support import EvaluatorProcess

NOW = datetime.now(UTC).replace(microsecond=0)
WRITE = "w" * 24


def test_get_events_shows_and_filters_dismissal(
    evaluator: EvaluatorProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    server = evaluator.start(env={"POLICYWATCH_WRITE_TOKENS": WRITE})
    engine = sa.create_engine(f"sqlite:///{evaluator.tmp_path / 'server.db'}")
    SqlEventStore(engine).add(
        [
            Event(time=NOW - timedelta(minutes=2), alert="a", description="older", severity=20, record={}, key="1"),
            Event(time=NOW - timedelta(minutes=1), alert="a", description="newer", severity=20, record={}, key="2"),
        ]
    )
    engine.dispose()
    auth = {"Authorization": f"Bearer {WRITE}"}
    older = httpx.get(f"{server}/events", params={"limit": 1, "offset": 1}, headers=auth).json()["items"][0]
    done = httpx.post(f"{server}/events/{older['id']}/dismiss", json={"by": "ivan"}, headers=auth)
    assert done.status_code == 200, done.text

    def get(*argv: str) -> list[list[str]]:
        code = ctl(["--server", server, "--token", WRITE, "get", "events", *argv])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return [line.split() for line in captured.out.splitlines()]

    table = get()
    assert table[0] == ["TIME", "ALERT", "SEVERITY", "SUMMARY", "DISMISSED"]
    assert [(row[3], row[4]) for row in table[1:]] == [("newer", "<none>"), ("older", "ivan")]
    wide = get("-o", "wide")
    assert wide[0][-2:] == ["DISMISSED-AT", "DESCRIPTION"] and wide[2][5] == done.json()["dismissed"]["at"]
    assert [row[3] for row in get("--dismissed", "true")[1:]] == ["older"]
    assert [row[3] for row in get("--dismissed", "false")[1:]] == ["newer"]
