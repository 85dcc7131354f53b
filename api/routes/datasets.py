"""``POST /datasets/{flows|dns|audit}/_bulk``: NDJSON log records into the embedded log store."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.exc import DBAPIError

from api.deps import ServicesDep
from api.http import ApiError
from evaluator.engine.ingest import ingest_text
from evaluator.query import DATASETS

router = APIRouter(prefix="/datasets", tags=["datasets"])


@router.post(
    "/{dataset}/_bulk",
    summary="Ingest NDJSON log records (one per line); bad lines are reported, good lines kept",
)
async def bulk(dataset: str, request: Request, services: ServicesDep) -> dict[str, Any]:
    if dataset not in DATASETS:
        raise ApiError(404, "NotFound", f"unknown data set {dataset!r}; valid: {', '.join(DATASETS)}")
    runtime = services.runtime
    if runtime.sql_logs is None:
        raise ApiError(
            409, "Conflict", "logs are read from OpenSearch (POLICYWATCH_LOG_STORE=opensearch): ingest there"
        )
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "BadRequest", f"body is not UTF-8 (byte {exc.start}); send NDJSON text") from exc
    try:
        result = await run_in_threadpool(ingest_text, runtime.sql_logs.engine, dataset, text)
    except DBAPIError as exc:
        raise ApiError(503, "ServiceUnavailable", f"the log store cannot take records now: {exc.orig or exc}") from exc
    return result.to_json()
