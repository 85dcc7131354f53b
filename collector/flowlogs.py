"""Denied-flow records: per-flow totals from the drain, turned into Calico flow-log documents and shipped.

``FlowAggregator`` takes the per-flow packet and byte deltas of every drain and, every flush interval (Felix's
``flowLogsFlushInterval``), emits one record per flow seen in that interval, in the spec's flows schema.
``FlowShipper`` delivers them with the Elasticsearch ``_bulk`` API, which both the evaluator (``POST /_bulk``) and
OpenSearch speak, from a bounded in-memory buffer, on its own thread: the drain never waits for the network. Each
record carries an ``_id`` made from its content, so a batch resent after a timeout is stored once.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import random
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from prometheus_client import Counter, Gauge
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger(__name__)

PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp6", 132: "sctp"}
DEFAULT_INDEX = "tigera_secure_ee_flows"


@dataclass(frozen=True, slots=True)
class FlowKey:
    """One denied flow as the BPF program keys it. For ICMP, ``source_port`` and ``dest_port`` hold type and code."""

    policy: str
    proto: int
    source_ip: str
    source_port: int
    dest_ip: str
    dest_port: int
    reporter: str = "dst"
    netns: int = 0


@dataclass(slots=True)
class _Totals:
    packets: int = 0
    bytes: int = 0
    first_seen: float = 0.0
    started: bool = False


def _all_policies(label: str) -> list[str]:
    """Calico's ``index|tier|name|action|rule`` form; the tier is the label's namespace part, as in the demo."""
    tier = label.split("/", 1)[0] if "/" in label else "default"
    return [f"0|{tier}|{label}|deny|0"]


def _is_icmp(proto: int) -> bool:
    return proto in (1, 58)


@dataclass
class FlowAggregator:
    """Per-flow totals of one flush interval. ``add`` is called from the drain, ``flush`` from the same thread."""

    host: str = field(default_factory=socket.gethostname)
    clock: Callable[[], float] = time.time
    _current: dict[FlowKey, _Totals] = field(default_factory=dict)
    _known: set[FlowKey] = field(default_factory=set)
    _interval_start: float | None = None

    def add(self, deltas: Mapping[FlowKey, tuple[int, int]]) -> None:
        now = self.clock()
        if self._interval_start is None:
            self._interval_start = now
        for key, (packets, octets) in deltas.items():
            if packets <= 0 and octets <= 0:
                continue
            totals = self._current.get(key)
            if totals is None:
                totals = self._current[key] = _Totals(first_seen=now, started=key not in self._known)
            totals.packets += packets
            totals.bytes += octets

    def flush(self) -> list[dict[str, Any]]:
        """The records of the interval that ends now; flows seen before count as continuing (not started)."""
        end = self.clock()
        start = self._interval_start if self._interval_start is not None else end
        records = [self._record(key, totals, start, end) for key, totals in self._current.items()]
        # A flow seen in this interval is known to the next; one idle for a whole interval starts again.
        self._known = set(self._current)
        self._current = {}
        self._interval_start = None
        return records

    def _record(self, key: FlowKey, totals: _Totals, start: float, end: float) -> dict[str, Any]:
        direction = "in" if key.reporter == "dst" else "out"
        icmp = _is_icmp(key.proto)
        # An overflow record (the flow map was full) or a packet that was not IP knows no addresses or ports.
        source_ip, dest_ip = _ip_or_none(key.source_ip), _ip_or_none(key.dest_ip)
        no_ports = icmp or source_ip is None
        record: dict[str, Any] = {
            "start_time": int(start),
            "end_time": int(end),
            "action": "deny",
            "reporter": key.reporter,
            "host": self.host,
            "proto": PROTO_NAMES.get(key.proto, str(key.proto)) if key.proto else None,
            "source_ip": source_ip,
            "source_port": None if no_ports else key.source_port,
            "source_type": "net",
            "source_name": "-",
            "source_name_aggr": "pub" if _is_public(key.source_ip) else "pvt",
            "source_namespace": "-",
            "dest_ip": dest_ip,
            "dest_port": None if no_ports else key.dest_port,
            "dest_type": "net",
            "dest_name": "-",
            "dest_name_aggr": "pub" if _is_public(key.dest_ip) else "pvt",
            "dest_namespace": "-",
            "policies": {"all_policies": _all_policies(key.policy)},
            "num_flows": 1,
            "num_flows_started": 1 if totals.started else 0,
            "num_flows_completed": 0,
            "packets_in": 0,
            "packets_out": 0,
            "bytes_in": 0,
            "bytes_out": 0,
        }
        record[f"packets_{direction}"] = totals.packets
        record[f"bytes_{direction}"] = totals.bytes
        if icmp:
            record["icmp_type"], record["icmp_code"] = key.source_port, key.dest_port
        return record


def _ip_or_none(address: str) -> str | None:
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None


def _is_public(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_global
    except ValueError:
        return False


def record_id(record: Mapping[str, Any]) -> str:
    """The same record always gets the same ``_id``: a resent batch replaces, never duplicates."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def bulk_body(records: Iterable[Mapping[str, Any]], index: str) -> bytes:
    lines: list[bytes] = []
    for record in records:
        lines.append(json.dumps({"create": {"_index": index, "_id": record_id(record)}}).encode())
        lines.append(json.dumps(record, separators=(",", ":")).encode())
    return b"\n".join(lines) + b"\n"


class ShipperMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.shipped = Counter(
            "policywatch_collector_flow_records_shipped",
            "Flow records the bulk endpoint acknowledged as stored (or as already stored).",
            registry=registry,
        )
        self.dropped = Counter(
            "policywatch_collector_flow_records_dropped",
            "Flow records given up: the buffer was full, or the endpoint refused them as invalid.",
            ["reason"],
            registry=registry,
        )
        self.buffered = Gauge(
            "policywatch_collector_flow_records_buffered", "Flow records waiting to be shipped.", registry=registry
        )
        self.failures = Counter(
            "policywatch_collector_flow_ship_failures",
            "Bulk requests that failed and will be retried (connection errors, 429 and 5xx).",
            registry=registry,
        )


class FlowShipper:
    """Ships records from a bounded buffer on its own thread, with exponential back-off, never blocking ``offer``."""

    def __init__(
        self,
        url: str,
        *,
        registry: CollectorRegistry,
        index: str = DEFAULT_INDEX,
        token: str | None = None,
        ca_file: str | None = None,
        buffer_records: int = 100_000,
        batch_records: int = 1_000,
        backoff: tuple[float, float] = (0.5, 30.0),
        timeout: float = 10.0,
    ) -> None:
        base = url.rstrip("/")
        self.url = base if base.endswith("/_bulk") else f"{base}/_bulk"
        self.index = index
        self._buffer: deque[dict[str, Any]] = deque()
        self._limit = buffer_records
        self._batch = batch_records
        self._backoff = backoff
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.metrics = ShipperMetrics(registry)
        headers = {"content-type": "application/x-ndjson"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._client = httpx.Client(headers=headers, timeout=timeout, verify=ca_file or True)

    def offer(self, records: Iterable[dict[str, Any]]) -> None:
        with self._lock:
            for record in records:
                if len(self._buffer) >= self._limit:
                    self.metrics.dropped.labels("buffer_full").inc()
                    continue
                self._buffer.append(record)
            self.metrics.buffered.set(len(self._buffer))
        self._wake.set()

    def pending(self) -> int:
        with self._lock:
            return len(self._buffer)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="flow-shipper", daemon=True)
        self._thread.start()

    def stop(self, *, flush_timeout: float = 5.0) -> None:
        """Try to deliver what is buffered for up to ``flush_timeout`` seconds, then stop."""
        deadline = time.monotonic() + flush_timeout
        while self.pending() and time.monotonic() < deadline and self._thread is not None:
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=flush_timeout)
        self._client.close()

    def _run(self) -> None:
        delay = self._backoff[0]
        while not self._stop.is_set():
            with self._lock:
                batch = [self._buffer[i] for i in range(min(self._batch, len(self._buffer)))]
            if not batch:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            if self.ship_once(batch):
                with self._lock:
                    for _ in batch:
                        self._buffer.popleft()
                    self.metrics.buffered.set(len(self._buffer))
                delay = self._backoff[0]
                continue
            self.metrics.failures.inc()
            # Jittered exponential back-off, so many nodes coming back do not retry in step.
            self._stop.wait(timeout=delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self._backoff[1])

    def ship_once(self, batch: list[dict[str, Any]]) -> bool:
        """One bulk request. True when the batch is settled (stored, already there, or refused as invalid)."""
        try:
            response = self._client.post(self.url, content=bulk_body(batch, self.index))
        except httpx.HTTPError as error:
            log.warning("flow logs: %s unreachable (%s); retrying", self.url, error)
            return False
        if response.status_code == 429 or response.status_code >= 500:
            log.warning("flow logs: %s answered %d; retrying", self.url, response.status_code)
            return False
        if response.status_code in (401, 403, 404, 407):
            # Credentials or URL wrong: nothing in the records is at fault, so keep them and retry (slowly) until
            # the configuration is fixed; the log says what the endpoint answered.
            log.error("flow logs: %s refused the bulk request: %d %s", self.url, response.status_code, response.text)
            return False
        return self._settle(batch, response)

    def _settle(self, batch: list[dict[str, Any]], response: httpx.Response) -> bool:
        try:
            body = response.json()
            items = body.get("items") if isinstance(body, dict) else None
        except ValueError:
            items = None
        if not isinstance(items, list) or len(items) != len(batch):
            if response.status_code < 400:
                log.warning("flow logs: %s answered no per-record result; retrying", self.url)
                return False
            # Refused as a whole (400, 413) with no per-record verdict: resending cannot succeed.
            self.metrics.dropped.labels("rejected").inc(len(batch))
            log.error(
                "flow logs: %s refused %d records: %d %s",
                self.url,
                len(batch),
                response.status_code,
                response.text[:500],
            )
            return True
        retry: list[dict[str, Any]] = []
        for record, item in zip(batch, items, strict=True):
            result: dict[str, Any] = next(iter(item.values()), {}) if isinstance(item, dict) else {}
            status = int(result.get("status", 500))
            if status < 300 or status == 409:  # 409: that _id is stored already (a resent batch)
                self.metrics.shipped.inc()
            elif status == 429 or status >= 500:
                retry.append(record)
            else:
                self.metrics.dropped.labels("rejected").inc()
                log.error("flow logs: record refused: %s", result.get("error"))
        if retry:
            # Settle what was decided; put the retryable ones back at the front, in order.
            with self._lock:
                for _ in batch:
                    self._buffer.popleft()
                self._buffer.extendleft(reversed(retry))
                self.metrics.buffered.set(len(self._buffer))
            return False
        return True


class RecordSink(Protocol):
    def offer(self, records: Iterable[dict[str, Any]]) -> None: ...


@dataclass(frozen=True)
class FlowLogConfig:
    url: str
    flush_interval: float = 15.0
    token_file: Path | None = None
    ca_file: Path | None = None
    index: str = DEFAULT_INDEX
    map_size: int = 16384
    buffer_records: int = 100_000


class FlowLogs:
    """The agent's side: per-flow deltas of each drain in, one batch of records per flush interval out to ``sink``.

    Called from the drain thread only; the sink (a FlowShipper) never blocks it."""

    def __init__(
        self,
        *,
        aggregator: FlowAggregator,
        sink: RecordSink,
        flush_interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.aggregator = aggregator
        self._sink = sink
        self._interval = flush_interval
        self._clock = clock
        self._last_flush = clock()

    def add(self, deltas: Mapping[FlowKey, tuple[int, int]]) -> None:
        if deltas:
            self.aggregator.add(deltas)

    def tick(self) -> None:
        now = self._clock()
        if now - self._last_flush >= self._interval:
            self._last_flush = now
            self.flush()

    def flush(self) -> None:
        records = self.aggregator.flush()
        if records:
            self._sink.offer(records)
