"""Benchmark: flow records/s the collector's shipper delivers to a real evaluator's ``POST /_bulk``.

The collector's ``FlowShipper`` (bounded buffer, batches of 1,000, its own thread) ships N denied-flow records
built by ``FlowAggregator`` to a ``policywatch-evaluator`` on SQLite. The baseline, in the same run and against a
second evaluator on its own SQLite file, posts the very same bulk bodies in a plain loop on one connection: what
the endpoint costs without the shipper. Both must end with every record acknowledged once.

    .venv/bin/python bench/collector/bench_flowship.py [--records 20000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx
from prometheus_client import CollectorRegistry

from collector.flowlogs import FlowAggregator, FlowKey, FlowShipper, bulk_body
from devstack.services import EvaluatorServer

BATCH = 1_000


def records(count: int) -> list[dict[str, object]]:
    flows = FlowAggregator(host="bench-node")
    flows.add(
        {
            FlowKey("bench/deny", 6, f"10.9.{i // 250 % 250}.{i % 250 + 1}", 1024 + i % 60000, "10.8.0.2", 5432): (
                3,
                180,
            )
            for i in range(count)
        }
    )
    return flows.flush()


def baseline(url: str, batch: list[dict[str, object]]) -> float:
    started = time.perf_counter()
    with httpx.Client(headers={"content-type": "application/x-ndjson"}, timeout=60) as client:
        for i in range(0, len(batch), BATCH):
            response = client.post(f"{url}/_bulk", content=bulk_body(batch[i : i + BATCH], "tigera_secure_ee_flows"))
            if response.status_code != 200 or response.json()["errors"]:
                raise SystemExit(f"baseline bulk failed: {response.status_code} {response.text[:300]}")
    return len(batch) / (time.perf_counter() - started)


def shipper(url: str, batch: list[dict[str, object]]) -> float:
    registry = CollectorRegistry()
    ship = FlowShipper(url, registry=registry, buffer_records=len(batch), batch_records=BATCH)
    started = time.perf_counter()
    ship.offer(batch)
    ship.start()
    while ship.pending():
        time.sleep(0.005)
    elapsed = time.perf_counter() - started
    ship.stop()
    shipped = registry.get_sample_value("policywatch_collector_flow_records_shipped_total")
    if shipped != len(batch):
        raise SystemExit(f"shipper acknowledged {shipped} of {len(batch)} records")
    return len(batch) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    batch = records(args.records)
    with tempfile.TemporaryDirectory(prefix="pw-flowship-") as tmp:
        rates = {}
        for name, run in (("baseline (plain bulk loop)", baseline), ("FlowShipper", shipper)):
            log = Path(tmp) / f"evaluator-{len(rates)}.log"
            evaluator = EvaluatorServer(
                f"sqlite:///{tmp}/{len(rates)}.db", log_path=log, args=["--log-level", "warning"]
            )
            try:
                rates[name] = run(evaluator.url, batch)
            finally:
                evaluator.stop()
    for name, rate in rates.items():
        print(f"{name:28s} {rate:10,.0f} records/s")
    print(f"{'ratio shipper / baseline':28s} {rates['FlowShipper'] / rates['baseline (plain bulk loop)']:10.3f}")


if __name__ == "__main__":
    main()
