"""Schema lookups, suggestions, and the normalising validation of values per data set."""

from __future__ import annotations

import pytest

from evaluator.query import DATASETS, TIME_FIELD, QueryError, compile_query, unparse, validate
from evaluator.query.schema import FIELDS, field, suggest


def canonical(text: str, dataset: str, **options: bool) -> str:
    return unparse(compile_query(text, dataset, **options))


def test_datasets_and_time_fields() -> None:
    assert DATASETS == ("audit", "dns", "flows")
    assert TIME_FIELD == {"flows": "end_time", "dns": "end_time", "audit": "requestReceivedTimestamp"}
    for dataset, key in TIME_FIELD.items():
        assert field(dataset, key).type.value == "date"


def test_appendix_key_counts_and_kinds() -> None:
    assert len(FIELDS["audit"]) == 22
    assert len(FIELDS["dns"]) == 19
    assert len(FIELDS["flows"]) == 31
    assert field("flows", "bytes_in").numeric and not field("flows", "bytes_in").multi_valued
    assert field("flows", "policies.all_policies").multi_valued
    assert field("dns", "rrsets.rdata").multi_valued and field("dns", "rrsets.rdata").nested == "rrsets"
    assert field("audit", "user.groups").multi_valued
    label = field("dns", "servers.labels.app.kubernetes.io/name")
    assert label.path == ("servers", "labels", "app.kubernetes.io/name") and label.multi_valued
    assert field("dns", "client_labels.app").path == ("client_labels", "app")


@pytest.mark.parametrize(
    ("dataset", "text"),
    [
        ("dns", "count > 0"),
        ("dns", '"servers.ip" = "127.0.0.1"'),
        ("dns", "count > 100 AND client_name=mypod"),
        ("dns", "client_namespace = ns1 OR client_namespace = ns2"),
        ("dns", "count > 100 AND NOT (client_namespace = ns1 OR client_namespace = ns2)"),
        ("dns", "(qtype = A OR qtype = AAAA) AND rcode != NoError"),
        ("flows", "action=allow"),
        (
            "flows",
            'dest_labels.labels="application=postgres" AND source_type=net AND action=allow '
            "AND proto=tcp AND dest_port=5432",
        ),
    ],
)
def test_spec_queries_validate(dataset: str, text: str) -> None:
    assert compile_query(text, dataset) is not None


@pytest.mark.parametrize(
    ("dataset", "text", "key", "position", "suggestion"),
    [
        ("dns", "rcode = NXDomain AND (rtype = A or rtype = AAAA)", "rtype", 22, "rrsets.type"),
        (
            "flows",
            'dest_labels="application=postgres" AND source_type=net AND action=allow AND proto=tcp',
            "dest_labels",
            0,
            "dest_labels.labels",
        ),
        ("flows", "client_namespace = ns1", "client_namespace", 0, "source_namespace"),
        ("flows", "client_name_aggr = x", "client_name_aggr", 0, "source_name_aggr"),
        ("flows", "count > 1", "count", 0, "num_flows"),
        ("flows", "soruce_ip = '10.0.0.1'", "soruce_ip", 0, "source_ip"),
        ("dns", "client_labels = x", "client_labels", 0, "client_labels.LABEL_NAME"),
        ("audit", "objectref.name = x", "objectref.name", 0, "objectRef.name"),
    ],
)
def test_spec_slips_fail_with_the_right_key(dataset: str, text: str, key: str, position: int, suggestion: str) -> None:
    with pytest.raises(QueryError) as info:
        compile_query(text, dataset)
    error = info.value
    assert error.suggestion == suggestion
    assert error.position == position
    assert f"unknown key {key!r} for data set {dataset}" in str(error)
    assert f'did you mean "{suggestion}"?' in str(error)
    assert error.query == text


def test_unknown_key_says_which_data_set_has_it() -> None:
    with pytest.raises(QueryError, match="'qname' is a key of the dns data set"):
        compile_query("qname = x", "flows")
    assert suggest("flows", "completely_unrelated_zzz") is None


