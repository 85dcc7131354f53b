"""No request body makes the evaluator answer 5xx (issue 17): Hypothesis builds hostile bodies (a valid object
with one field replaced by a wrong type, a huge or non-finite number, control characters or deep nesting; odd
metadata; arbitrary JSON; raw text in YAML or NDJSON) and sends them, in JSON, YAML or NDJSON, to every route that
takes a body: POST/PUT of both kinds, the dry run, and both bulk ingest routes. Each answer must be below 500;
whatever is refused must say so in a 4xx body. In-process app over a migrated SQLite file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.db import migrate
from tests.api.support import alert, make_client

JSON = "application/json"
YAML = "application/yaml"
NDJSON = "application/x-ndjson"
SETTINGS = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
SPEC_FIELDS = [
    "description", "summary", "severity", "dataSet", "period", "lookback", "query", "aggregateBy", "field",
    "metric", "condition", "threshold", "type", "substitutions",
]  # fmt: skip
METADATA_FIELDS = [
    "name", "labels", "annotations", "resourceVersion", "uid", "generation", "creationTimestamp", "namespace",
    "finalizers",
]  # fmt: skip
TEMPLATE_SPEC = {k: v for k, v in alert()["spec"].items() if k not in ("period", "lookback")}

# Characters a parser may trip on: C0 controls, DEL, C1, surrogates' neighbours, non-characters, RTL, NBSP.
ODD_CHARS = st.sampled_from(
    [chr(c) for c in range(0x20)] + ["\x7f", "\x85", "\u00a0", "\u2028", "\u202e", "\ufeff", "\ufffe", "\uffff"]
)
ODD_TEXT = st.text(st.one_of(ODD_CHARS, st.characters()), max_size=40)
HUGE_NUMBERS = st.one_of(
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.integers(min_value=1, max_value=9).map(lambda d: -(10**310) * d),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([2**63, -(2**63) - 1, 2**64, 1e308, -0.0, 5e-324]),
)
# YAML syntax a parser may mishandle: tags, anchors and merges, directives, escapes past U+10FFFF, flow style.
YAML_TOKENS = st.sampled_from(
    ["!!binary ", "!!python/object:os.system ", "!foo ", "&a ", "*a", "<<: *a\n", "\n---\n", "%YAML 1.1\n",
     '"\\Uffffffff"', '"\\x"', "? ", "{", "[", "- ", ": ", "'", '"', "\t", "#", "|\n", ">-\n", ".inf", "0x_", "~"]
)  # fmt: skip
SCALARS = st.one_of(st.none(), st.booleans(), HUGE_NUMBERS, ODD_TEXT)


def _nested(depth: int, leaf: Any) -> Any:
    for i in range(depth):
        leaf = [leaf] if i % 2 else {"a": leaf}
    return leaf


JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(ODD_TEXT, inner, max_size=4)),
    max_leaves=12,
)
HOSTILE = st.one_of(
    JSON_VALUES,
    st.builds(_nested, st.integers(min_value=20, max_value=400), SCALARS),
)


@st.composite
def objects(draw: st.DrawFn, kind: str) -> Any:
    """A GlobalAlert or GlobalAlertTemplate with a few parts replaced by hostile values."""
    body: dict[str, Any] = alert(draw(st.sampled_from(["fuzz", "fuzz-put"])))
    if kind == "GlobalAlertTemplate":
        body["kind"], body["spec"] = kind, dict(TEMPLATE_SPEC)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        where = draw(st.sampled_from(["spec", "spec", "spec", "metadata", "top", "whole"]))
        if where == "spec" and isinstance(body["spec"], dict):
            body["spec"][draw(st.sampled_from(SPEC_FIELDS))] = draw(HOSTILE)
        elif where == "metadata" and isinstance(body["metadata"], dict):
            key = draw(st.one_of(st.sampled_from(METADATA_FIELDS), ODD_TEXT))
            value = draw(st.one_of(HOSTILE, st.dictionaries(ODD_TEXT, ODD_TEXT, max_size=3)))
            body["metadata"][key] = value
        elif where == "top":
            body[draw(st.sampled_from(["apiVersion", "kind", "metadata", "spec", "status"]))] = draw(HOSTILE)
        elif where == "whole":
            return draw(HOSTILE)
    return body


def _json(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _yaml(value: Any) -> bytes:
    try:
        return yaml.safe_dump(value, allow_unicode=True).encode("utf-8", "surrogatepass")
    except (yaml.YAMLError, RecursionError):
        return _json(value)  # JSON is YAML too


@st.composite
def encoded(draw: st.DrawFn, value: Any) -> tuple[bytes, str]:
    """``value`` as a JSON or YAML body, sometimes with raw odd characters spliced in or cut short."""
    media = draw(st.sampled_from([JSON, YAML]))
    data = _json(value) if media == JSON else _yaml(value)
    damage = draw(st.sampled_from(["none", "none", "splice", "splice", "cut", "big-int-literal"]))
    if damage == "splice" and data:
        at = draw(st.integers(min_value=0, max_value=len(data)))
        piece = draw(st.one_of(ODD_TEXT, YAML_TOKENS) if media == YAML else ODD_TEXT)
        data = data[:at] + piece.encode("utf-8", "surrogatepass") + data[at:]
    elif damage == "cut" and data:
        data = data[: draw(st.integers(min_value=0, max_value=len(data) - 1))]
    elif damage == "big-int-literal":
        digits = "9" * draw(st.sampled_from([309, 4300, 4301, 6000]))
        data = data.replace(b"0", digits.encode(), 1)
    return data, media


@st.composite
def object_bodies(draw: st.DrawFn, kind: str) -> tuple[bytes, str]:
    return draw(encoded(draw(objects(kind))))


def _flow_record() -> dict[str, Any]:
    return {"start_time": 1700000000, "end_time": 1700000300, "action": "deny", "source_namespace": "default",
            "source_name_aggr": "web-*", "dest_port": 22, "num_flows": 1}  # fmt: skip


@st.composite
def ndjson_bodies(draw: st.DrawFn) -> tuple[bytes, str]:
    """Bulk bodies: action and source lines (valid, hostile or raw text), as NDJSON; or one JSON object."""
    lines: list[bytes] = []
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        index = draw(st.one_of(st.sampled_from(["flows", "dns", "audit", "tigera_secure_ee_flows.c"]), ODD_TEXT))
        action = draw(st.one_of(st.just({"index": {"_index": index}}), st.just({"create": {}}), HOSTILE))
        source = _flow_record()
        if draw(st.booleans()):
            source[draw(st.one_of(st.sampled_from([*source, "policies"]), ODD_TEXT))] = draw(HOSTILE)
        for line in (action, draw(st.one_of(st.just(source), HOSTILE))):
            lines.append(_json(line) if draw(st.integers(0, 9)) else draw(ODD_TEXT).encode("utf-8", "surrogatepass"))
    data = b"\n".join(lines) + draw(st.sampled_from([b"\n", b"", b"\r\n"]))
    if draw(st.integers(0, 9)) == 0:
        data = data.replace(b"1", b"9" * draw(st.sampled_from([309, 4301])), 1)
    media = draw(st.sampled_from([NDJSON, JSON, "application/json; charset=utf-8", YAML, "text/plain"]))
    return data, media


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    url = f"sqlite:///{tmp_path_factory.mktemp('no5xx') / 'policywatch.db'}"
    migrate(url)
    with make_client(url) as client:
        template = {**alert("fuzz-put"), "kind": "GlobalAlertTemplate", "spec": TEMPLATE_SPEC}
        assert client.post("/globalalerts", json=alert("fuzz-put")).status_code == 201
        assert client.post("/globalalerttemplates", json=template).status_code == 201
        yield client


def _send(client: TestClient, method: str, path: str, body: tuple[bytes, str]) -> None:
    data, media = body
    response = client.request(method, path, content=data, headers={"content-type": media})
    assert response.status_code < 500, (method, path, media, data[:500], response.text[:500])
    if response.status_code >= 400:
        assert response.content, "a refusal says why"


ALERT_ROUTES = [
    ("POST", "/globalalerts"),
    ("PUT", "/globalalerts/fuzz-put"),
    ("POST", "/globalalerts/test"),
    ("POST", "/apis/projectcalico.org/v3/globalalerts"),
    ("PUT", "/apis/projectcalico.org/v3/globalalerts/fuzz"),
]
TEMPLATE_ROUTES = [("POST", "/globalalerttemplates"), ("PUT", "/globalalerttemplates/fuzz-put")]
BULK_PATHS = ["/_bulk", "/flows/_bulk", "/datasets/flows/_bulk", "/datasets/dns/_bulk", "/datasets/audit/_bulk",
              "/datasets/nope/_bulk"]  # fmt: skip
AUDIT_FIELDS = ["requestReceivedTimestamp", "verb", "objectRef", "user", "stage", "auditID", "responseStatus"]
EVENT_LISTS = st.builds(
    lambda items: {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items},
    st.lists(st.one_of(HOSTILE, st.dictionaries(st.sampled_from(AUDIT_FIELDS), HOSTILE)), max_size=3),
)


@SETTINGS
@given(body=object_bodies("GlobalAlert"), route=st.sampled_from(ALERT_ROUTES))
def test_no_alert_body_yields_a_5xx(fuzz_client: TestClient, body: tuple[bytes, str], route: tuple[str, str]) -> None:
    _send(fuzz_client, *route, body)


@SETTINGS
@given(body=object_bodies("GlobalAlertTemplate"), route=st.sampled_from(TEMPLATE_ROUTES))
def test_no_template_body_yields_a_5xx(
    fuzz_client: TestClient, body: tuple[bytes, str], route: tuple[str, str]
) -> None:
    _send(fuzz_client, *route, body)


@SETTINGS
@given(
    body=st.one_of(ndjson_bodies(), st.builds(lambda v: (_json(v), JSON), HOSTILE)), path=st.sampled_from(BULK_PATHS)
)
def test_no_bulk_body_yields_a_5xx(fuzz_client: TestClient, body: tuple[bytes, str], path: str) -> None:
    _send(fuzz_client, "POST", path, body)


@SETTINGS
@given(event_list=EVENT_LISTS)
def test_no_audit_event_list_yields_a_5xx(fuzz_client: TestClient, event_list: Any) -> None:
    _send(fuzz_client, "POST", "/datasets/audit/_bulk", (_json(event_list), JSON))


def test_the_strategies_reach_the_validators(fuzz_client: TestClient) -> None:
    """The property above holds for bodies that get past decoding: a hostile spec field is a 422 naming it."""
    response = fuzz_client.post("/globalalerts", json=alert("fuzz-probe", severity={"a": [1]}))
    assert response.status_code == 422 and "severity" in response.text


def test_yaml_escapes_beyond_unicode_are_400(fuzz_client: TestClient) -> None:
    """Found by the property above: PyYAML's scanner passed ``\\U99999999`` to chr() (OverflowError, 500)."""
    for escape in ("\\U99999999", "\\Uffffffff", "\\U00110000"):
        for path in ("/globalalerts", "/globalalerttemplates", "/globalalerts/test", "/globalalerts/fuzz-put"):
            method = "PUT" if path.endswith("fuzz-put") else "POST"
            text = f'apiVersion: projectcalico.org/v3\nkind: GlobalAlert\nmetadata:\n  name: "x{escape}"\n'
            response = fuzz_client.request(method, path, content=text, headers={"content-type": YAML})
            assert response.status_code == 400, response.text
            message = response.json()["message"]
            assert "line 4, column 13" in message and "\\U0010FFFF" in message, message
    valid = 'apiVersion: projectcalico.org/v3\nkind: GlobalAlert\nmetadata:\n  name: "\\U0001F600"\n'
    assert fuzz_client.post("/globalalerts", content=valid, headers={"content-type": YAML}).status_code == 422
