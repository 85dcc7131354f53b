"""Valid keys of each data set (the spec's appendix), their types, and nearest-key suggestions."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from enum import StrEnum

from evaluator.query.errors import QueryError
from evaluator.vocabulary import DATASETS as DATASETS

TIME_FIELD = {"flows": "end_time", "dns": "end_time", "audit": "requestReceivedTimestamp"}

MAX_INT = 2**63 - 1


class FieldType(StrEnum):
    STRING = "string"
    DOMAIN = "domain"
    URL = "URL"
    IP = "IP, CIDR"
    INT = "int"
    DATE = "date"
    DNS_TYPE = "dns type"
    PROTO = "string, int"
    LABEL = "LABEL_NAME=LABEL_VALUE"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One key of a data set.

    ``path`` walks the log record (dicts, with lists flattened on the way); ``nested`` is the
    OpenSearch nested-object path the key lives under, if any; ``allowed`` lists the canonical values
    of an enumeration; ``minimum``/``maximum`` bound integers.
    """

    key: str
    type: FieldType
    path: tuple[str, ...]
    multi_valued: bool = False
    nested: str | None = None
    allowed: tuple[str, ...] = ()
    minimum: int = 0
    maximum: int = MAX_INT

    @property
    def numeric(self) -> bool:
        return self.type is FieldType.INT

    @property
    def ordered(self) -> bool:
        """Whether < <= > >= apply (numbers and dates)."""
        return self.type in (FieldType.INT, FieldType.DATE)

    @property
    def dynamic(self) -> bool:
        """A label key whose last part is a label name chosen by the user."""
        return self.key.startswith(("client_labels.", "servers.labels."))


PROTO_NUMBERS = {"icmp": 1, "ipip": 4, "tcp": 6, "udp": 17, "esp": 50, "icmp6": 58}
DNS_TYPES = {
    "A": 1,
    "NS": 2,
    "MD": 3,
    "MF": 4,
    "CNAME": 5,
    "SOA": 6,
    "MB": 7,
    "MG": 8,
    "MR": 9,
    "NULL": 10,
    "WKS": 11,
    "PTR": 12,
    "HINFO": 13,
    "MINFO": 14,
    "MX": 15,
    "TXT": 16,
    "AAAA": 28,
    "SRV": 33,
}


def _f(key: str, kind: FieldType, **extra: object) -> FieldSpec:
    path = tuple(key.split("."))
    return FieldSpec(key, kind, path, **extra)  # type: ignore[arg-type]


S, D, U, IP, N, T = (FieldType.STRING, FieldType.DOMAIN, FieldType.URL, FieldType.IP, FieldType.INT, FieldType.DATE)

_AUDIT = (
    _f("apiVersion", D),
    _f("auditID", S),
    _f("kind", S),
    _f("level", S, allowed=("None", "Metadata", "Request", "RequestResponse")),
    _f("name", D),
    _f("objectRef.apiGroup", S),
    _f("objectRef.apiVersion", U),
    _f("objectRef.name", D),
    _f("objectRef.resource", S),
    _f("objectRef.namespace", D),
    _f("requestReceivedTimestamp", T),
    _f("requestURI", U),
    _f("responseObject.apiVersion", S),
    _f("responseObject.kind", S),
    _f("responseStatus.code", N, minimum=100, maximum=599),
    _f("sourceIPs", IP, multi_valued=True),
    _f("stage", S, allowed=("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")),
    _f("stageTimestamp", T),
    _f("timestamp", T),
    _f("user.groups", S, multi_valued=True),
    _f("user.username", S),
    _f("verb", S, allowed=("get", "list", "watch", "create", "update", "patch", "delete")),
)

_SERVERS = {"multi_valued": True, "nested": "servers"}
_RRSETS = {"multi_valued": True, "nested": "rrsets"}
_DNS = (
    _f("start_time", T),
    _f("end_time", T),
    _f("count", N),
    _f("client_name", D),
    _f("client_name_aggr", D),
    _f("client_namespace", D),
    _f("client_ip", IP),
    _f("servers.name", D, **_SERVERS),
    _f("servers.name_aggr", D, **_SERVERS),
    _f("servers.namespace", D, **_SERVERS),
    _f("servers.ip", IP, **_SERVERS),
    _f("qname", D),
    _f("qtype", FieldType.DNS_TYPE),
    _f("rclass", S),
    _f("rcode", S),
    _f("rrsets.name", D, **_RRSETS),
    _f("rrsets.type", FieldType.DNS_TYPE, **_RRSETS),
    _f("rrsets.class", S, **_RRSETS),
    _f("rrsets.rdata", S, **_RRSETS),
)

