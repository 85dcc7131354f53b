"""The /metrics exposition, compared with the spec's example byte for byte."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from collector.exporter import denied_registry, render_text
from collector.series import SeriesStore

SPEC_EXAMPLE = """\
# HELP calico_denied_bytes Total number of bytes denied by calico policies.
# TYPE calico_denied_bytes gauge
calico_denied_bytes{policy="profile/k8s_ns.ns-0/0/deny",srcIP="10.245.13.133"} 300
calico_denied_bytes{policy="profile/k8s_ns.ns-0/0/deny",srcIP="10.245.13.149"} 840
# HELP calico_denied_packets Total number of packets denied by calico policies.
# TYPE calico_denied_packets gauge
calico_denied_packets{policy="profile/k8s_ns.ns-0/0/deny",srcIP="10.245.13.133"} 5
calico_denied_packets{policy="profile/k8s_ns.ns-0/0/deny",srcIP="10.245.13.149"} 14
"""


def test_exposition_matches_the_spec_example() -> None:
    store = SeriesStore(ttl=60, max_series=10)
    # added out of order: the output is sorted by labels
    store.add(policy="profile/k8s_ns.ns-0/0/deny", src_ip="10.245.13.149", packets=14, nbytes=840)
    store.add(policy="profile/k8s_ns.ns-0/0/deny", src_ip="10.245.13.133", packets=5, nbytes=300)
    assert render_text(denied_registry(store)).decode() == SPEC_EXAMPLE


def test_nothing_denied_means_no_samples() -> None:
    text = render_text(denied_registry(SeriesStore(ttl=60, max_series=10))).decode()
    assert [line for line in text.splitlines() if not line.startswith("#")] == []
    families = list(text_string_to_metric_families(text))
    assert all(f.samples == [] for f in families)


def test_registry_values_and_label_escaping() -> None:
    store = SeriesStore(ttl=60, max_series=10)
    store.add(policy='ns/we"ird\\name', src_ip="fd00::1", packets=3, nbytes=144)
    registry = denied_registry(store)
    labels = {"policy": 'ns/we"ird\\name', "srcIP": "fd00::1"}
    assert registry.get_sample_value("calico_denied_packets", labels) == 3
    assert registry.get_sample_value("calico_denied_bytes", labels) == 144
    text = render_text(registry).decode()
    assert 'policy="ns/we\\"ird\\\\name"' in text
    parsed = {s.name: s for f in text_string_to_metric_families(text) for s in f.samples}
    assert parsed["calico_denied_packets"].labels == labels


def test_scrape_expires_stale_series() -> None:
    now = [0.0]
    store = SeriesStore(ttl=5, max_series=10, clock=lambda: now[0])
    store.add(policy="p", src_ip="1.2.3.4", packets=1, nbytes=1)
    registry = denied_registry(store)
    assert registry.get_sample_value("calico_denied_packets", {"policy": "p", "srcIP": "1.2.3.4"}) == 1
    now[0] = 5.0
    assert registry.get_sample_value("calico_denied_packets", {"policy": "p", "srcIP": "1.2.3.4"}) is None
