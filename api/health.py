"""``GET /healthz``: liveness. An ``async`` route that touches neither the database nor the thread pool,
so it answers at once even while every worker thread waits on a database lock (a liveness probe that
queued behind them would have the pod restarted for a busy database)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process serves requests")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
