"""The compiled ingest mapping agrees with record_to_rows, the reference, on every record: its rows, or the
same RecordInvalid (field, value, reason)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from evaluator.logstore import RecordInvalid
from evaluator.logstore.mapper import FlatRows, mapper, scalar_columns
from evaluator.logstore.tables import RecordRows, record_to_rows
from evaluator.query.schema import DATASETS, FIELDS, LABEL_PREFIXES, TIME_FIELD

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["10.0.0.1", " 10.0.0.2", "fd00::1", "-", "tcp", "17", "A", "allow", "Deny"]),
    st.just("2026-12-03T10:00:00Z"),
    st.sampled_from(["1764740400", "1764740400.5", "1764740400123", "not a value", "", "Db-1.NS"]),
    st.text(max_size=8),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.dictionaries(st.text(max_size=3), SCALARS, max_size=2))


def flat_rows(dataset: str, rows: RecordRows) -> FlatRows:
    """``record_to_rows``'s result in the writer's form."""
    values = [(v["key"], v["value"], v["ip_key"]) for v in rows.values]
    return FlatRows(tuple(rows.row.get(name) for name in scalar_columns(dataset)), values, rows.text)


def _outcome(call: Any) -> Any:
    try:
        return call()
    except RecordInvalid as exc:
        return ("invalid", exc.field, repr(exc.value), exc.reason)


@st.composite
def records(draw: st.DrawFn, dataset: str) -> dict[str, Any]:
    record: dict[str, Any] = {TIME_FIELD[dataset]: draw(st.sampled_from([1764740400, "2026-12-03T10:00:00.123456Z"]))}
    for spec in FIELDS[dataset].values():
        if draw(st.booleans()):
            value = draw(VALUES)
            target = record
            for segment in spec.path[:-1]:
                target = target.setdefault(segment, {}) if isinstance(target.get(segment, {}), dict) else {}
            target[spec.path[-1]] = value
    for prefix, (path, _extra) in LABEL_PREFIXES[dataset].items():
        if draw(st.booleans()):
            record[path[0]] = draw(st.dictionaries(st.sampled_from(["app", "tier", prefix]), SCALARS, max_size=2))
    return record


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(DATASETS).flatmap(lambda d: st.tuples(st.just(d), records(d))))
def test_compiled_mapping_equals_record_to_rows(case: tuple[str, dict[str, Any]]) -> None:
    dataset, record = case
    expected = _outcome(lambda: flat_rows(dataset, record_to_rows(dataset, record, text="")))
    got = _outcome(lambda: FlatRows(*mapper(dataset)(record, 0), ""))
    assert got == expected


def test_compiled_mapping_of_a_calico_flow() -> None:
    record = {
        "end_time": 1764740400,
        "start_time": "1764740100",
        "dest_ip": "10.0.0.1",
        "source_ip": "-",
        "proto": "6",
        "dest_labels": {"labels": ["app=db", "app=db", "tier=data"]},
        "policies": {"all_policies": ["0|default|ns/default.p|deny"]},
        "original_source_ips": ["192.168.0.1", "-"],
        "num_flows": 3,
    }
    scalars, values = mapper("flows")(record, 0)
    assert FlatRows(scalars, values, "") == flat_rows("flows", record_to_rows("flows", record, text=""))
    assert ("dest_labels.labels", "tier=data", None) in values
    assert ("original_source_ips", "192.168.0.1", "4c0a80001") in values  # "-" is no address
    assert len([v for v in values if v[0] == "original_source_ips"]) == 1
    assert len([v for v in values if v[1] == "app=db"]) == 1
