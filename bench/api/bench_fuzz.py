"""Fuzz benchmark: schemathesis against a real ``policywatch-evaluator`` on SQLite and on PostgreSQL (issue 17).

Each store gets its own evaluator process (``python -m api.server``, scheduler on, as deployed), migrated at
start, listening on loopback. Every operation of its ``/openapi.json`` gets ``--examples`` generated cases
(half positive, half negative data, schemathesis 4 driven by Hypothesis), sent over real HTTP. Printed per
store and per operation: cases sent, 5xx answers (target 0) and distinct failures of the checks
not_a_server_error, status_code_conformance and content_type_conformance; then the first reproducer of each
distinct 5xx (method, path, body) so it can be replayed with curl. Where the served OpenAPI document
describes no request body (the dry run and the bulk routes read the raw request) the bench adds one, see
``with_request_bodies``.

    .venv/bin/python bench/api/bench_fuzz.py [--examples 300] [--postgres] [--no-sqlite] [--seed 0]

``--postgres`` adds a throwaway PostgreSQL (devstack.services.PostgresServer) beside SQLite; ``--postgres
--no-sqlite`` runs only PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import content_type_conformance, not_a_server_error, status_code_conformance
from schemathesis.core.failures import Failure, FailureGroup

from devstack.services import EvaluatorServer, PostgresServer

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance]
REQUEST_TIMEOUT = 30.0


@dataclass
class OperationFigures:
    cases: int = 0
    server_errors: int = 0
    transport_errors: int = 0
    failures: set[str] = field(default_factory=set)
    reproducers: dict[str, str] = field(default_factory=dict)  # 5xx signature -> one reproducer
    statuses: Counter[int] = field(default_factory=Counter)


def _reproducer(case: schemathesis.Case, status: int, text: str) -> str:
    body = "" if case.body is None or type(case.body).__name__ == "NotSet" else case.body
    shown = body if isinstance(body, (str, bytes)) else json.dumps(body, default=repr)
    if isinstance(shown, bytes):
        shown = shown.decode("utf-8", "backslashreplace")
    query = f"?{httpx.QueryParams(case.query)}" if case.query else ""
    return (
        f"{case.method} {case.formatted_path}{query} media_type={case.media_type} body={shown[:300]!r}"
        f" -> {status} {text[:200]!r}"
    )


def fuzz_operation(operation: Any, base_url: str, examples: int, rng_seed: int) -> OperationFigures:
    figures = OperationFigures()
    strategies = []
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
        try:
            strategies.append(operation.as_strategy(generation_mode=mode))
        except Exception as error:  # an operation with no negative form, for one
            figures.failures.add(f"{mode.value} strategy: {type(error).__name__}: {error}")
    if not strategies:
        return figures
    session = httpx.Client(timeout=REQUEST_TIMEOUT)

    @seed(rng_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # count cases; shrinking would resend them
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(*strategies))
    def run(case: schemathesis.Case) -> None:
        figures.cases += 1
        try:
            response = case.call(base_url=base_url, timeout=REQUEST_TIMEOUT)
        except Exception as error:  # connection reset, timeout: the server did not answer
            figures.transport_errors += 1
            figures.failures.add(f"transport: {type(error).__name__}")
            return
        figures.statuses[response.status_code] += 1
        if response.status_code >= 500:
            figures.server_errors += 1
            signature = f"{response.status_code} {response.text[:120]}"
            figures.reproducers.setdefault(signature, _reproducer(case, response.status_code, response.text))
        try:
            case.validate_response(response, checks=CHECKS)
        except (FailureGroup, Failure) as error:
            for failure in error.exceptions if isinstance(error, FailureGroup) else [error]:
                detail = " ".join(str(failure).split())  # the check's title and its Received/Documented lines
                figures.failures.add(f"{type(failure).__name__}: {detail[:160]}")

    try:
        run()
    except Exception as error:  # Hypothesis giving up on an operation is a finding, not a crash of the run
        figures.failures.add(f"hypothesis: {type(error).__name__}: {str(error).splitlines()[0][:160]}")
    finally:
        session.close()
    return figures


@schemathesis.serializer("application/x-ndjson")
def _ndjson(_context: Any, value: Any) -> bytes:
    lines = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def with_request_bodies(raw: dict[str, Any]) -> dict[str, Any]:
    """The served document with the bodies it does not describe (the dry run and bulk routes read the raw
    request): without them schemathesis would send those operations no body at all. The dry run takes a
    GlobalAlert, the bulk routes NDJSON lines (index actions and flow/dns/audit-like records, in any order), and
    ``/datasets/{dataset}/_bulk`` names a real data set in positive cases."""
    paths = raw["paths"]
    alert_body = paths["/globalalerts"]["post"]["requestBody"]
    dry_run = paths.get("/globalalerts/test", {}).get("post")
    if dry_run is not None and not dry_run.get("requestBody"):
        dry_run["requestBody"] = alert_body
    index = {"type": "string", "enum": ["flows", "dns", "audit", "tigera_secure_ee_flows.cluster"]}
    action = {"type": "object", "properties": {"index": {"type": "object", "properties": {"_index": index}}},
              "required": ["index"]}  # fmt: skip
    record = {"type": "object", "properties": {
        "end_time": {"type": "integer"}, "action": {"enum": ["allow", "deny"]}, "dest_port": {"type": "integer"},
        "source_namespace": {"type": "string"}, "num_flows": {"type": "integer"}, "qname": {"type": "string"},
        "requestReceivedTimestamp": {"type": "string", "format": "date-time"}, "verb": {"type": "string"},
    }}  # fmt: skip
    lines = {"type": "array", "items": {"anyOf": [action, record]}, "minItems": 1, "maxItems": 6}
    bulk_body = {"required": True, "content": {"application/x-ndjson": {"schema": lines}}}
    for path in ("/_bulk", "/{index}/_bulk", "/datasets/{dataset}/_bulk", "/datasets/audit/webhook"):
        operation = paths.get(path, {}).get("post")
        if operation is not None and not operation.get("requestBody"):
            operation["requestBody"] = bulk_body
    for parameter in paths.get("/datasets/{dataset}/_bulk", {}).get("post", {}).get("parameters", []):
        if parameter["name"] == "dataset":
            parameter["schema"] = {"type": "string", "enum": ["flows", "dns", "audit"]}
    return raw


def fuzz_store(database_url: str, workdir: Path, examples: int, rng_seed: int) -> dict[str, OperationFigures]:
    evaluator = EvaluatorServer(database_url, log_path=workdir / "evaluator.log", args=["--log-level", "error"])
    try:
        raw = httpx.get(f"{evaluator.url}/openapi.json", timeout=10).raise_for_status().json()
        schema = schemathesis.openapi.from_dict(with_request_bodies(raw))
        results: dict[str, OperationFigures] = {}
        for result in schema.get_all_operations():
            operation = result.ok()
            label = f"{operation.method.upper()} {operation.path}"
            results[label] = fuzz_operation(operation, evaluator.url, examples, rng_seed)
            figures = results[label]
            print(f"  {label:<62} {figures.cases:>6} cases {figures.server_errors:>4} 5xx", file=sys.stderr)
        if not evaluator.process.alive():
            raise RuntimeError(f"evaluator died during the run: {evaluator.process.log_tail(40)}")
        return results
    finally:
        evaluator.stop()


def report(store: str, results: dict[str, OperationFigures], seconds: float) -> int:
    total_cases = sum(f.cases for f in results.values())
    total_5xx = sum(f.server_errors for f in results.values())
    print(f"\n== {store}: {len(results)} operations, {total_cases} cases, {total_5xx} x 5xx, {seconds:.0f} s")
    print(f"{'operation':<62} {'cases':>6} {'5xx':>5} {'no answer':>9} {'failures':>8}  statuses")
    for label, figures in results.items():
        statuses = " ".join(f"{code}:{n}" for code, n in sorted(figures.statuses.items()))
        print(
            f"{label:<62} {figures.cases:>6} {figures.server_errors:>5} {figures.transport_errors:>9}"
            f" {len(figures.failures):>8}  {statuses}"
        )
    for label, figures in results.items():
        for failure in sorted(figures.failures):
            print(f"  failure {label}: {failure}")
        for reproducer in figures.reproducers.values():
            print(f"  5xx reproducer: {reproducer}")
    verdict = "met" if total_5xx == 0 else "NOT met"
    print(f"target 0 x 5xx on {store}: {verdict} ({total_5xx})")
    return total_5xx


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=300, help="generated cases per operation (default 300)")
    parser.add_argument("--postgres", action="store_true", help="also run on a throwaway PostgreSQL")
    parser.add_argument("--no-sqlite", action="store_true", help="skip SQLite (with --postgres)")
    parser.add_argument("--seed", type=int, default=0, help="Hypothesis seed (same seed, same cases)")
    args = parser.parse_args()
    stores = ([] if args.no_sqlite else ["SQLite"]) + (["PostgreSQL"] if args.postgres else [])
    if not stores:
        parser.error("nothing to run: --no-sqlite without --postgres")
    print(
        f"policywatch fuzz benchmark: schemathesis {schemathesis.SCHEMATHESIS_VERSION}, {args.examples} examples "
        f"per operation (positive + negative), seed {args.seed}, {os.cpu_count()} CPUs"
    )
    total_5xx = 0
    summary: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="pw-fuzz-") as tmp:
        for store in stores:
            server = PostgresServer().start() if store == "PostgreSQL" else None
            try:
                url = server.create_database("fuzz") if server else f"sqlite:///{Path(tmp) / 'fuzz.db'}"
                print(f"-- {store} ...", file=sys.stderr)
                began = time.monotonic()
                results = fuzz_store(url, Path(tmp), args.examples, args.seed)
                summary[store] = report(store, results, time.monotonic() - began)
                total_5xx += summary[store]
            finally:
                if server is not None:
                    server.stop()
    print(json.dumps({f"{store} 5xx": n for store, n in summary.items()}))
    return 1 if total_5xx else 0


if __name__ == "__main__":
    sys.exit(main())
