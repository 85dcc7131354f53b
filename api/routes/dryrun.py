"""``POST /globalalerts/test``: what a GlobalAlert would report (``?at=`` one run, ``?from=&to=`` every
period of a range), computed over the logs, writing nothing. Answers ``{"events": [...]}``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from api.deps import ObjectBody, ServicesDep
from api.http import ApiError
from api.querytypes import QueryTime
from api.resources import GLOBAL_ALERT, parse_object
from evaluator.engine.dryrun import DryRunError, replay
from evaluator.engine.model import BucketCapReached, StoreError
from evaluator.query import QueryError

router = APIRouter(tags=["GlobalAlert"])


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@router.post("/globalalerts/test", summary="Dry run of a GlobalAlert (nothing is stored)")
async def dry_run(
    services: ServicesDep,
    body: ObjectBody,
    at: Annotated[QueryTime | None, Query(description="RFC 3339 time of one run (default now)")] = None,
    from_: Annotated[QueryTime | None, Query(alias="from", description="RFC 3339 first run of a replay")] = None,
    to: Annotated[QueryTime | None, Query(description="RFC 3339 end of a replay")] = None,
) -> dict[str, Any]:
    at, start, end = _aware(at), _aware(from_), _aware(to)
    if at is not None and (start is not None or end is not None):
        raise ApiError(400, "BadRequest", "pass either at=TIME or from=TIME&to=TIME, not both")
    if (start is None) != (end is None):
        raise ApiError(400, "BadRequest", "a replay needs both from= and to= (RFC 3339 times)")
    obj = parse_object(body, kind=GLOBAL_ALERT, catalog=services.catalog, flush_intervals=services.flush_intervals)
    if start is None or end is None:
        start = end = at or datetime.now(UTC)
    runtime = services.runtime
    try:
        events = await run_in_threadpool(
            lambda: replay(
                name=obj.name,
                spec=obj.spec,
                store=runtime.log_store,
                start=start,
                end=end,
                bucket_cap=runtime.settings.bucket_cap,
            )
        )
    except DryRunError as exc:
        raise ApiError(400, "BadRequest", str(exc)) from exc
    except (BucketCapReached, QueryError) as exc:
        raise ApiError(422, "Invalid", str(exc)) from exc
    except StoreError as exc:
        raise ApiError(503, "ServiceUnavailable", str(exc)) from exc
    return {"events": [e.to_json() for e in events]}
