"""OpenAPI description of the resources.

Requests are decoded (JSON or YAML) and validated by ``evaluator.alerts`` into the spec model of
``evaluator.spec`` (re-exported here as ``GlobalAlertSpec`` / ``GlobalAlertTemplateSpec``), so /openapi.json
shows the very model that checks a request; the envelope models around it describe the wire shapes.
``inline_schema`` flattens a model's ``$defs`` (and drops the ``null`` branch of optional fields, which the
wire form omits instead) so the schema can sit inside an operation.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api.http import JSON_TYPE, YAML_TYPE
from evaluator.alerts import NAME_MAX, NAME_PATTERN
from evaluator.spec import GlobalAlertSpec, GlobalAlertTemplateSpec, Substitution

__all__ = [
    "AlertSpecModel",
    "AlertStatusModel",
    "GlobalAlertListModel",
    "GlobalAlertModel",
    "GlobalAlertSpec",
    "GlobalAlertStatus",
    "GlobalAlertTemplateListModel",
    "GlobalAlertTemplateModel",
    "GlobalAlertTemplateSpec",
    "Substitution",
    "body_content",
    "document_bad_request",
    "error_responses",
    "inline_schema",
]


class ObjectMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        ...,
        max_length=NAME_MAX,
        pattern=f"^{NAME_PATTERN.pattern}$",
        description="DNS-1123 subdomain",
    )
    resourceVersion: str | None = Field(None, description="send back on PUT to guard against lost updates")
    uid: str | None = Field(None, description="server-set")
    generation: int | None = Field(None, description="server-set; grows when the spec changes")
    creationTimestamp: str | None = Field(None, description="server-set, RFC 3339")
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


# The spec models are ``evaluator.spec``'s, the ones validation uses: documented here as they are checked.
AlertSpecModel = GlobalAlertSpec


class ErrorConditionModel(BaseModel):
    type: str
    message: str


class GlobalAlertStatus(BaseModel):
    """Server-owned (``evaluator.alerts.AlertStatus``): written by the scheduler, ignored on write."""

    model_config = ConfigDict(title="GlobalAlertStatus")

    lastUpdate: str | None = None
    active: bool = False
    healthy: bool = False
    executionState: str = ""
    lastExecuted: str | None = None
    lastEvent: str | None = None
    errorConditions: list[ErrorConditionModel] = []


AlertStatusModel = GlobalAlertStatus


class GlobalAlertModel(BaseModel):
    model_config = ConfigDict(extra="forbid", title="GlobalAlert")

    apiVersion: Literal["projectcalico.org/v3"] = "projectcalico.org/v3"
    kind: Literal["GlobalAlert"] = "GlobalAlert"
    metadata: ObjectMeta
    spec: GlobalAlertSpec
    status: GlobalAlertStatus | None = Field(None, description="server-owned; ignored on write")


class GlobalAlertTemplateModel(BaseModel):
    model_config = ConfigDict(extra="forbid", title="GlobalAlertTemplate")

    apiVersion: Literal["projectcalico.org/v3"] = "projectcalico.org/v3"
    kind: Literal["GlobalAlertTemplate"] = "GlobalAlertTemplate"
    metadata: ObjectMeta
    spec: GlobalAlertTemplateSpec


class ListMeta(BaseModel):
    resourceVersion: str | None = None
    continue_: str | None = Field(None, alias="continue", description="pass as ?continue= for the next page")


class GlobalAlertListModel(BaseModel):
    model_config = ConfigDict(title="GlobalAlertList")

    apiVersion: str
    kind: Literal["GlobalAlertList"]
    metadata: ListMeta
    items: list[GlobalAlertModel]


class GlobalAlertTemplateListModel(BaseModel):
    model_config = ConfigDict(title="GlobalAlertTemplateList")

    apiVersion: str
    kind: Literal["GlobalAlertTemplateList"]
    metadata: ListMeta
    items: list[GlobalAlertTemplateModel]


class FieldErrorModel(BaseModel):
    path: str
    value: Any = None
    reason: str


class StatusModel(BaseModel):
    model_config = ConfigDict(title="Status")

    apiVersion: str
    kind: Literal["Status"]
    status: Literal["Failure"]
    code: int
    reason: str
    message: str
    errors: list[FieldErrorModel] | None = None


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema with every ``$ref`` into ``$defs`` replaced by the definition."""
    schema = model.model_json_schema(by_alias=True)
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            branches = node.get("anyOf")
            if isinstance(branches, list) and len(branches) == 2 and {"type": "null"} in branches:
                kept = next(b for b in branches if b != {"type": "null"})
                rest = {k: v for k, v in node.items() if k != "anyOf" and not (k == "default" and v is None)}
                return {**resolve(kept), **resolve(rest)}
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def body_content(model: type[BaseModel]) -> dict[str, Any]:
    schema = inline_schema(model)
    return {JSON_TYPE: {"schema": schema}, YAML_TYPE: {"schema": schema}}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "malformed body or parameter",
        401: "missing or unknown bearer token",
        403: "token lacks the write role",
        404: "not found",
        409: "already exists, or resourceVersion is stale",
        413: "body over the size limit",
        415: "unsupported Content-Type",
        422: "invalid object: every offending field with its value and the reason",
    }
    content = {JSON_TYPE: {"schema": inline_schema(StatusModel)}}
    return {code: {"description": descriptions[code], "content": content} for code in codes}


def document_bad_request(openapi: dict[str, Any]) -> dict[str, Any]:
    """Malformed parameters answer 400 with a ``Status`` (``api.errors``), not FastAPI's default 422
    ``HTTPValidationError``: say so in every operation's documented responses."""
    bad_request = error_responses(400)[400]
    for item in openapi.get("paths", {}).values():
        for operation in item.values():
            responses = operation.get("responses") if isinstance(operation, dict) else None
            if not isinstance(responses, dict):
                continue
            default_422 = responses.get("422", {})
            schema_ref = str(default_422.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref"))
            if schema_ref.endswith("/HTTPValidationError"):
                del responses["422"]
                responses.setdefault("400", bad_request)
    return openapi