_ENDPOINT_TYPES = ("wep", "hep", "ns", "net")
_FLOWS = (
    _f("start_time", T),
    _f("end_time", T),
    _f("action", S, allowed=("allow", "deny")),
    _f("bytes_in", N),
    _f("bytes_out", N),
    _f("dest_ip", IP),
    _f("dest_name", D),
    _f("dest_name_aggr", D),
    _f("dest_namespace", D),
    _f("dest_port", N, maximum=65535),
    _f("dest_type", S, allowed=_ENDPOINT_TYPES),
    _f("dest_labels.labels", FieldType.LABEL, multi_valued=True, nested="dest_labels"),
    _f("reporter", S, allowed=("src", "dst")),
    _f("num_flows", N),
    _f("num_flows_completed", N),
    _f("num_flows_started", N),
    _f("http_requests_allowed_in", N),
    _f("http_requests_denied_in", N),
    _f("packets_in", N),
    _f("packets_out", N),
    _f("proto", FieldType.PROTO, allowed=tuple(PROTO_NUMBERS)),
    _f("policies.all_policies", S, multi_valued=True, nested="policies"),
    _f("source_ip", IP),
    _f("source_name", D),
    _f("source_name_aggr", D),
    _f("source_namespace", D),
    _f("source_port", N, maximum=65535),
    _f("source_type", S, allowed=_ENDPOINT_TYPES),
    _f("source_labels.labels", FieldType.LABEL, multi_valued=True, nested="source_labels"),
    _f("original_source_ips", IP, multi_valued=True),
    _f("num_original_source_ips", N),
)

FIELDS: dict[str, dict[str, FieldSpec]] = {
    "audit": {spec.key: spec for spec in _AUDIT},
    "dns": {spec.key: spec for spec in _DNS},
    "flows": {spec.key: spec for spec in _FLOWS},
}

# Label keys: the appendix's ``client_labels.LABEL_NAME`` and ``servers.labels.LABEL_NAME``.
LABEL_PREFIXES: dict[str, dict[str, tuple[tuple[str, ...], dict[str, object]]]] = {
    "audit": {},
    "dns": {"client_labels.": (("client_labels",), {}), "servers.labels.": (("servers", "labels"), _SERVERS)},
    "flows": {},
}

# Keys people write from other data sets or from the spec's slipped examples.
ALIASES: dict[str, dict[str, str]] = {
    "flows": {
        "client_namespace": "source_namespace",
        "client_name": "source_name",
        "client_name_aggr": "source_name_aggr",
        "client_ip": "source_ip",
        "count": "num_flows",
        "source_labels": "source_labels.labels",
        "dest_labels": "dest_labels.labels",
        "policies": "policies.all_policies",
        "protocol": "proto",
    },
    "dns": {
        "rtype": "rrsets.type",
        "rname": "rrsets.name",
        "rdata": "rrsets.rdata",
        "rrtype": "rrsets.type",
        "type": "qtype",
        "source_namespace": "client_namespace",
        "source_name": "client_name",
        "source_name_aggr": "client_name_aggr",
        "source_ip": "client_ip",
    },
    "audit": {"username": "user.username", "groups": "user.groups", "resource": "objectRef.resource"},
}


def check_dataset(dataset: str) -> str:
    if dataset not in FIELDS:
        raise QueryError(
            f"unknown data set {dataset!r}",
            expected=DATASETS,
            suggestion=_closest(str(dataset), DATASETS),
        )
    return dataset


def keys(dataset: str) -> tuple[str, ...]:
    """The fixed keys of ``dataset`` plus its label-key forms (``client_labels.LABEL_NAME``)."""
    check_dataset(dataset)
    return tuple(FIELDS[dataset]) + tuple(f"{prefix}LABEL_NAME" for prefix in LABEL_PREFIXES[dataset])


def lookup(dataset: str, key: str) -> FieldSpec | None:
    """The spec of ``key`` in ``dataset``, or None when it is not a valid key there."""
    spec = FIELDS[check_dataset(dataset)].get(key)
    if spec is not None:
        return spec
    for prefix, (path, extra) in LABEL_PREFIXES[dataset].items():
        name = key[len(prefix) :]
        if key.startswith(prefix) and name and name.isprintable():
            return FieldSpec(key, FieldType.STRING, (*path, name), **extra)  # type: ignore[arg-type]
    return None


def field(dataset: str, key: str, *, position: int | None = None) -> FieldSpec:
    """The spec of ``key``; raises QueryError naming the data set and suggesting the nearest key."""
    spec = lookup(dataset, key)
    if spec is not None:
        return spec
    suggestion = suggest(dataset, key)
    where = [name for name in DATASETS if name != dataset and lookup(name, key) is not None]
    message = f"unknown key {key!r} for data set {dataset}"
    if where:
        message += f" ({key!r} is a key of the {' and '.join(where)} data set)"
    raise QueryError(message, position=position, expected=keys(dataset), suggestion=suggestion)


def suggest(dataset: str, key: str) -> str | None:
    """The valid key of ``dataset`` nearest to ``key``, if one is close enough to guess."""
    check_dataset(dataset)
    fixed = FIELDS[dataset]
    if key in ALIASES[dataset]:
        return ALIASES[dataset][key]
    lowered = {name.lower(): name for name in fixed}
    if key.lower() in lowered:
        return lowered[key.lower()]
    below = [name for name in fixed if name.startswith(key + ".")]
    if len(below) == 1:
        return below[0]
    tails = [name for name in fixed if name.rsplit(".", 1)[-1] == key]
    if len(tails) == 1:
        return tails[0]
    for prefix in LABEL_PREFIXES[dataset]:
        if key == prefix.rstrip("."):
            return f"{prefix}LABEL_NAME"
    return _closest(key, tuple(fixed))


def _closest(word: str, options: tuple[str, ...]) -> str | None:
    matches = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return matches[0] if matches else None
