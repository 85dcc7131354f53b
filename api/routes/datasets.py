"""``POST /datasets/{flows|dns|audit}/_bulk`` and the audit webhook: log records into the embedded store.

The body is NDJSON (Elasticsearch action lines honoured), a JSON array, a kube-apiserver audit
``EventList`` or one object, optionally gzip/deflate. A request is stored in one transaction; the answer
reports each line that was not stored. 2xx only when the request's records are in the store.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import ServicesDep
from api.http import ApiError, render
from api.ingest import BodyRefused, IngestUnavailable, ingest_slot, read_ingest_body, run_ingest
from evaluator.engine.ingest import ingest_records
from evaluator.query import DATASETS

router = APIRouter(prefix="/datasets", tags=["datasets"])
_REFUSED = {400: "BadRequest", 413: "RequestEntityTooLarge", 415: "UnsupportedMediaType"}
_UNAVAILABLE = {429: "TooManyRequests", 503: "ServiceUnavailable"}


@router.post(
    "/{dataset}/_bulk",
    summary="Ingest log records (NDJSON, JSON array, audit EventList); bad lines reported, the rest stored once",
)
async def bulk(dataset: str, request: Request, services: ServicesDep) -> Response:
    if dataset not in DATASETS:
        raise ApiError(404, "NotFound", f"unknown data set {dataset!r}; valid: {', '.join(DATASETS)}")
    return await _ingest(dataset, request, services)


@router.post(
    "/audit/webhook",
    summary="kube-apiserver audit webhook backend: an audit.k8s.io/v1 EventList (or one Event) per request",
)
async def audit_webhook(request: Request, services: ServicesDep) -> Response:
    return await _ingest("audit", request, services)


async def _ingest(dataset: str, request: Request, services: ServicesDep) -> Response:
    runtime = services.runtime
    sql_logs = runtime.sql_logs
    if sql_logs is None:
        raise ApiError(
            409, "Conflict", "logs are read from OpenSearch (POLICYWATCH_LOG_STORE=opensearch): ingest there"
        )
    settings = services.settings
    try:
        async with ingest_slot(request):
            body = await read_ingest_body(request, settings.ingest_max_bytes)
            report = await run_ingest(
                request, sql_logs.engine, ingest_records, dataset, body, lock_timeout=settings.ingest_wait
            )
    except BodyRefused as exc:
        raise ApiError(exc.status, _REFUSED.get(exc.status, "BadRequest"), exc.message) from exc
    except IngestUnavailable as exc:
        raise ApiError(exc.status, _UNAVAILABLE[exc.status], exc.message, headers=exc.headers) from exc
    answer = report.to_json()
    if report.documents == 0:
        raise ApiError(
            400, "BadRequest", f"no {dataset} records in the body; send NDJSON, a JSON array or an EventList"
        )
    if report.stored_nothing:
        answer["message"] = f"none of the {report.documents} records was stored; see errors"
        return render(request, answer, status_code=400)
    return render(request, answer)
