"""The denied-packet metrics, built fresh from the series store on every scrape."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from collector.series import SeriesStore

PACKETS = "calico_denied_packets"
BYTES = "calico_denied_bytes"
PACKETS_HELP = "Total number of packets denied by calico policies."
BYTES_HELP = "Total number of bytes denied by calico policies."
LABELS = ("policy", "srcIP")


class DeniedCollector:
    """A prometheus_client custom collector: series come and go with the store, so nothing is ever removed."""

    def __init__(self, store: SeriesStore) -> None:
        self._store = store

    def collect(self) -> Iterable[Metric]:
        self._store.expire()
        samples = self._store.samples()
        denied_bytes = GaugeMetricFamily(BYTES, BYTES_HELP, labels=LABELS)
        denied_packets = GaugeMetricFamily(PACKETS, PACKETS_HELP, labels=LABELS)
        for s in samples:
            denied_bytes.add_metric((s.policy, s.src_ip), s.bytes)
            denied_packets.add_metric((s.policy, s.src_ip), s.packets)
        return [denied_bytes, denied_packets]

    def describe(self) -> Iterable[Metric]:
        return [
            GaugeMetricFamily(BYTES, BYTES_HELP, labels=LABELS),
            GaugeMetricFamily(PACKETS, PACKETS_HELP, labels=LABELS),
        ]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == int(value):
        return str(int(value))  # counts are integers: print them as the spec's example does, without ".0"
    return repr(value)


def render_text(registry: CollectorRegistry) -> bytes:
    """Prometheus text format 0.0.4 for the gauges in ``registry``, integer values printed as integers."""
    lines: list[str] = []
    for family in registry.collect():
        lines.append(f"# HELP {family.name} {family.documentation}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            labels = ",".join(f'{k}="{_escape(v)}"' for k, v in sample.labels.items())
            lines.append(
                f"{sample.name}{{{labels}}} {_number(sample.value)}"
                if labels
                else f"{sample.name} {_number(sample.value)}"
            )
    return ("\n".join(lines) + "\n").encode() if lines else b""


def denied_registry(store: SeriesStore) -> CollectorRegistry:
    """A registry holding only the denied-packet metrics (what ``GET /metrics`` serves)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeniedCollector(store))
    return registry
