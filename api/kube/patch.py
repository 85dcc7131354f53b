"""PATCH documents: JSON merge patch (RFC 7386, what ``kubectl apply`` and ``kubectl edit`` send for these
kinds) and JSON patch (RFC 6902, ``kubectl patch --type=json``). Pure functions over decoded JSON; the
route applies the result to the current object and stores it like a PUT."""

from __future__ import annotations

import copy
from typing import Any

from api.http import ApiError
from evaluator.alerts import FieldError

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (MERGE_PATCH, JSON_PATCH)


class PatchError(ApiError):
    """A patch that cannot be applied to the object (422 Invalid, the patch's path as the cause)."""

    def __init__(self, message: str, path: list[str] | None = None) -> None:
        field = ".".join(path) if path else "patch"
        super().__init__(422, "Invalid", message, errors=[FieldError(field, None, message)])


def patch_type(content_type: str | None) -> str:
    media = (content_type or "").split(";")[0].strip().lower()
    if media in PATCH_TYPES:
        return media
    if media == STRATEGIC_MERGE_PATCH:
        hint = "strategic merge patch is for built-in kinds; use --type=merge or --type=json"
    elif media == APPLY_PATCH:
        hint = "server-side apply is not supported; use kubectl apply without --server-side"
    else:
        hint = f"send {MERGE_PATCH} or {JSON_PATCH}"
    raise ApiError(415, "UnsupportedMediaType", f"PATCH with Content-Type {media or '(none)'!r}: {hint}")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, ``null`` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(document: Any, operations: Any) -> Any:
    """RFC 6902: add, remove, replace, move, copy and test, applied in order to a copy of ``document``."""
    if not isinstance(operations, list):
        raise ApiError(400, "BadRequest", "a JSON patch is a list of operations ({op, path, value})")
    result = copy.deepcopy(document)
    for index, operation in enumerate(operations):
        where = f"operation {index}"
        if not isinstance(operation, dict) or not isinstance(operation.get("op"), str):
            raise ApiError(400, "BadRequest", f"{where}: must be an object with op and path")
        op = operation["op"]
        path = _pointer(operation.get("path"), where)
        if op in ("add", "replace", "test") and "value" not in operation:
            raise ApiError(400, "BadRequest", f"{where} ({op} {operation['path']}): value missing")
        if op == "add":
            result = _add(result, path, copy.deepcopy(operation["value"]), where)
        elif op == "remove":
            result = _remove(result, path, where)[0]
        elif op == "replace":
            result = _remove(result, path, where)[0]
            result = _add(result, path, copy.deepcopy(operation["value"]), where)
        elif op in ("move", "copy"):
            source = _pointer(operation.get("from"), f"{where} from")
            if op == "move" and path[: len(source)] == source and len(path) > len(source):
                raise PatchError(f"{where}: cannot move {operation['from']} into itself")
            if op == "move":
                result, value = _remove(result, source, where)
            else:
                value = copy.deepcopy(_get(result, source, where))
            result = _add(result, path, value, where)
        elif op == "test":
            if _get(result, path, where) != operation["value"]:
                raise PatchError(f"{where}: test failed: {operation['path']} is not {operation['value']!r}", path)
        else:
            raise ApiError(
                400, "BadRequest", f"{where}: unknown op {op!r}; valid: add, remove, replace, move, copy, test"
            )
    return result


def _pointer(value: Any, where: str) -> list[str]:
    if not isinstance(value, str) or (value and not value.startswith("/")):
        raise ApiError(400, "BadRequest", f"{where}: path must be a JSON pointer such as /spec/severity")
    if value == "":
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in value[1:].split("/")]


def _index(container: list[Any], token: str, where: str, *, insert: bool) -> int:
    if token == "-" and insert:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"{where}: {token!r} is not an array index")
    index = int(token)
    if index > len(container) or (index == len(container) and not insert):
        raise PatchError(f"{where}: index {index} is out of range (length {len(container)})")
    return index


def _parent(document: Any, path: list[str], where: str) -> Any:
    node = document
    for token in path[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, where, insert=False)]
        else:
            raise PatchError(f"{where}: /{'/'.join(path)} does not exist", path)
    return node


def _get(document: Any, path: list[str], where: str) -> Any:
    if not path:
        return document
    parent = _parent(document, path, where)
    if isinstance(parent, dict) and path[-1] in parent:
        return parent[path[-1]]
    if isinstance(parent, list):
        return parent[_index(parent, path[-1], where, insert=False)]
    raise PatchError(f"{where}: /{'/'.join(path)} does not exist", path)


def _add(document: Any, path: list[str], value: Any, where: str) -> Any:
    if not path:
        return value
    parent = _parent(document, path, where)
    if isinstance(parent, dict):
        parent[path[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, path[-1], where, insert=True), value)
    else:
        raise PatchError(f"{where}: the parent of /{'/'.join(path)} is not an object or array", path)
    return document


def _remove(document: Any, path: list[str], where: str) -> tuple[Any, Any]:
    if not path:
        return None, document
    parent = _parent(document, path, where)
    if isinstance(parent, dict) and path[-1] in parent:
        return document, parent.pop(path[-1])
    if isinstance(parent, list):
        return document, parent.pop(_index(parent, path[-1], where, insert=False))
    raise PatchError(f"{where}: /{'/'.join(path)} does not exist", path)