@pytest.mark.parametrize(
    ("dataset", "text", "normalised"),
    [
        ("flows", 'source_ip = "10.1.2.3/8"', 'source_ip = "10.0.0.0/8"'),
        ("flows", "source_ip = 192.0.2.1", 'source_ip = "192.0.2.1"'),
        ("flows", 'dest_ip = "2001:DB8:0:0::1"', 'dest_ip = "2001:db8::1"'),
        ("flows", 'dest_ip = "2001:db8::1:2:3:4/64"', 'dest_ip = "2001:db8::/64"'),
        ("dns", 'qname = "WWW.Example.COM"', "qname = www.example.com"),
        ("dns", 'qname = "bücher.de"', 'qname = "xn--bcher-kva.de"'),
        # UTS 46 as Calico and browsers: IDNA 2008 keeps the sharp s (IDNA 2003 made it "strasse.de").
        ("dns", 'qname = "straße.de"', 'qname = "xn--strae-oqa.de"'),
        ("dns", 'qname = "ＥＸＡＭＰＬＥ.com"', "qname = example.com"),
        ("dns", 'qname = "_sip._tcp.bücher.de"', 'qname = "_sip._tcp.xn--bcher-kva.de"'),
        ("dns", 'qname = "www.example.com."', "qname = www.example.com"),
        ("flows", "action = ALLOW", "action = allow"),
        ("flows", "proto = 6", "proto = tcp"),
        ("flows", "proto = 132", 'proto = "132"'),
        ("flows", "proto = UDP", "proto = udp"),
        ("audit", "level = requestresponse", "level = RequestResponse"),
        ("audit", "verb = GET", "verb = get"),
        ("dns", "qtype = aaaa", "qtype = AAAA"),
        ("dns", "qtype = 28", "qtype = AAAA"),
        ("dns", 'qtype = "#15"', "qtype = MX"),
        ("dns", 'qtype = "#65"', 'qtype = "#65"'),
        ("dns", 'end_time > "2024-01-02"', 'end_time > "2024-01-02T00:00:00Z"'),
        ("dns", 'end_time > "2024-01-02 03:04:05"', 'end_time > "2024-01-02T03:04:05Z"'),
        ("dns", 'end_time > "2024-01-02T03:04:05.250+02:00"', 'end_time > "2024-01-02T01:04:05.25Z"'),
        ("dns", "end_time > 0", 'end_time > "1970-01-01T00:00:00Z"'),
        ("dns", 'count >= "12"', "count >= 12"),
        ("dns", "count >= 12.0", "count >= 12"),
        ("audit", "responseStatus.code = 404", "responseStatus.code = 404"),
        ("flows", "action IN {al*, deny}", "action IN {allow, deny}"),
        ("audit", "level IN {request*}", "level IN {Request, RequestResponse}"),
        ("flows", "proto NOTIN {icmp*}", "proto NOTIN {icmp, icmp6}"),
        ("dns", "qname IN {*.Example.com, 'a.b'}", "qname IN {*.example.com, a.b}"),
        # The README's label example: bare words may hold "-" as Kubernetes names do; the canonical text quotes them.
        ("dns", '"servers.labels.k8s-app" = kube-dns', '"servers.labels.k8s-app" = "kube-dns"'),
        ("dns", "servers.labels.k8s-app = kube-dns", '"servers.labels.k8s-app" = "kube-dns"'),
        ("dns", "qname IN {kube-*, coredns}", 'qname IN {"kube-*", coredns}'),
        ("flows", "dest_port IN {80, 443, 80}", "dest_port IN {80, 443}"),
    ],
)
def test_values_are_normalised(dataset: str, text: str, normalised: str) -> None:
    assert canonical(text, dataset) == normalised


@pytest.mark.parametrize(
    ("dataset", "text", "position", "needle"),
    [
        ("flows", "dest_port = 65536", 12, "from 0 to 65535"),
        ("flows", "dest_port = -1", 12, "from 0 to 65535"),
        ("flows", "bytes_in > -5", 11, ">= 0"),
        ("audit", "responseStatus.code = 99", 22, "from 100 to 599"),
        ("flows", "bytes_in > 1.5", 11, "expected an integer"),
        ("flows", "source_ip = 'not-an-ip'", 12, "not an IP address or CIDR"),
        ("flows", "source_ip = 5", 12, "not the number 5"),
        ("flows", "action = allowed", 9, "allow, deny"),
        ("flows", "proto = gre", 8, "not a protocol"),
        ("flows", "proto = 256", 8, "out of range"),
        ("dns", "qtype = BOGUS", 8, "not a DNS type"),
        ("dns", "qtype = '#65536'", 8, "#0-#65535"),
        ("dns", "end_time > 'yesterday'", 11, "RFC 3339"),
        ("dns", "end_time > '2024-02-30'", 11, "not a valid date"),
        ("flows", "dest_labels.labels = 'noequals'", 21, "LABEL_NAME=LABEL_VALUE"),
        ("flows", "dest_name = 'has space'", 12, "not a valid name"),
        ("flows", "dest_name < x", 0, "does not apply"),
        ("flows", "source_ip IN {10.*}", 14, "wildcards do not apply"),
        ("flows", "dest_port IN {8*}", 14, "wildcards do not apply"),
        ("flows", "action IN {x*}", 11, "matches none"),
        ("dns", "rcode = 'a\\u0000b'", 8, "U+0000"),
        ("dns", "rcode = '\\ud800'", 8, "U+D800"),
        ("dns", 'client_name = "<desired>"', 14, "not a valid name"),
    ],
)
def test_bad_values_name_key_position_and_what_is_right(dataset: str, text: str, position: int, needle: str) -> None:
    with pytest.raises(QueryError) as info:
        compile_query(text, dataset)
    assert info.value.position == position
    assert needle in str(info.value)
    assert info.value.query == text


def test_enumeration_typo_suggests_the_value() -> None:
    with pytest.raises(QueryError) as info:
        compile_query("action = allwo", "flows")
    assert info.value.suggestion == "allow"


def test_templates_may_keep_placeholders() -> None:
    text = 'dest_namespace="<desired namespace>" AND dest_port=80'
    with pytest.raises(QueryError):
        compile_query(text, "flows")
    assert canonical(text, "flows", placeholders=True) == 'dest_namespace = "<desired namespace>" AND dest_port = 80'


def test_unknown_dataset_and_empty_query() -> None:
    with pytest.raises(QueryError, match="unknown data set 'flow'") as info:
        validate(None, "flow")
    assert info.value.suggestion == "flows"
    assert compile_query("  ", "dns") is None
