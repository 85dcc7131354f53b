"""Elasticsearch-compatible ingest: ``POST /_bulk``, ``POST /{index}/_bulk``, and what shippers probe first.

An unmodified Elasticsearch output (Fluent Bit ``es``, Vector ``elasticsearch``, Logstash, fluentd,
rsyslog ``omelasticsearch``) can point at the evaluator: the data set comes from ``_index``
(``POLICYWATCH_INGEST_INDICES``), the answers have Elasticsearch's shape and its product header, and the
probes (``GET /``, ``HEAD /``, cluster health, templates, license, nodes) answer harmlessly.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from api.deps import ServicesDep
from api.http import dump_json
from api.ingest import BodyRefused, IngestUnavailable, ingest_slot, read_ingest_body, run_ingest
from evaluator.engine.ingest import BulkMalformed, IndexPatterns, ingest_es_bulk

router = APIRouter(tags=["elasticsearch"])
# The version shippers read to pick their protocol (8.x: no mapping types).
VERSION = {
    "number": "8.11.0",
    "build_flavor": "default",
    "build_type": "tar",
    "build_hash": "policywatch",
    "build_date": "2023-11-04T10:04:57.184859352Z",
    "build_snapshot": False,
    "lucene_version": "9.8.0",
    "minimum_wire_compatibility_version": "7.17.0",
    "minimum_index_compatibility_version": "7.0.0",
}
CLUSTER = "policywatch"
NODE = "policywatch-evaluator"
# Elasticsearch clients (elasticsearch-py/-ruby 8, so fluentd and Logstash) refuse a server without it.
PRODUCT_HEADER = {"X-Elastic-Product": "Elasticsearch"}


def es_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        dump_json(body),
        status_code=status_code,
        media_type="application/json",
        headers={**PRODUCT_HEADER, **(headers or {})},
    )


def es_error(status_code: int, kind: str, reason: str, headers: dict[str, str] | None = None) -> Response:
    cause = {"type": kind, "reason": reason}
    return es_response({"error": {"root_cause": [cause], **cause}, "status": status_code}, status_code, headers)


def _patterns(request: Request) -> IndexPatterns:
    state = request.app.state
    patterns: IndexPatterns | None = getattr(state, "ingest_patterns", None)
    if patterns is None:
        patterns = state.ingest_patterns = IndexPatterns(state.services.settings.ingest_indices)
    return patterns


async def _bulk(
    request: Request, services: ServicesDep, index: str | None, single: tuple[str, str | None] | None = None
) -> Response:
    """A bulk request, or (``single`` = action, _id) one document of the document API as a bulk of one."""
    sql_logs = services.runtime.sql_logs
    if sql_logs is None:
        return es_error(
            400, "illegal_argument_exception", "logs are read from OpenSearch (POLICYWATCH_LOG_STORE): ship there"
        )
    settings = services.settings
    patterns = _patterns(request)
    try:
        async with ingest_slot(request):
            body = await read_ingest_body(request, settings.ingest_max_bytes)
            if single is not None:
                body = _one_document_bulk(body, index, *single)
            answer = await run_ingest(
                request,
                sql_logs.engine,
                ingest_es_bulk,
                body,
                default_index=index,
                patterns=patterns,
                lock_timeout=settings.ingest_wait,
            )
    except BodyRefused as exc:
        kind = {413: "content_too_long_exception", 415: "illegal_argument_exception"}.get(exc.status, "parse_exception")
        return es_error(exc.status, kind, exc.message)
    except BulkMalformed as exc:
        return es_error(400, "illegal_argument_exception", str(exc))
    except IngestUnavailable as exc:
        kind = "es_rejected_execution_exception" if exc.status == 429 else "unavailable_shards_exception"
        return es_error(exc.status, kind, exc.message, exc.headers)
    if single is not None:  # the document API answers with the one item, its status as the HTTP status
        item = next(iter(answer["items"][0].values()))
        if "error" in item:
            return es_error(item["status"], item["error"]["type"], item["error"]["reason"])
        return es_response(item, item["status"])
    return es_response(answer)


def _one_document_bulk(body: bytes, index: str | None, action: str, doc_id: str | None) -> bytes:
    meta: dict[str, Any] = {"_index": index}
    if doc_id is not None:
        meta["_id"] = doc_id
    try:  # a document may be pretty-printed; a bulk line may not
        line = orjson.dumps(orjson.loads(body))
    except orjson.JSONDecodeError as exc:
        raise BulkMalformed(1, f"the document is not JSON: {exc}") from exc
    return orjson.dumps({action: meta}) + b"\n" + line + b"\n"


@router.post("/_bulk", summary="Elasticsearch bulk API: index/create actions, the data set from _index")
async def bulk(request: Request, services: ServicesDep) -> Response:
    return await _bulk(request, services, None)


@router.put("/_bulk", include_in_schema=False)
async def bulk_put(request: Request, services: ServicesDep) -> Response:
    return await _bulk(request, services, None)


@router.post("/{index}/_bulk", summary="Elasticsearch bulk API with a default _index")
async def index_bulk(index: str, request: Request, services: ServicesDep) -> Response:
    return await _bulk(request, services, index)


@router.put("/{index}/_bulk", include_in_schema=False)
async def index_bulk_put(index: str, request: Request, services: ServicesDep) -> Response:
    return await _bulk(request, services, index)


@router.post("/{index}/_doc", summary="Elasticsearch document API: one document, its _id chosen here")
async def index_document(index: str, request: Request, services: ServicesDep) -> Response:
    return await _bulk(request, services, index, ("index", None))


@router.put("/{index}/_doc/{doc_id}", include_in_schema=False)
@router.post("/{index}/_doc/{doc_id}", include_in_schema=False)
async def index_document_id(index: str, doc_id: str, request: Request, services: ServicesDep) -> Response:
    return await _bulk(request, services, index, ("index", doc_id))


@router.put("/{index}/_create/{doc_id}", include_in_schema=False)
@router.post("/{index}/_create/{doc_id}", include_in_schema=False)
async def create_document(index: str, doc_id: str, request: Request, services: ServicesDep) -> Response:
    return await _bulk(request, services, index, ("create", doc_id))


@router.get("/", summary="Elasticsearch root: the version shippers probe")
async def root() -> Response:
    return es_response(
        {
            "name": NODE,
            "cluster_name": CLUSTER,
            "cluster_uuid": "cG9saWN5d2F0Y2gtZXZhbA",
            "version": VERSION,
            "tagline": "You Know, for Search",
        }
    )


@router.head("/", include_in_schema=False)
async def root_head() -> Response:
    return Response(status_code=200, headers=PRODUCT_HEADER, media_type="application/json")


def _health() -> dict[str, Any]:
    return {
        "cluster_name": CLUSTER,
        "status": "green",
        "timed_out": False,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": 3,
        "active_shards": 3,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 0,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": 100.0,
    }


@router.get("/_cluster/health", summary="Elasticsearch cluster health (always green: one node)")
async def cluster_health() -> Response:
    return es_response(_health())


@router.get("/_cluster/health/{index}", include_in_schema=False)
async def index_health(index: str) -> Response:
    return es_response(_health())


@router.get("/_cat/health", include_in_schema=False)
async def cat_health(request: Request) -> Response:
    now = int(time.time())
    if request.query_params.get("format") == "json":
        health = _health()
        return es_response(
            [
                {
                    "epoch": str(now),
                    "timestamp": time.strftime("%H:%M:%S", time.gmtime(now)),
                    "cluster": CLUSTER,
                    "status": "green",
                    "node.total": "1",
                    "node.data": "1",
                    "shards": str(health["active_shards"]),
                }
            ]
        )
    line = f"{now} {time.strftime('%H:%M:%S', time.gmtime(now))} {CLUSTER} green 1 1 3 3 0 0 0 0 - 100.0%\n"
    return Response(line, media_type="text/plain", headers=PRODUCT_HEADER)


# Index templates and ILM policies: shippers install them at start; kept in memory, never applied.
_TEMPLATE_KINDS = ("_index_template", "_template", "_ilm/policy", "_component_template")


def _templates(request: Request) -> dict[str, Any]:
    state = request.app.state
    templates: dict[str, Any] | None = getattr(state, "es_templates", None)
    if templates is None:
        templates = state.es_templates = {}
    return templates


def _template_routes(kind: str) -> None:
    path = f"/{kind}/{{name}}"

    @router.put(path, include_in_schema=False)
    @router.post(path, include_in_schema=False)
    async def put_template(name: str, request: Request) -> Response:
        body = await request.body()
        _templates(request)[f"{kind}/{name}"] = body.decode("utf-8", "replace")
        return es_response({"acknowledged": True})

    @router.head(path, include_in_schema=False)
    async def head_template(name: str, request: Request) -> Response:
        found = f"{kind}/{name}" in _templates(request)
        return Response(status_code=200 if found else 404, headers=PRODUCT_HEADER)

    @router.get(path, include_in_schema=False)
    async def get_template(name: str, request: Request) -> Response:
        if f"{kind}/{name}" not in _templates(request):
            return es_error(404, "resource_not_found_exception", f"{kind} [{name}] missing")
        if kind == "_index_template":
            return es_response({"index_templates": [{"name": name, "index_template": {}}]})
        return es_response({name: {}})

    @router.delete(path, include_in_schema=False)
    async def delete_template(name: str, request: Request) -> Response:
        _templates(request).pop(f"{kind}/{name}", None)
        return es_response({"acknowledged": True})


for _kind in _TEMPLATE_KINDS:
    _template_routes(_kind)


@router.get("/_license", include_in_schema=False)
async def license_info() -> Response:
    return es_response({"license": {"status": "active", "uid": CLUSTER, "type": "basic", "mode": "basic"}})


@router.get("/_xpack", include_in_schema=False)
async def xpack() -> Response:
    # No ILM and no security features: shippers then skip installing lifecycle policies.
    return es_response(
        {
            "build": {"hash": "policywatch", "date": VERSION["build_date"]},
            "license": {"uid": CLUSTER, "type": "basic", "mode": "basic", "status": "active"},
            "features": {
                "ilm": {"available": False, "enabled": False},
                "security": {"available": False, "enabled": False},
            },
        }
    )


@router.get("/_nodes", include_in_schema=False)
@router.get("/_nodes/{metric}", include_in_schema=False)
async def nodes(request: Request, metric: str = "") -> Response:
    # A sniffing client (fluentd's reload_connections) replaces its hosts with these: the one it used.
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port or 80}"
    node = {
        "name": NODE,
        "version": VERSION["number"],
        "roles": ["data", "ingest", "master"],
        "http": {"publish_address": host, "bound_address": [host]},
    }
    return es_response(
        {"_nodes": {"total": 1, "successful": 1, "failed": 0}, "cluster_name": CLUSTER, "nodes": {NODE: node}}
    )
