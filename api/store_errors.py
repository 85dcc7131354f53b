"""The object store's outcomes that the API turns into HTTP errors (404, 409, 410)."""

from __future__ import annotations

from api.resources import Kind


class ObjectStoreError(Exception):
    """Base of the store's outcomes that the API turns into HTTP errors."""

    def __init__(self, kind: Kind, name: str, message: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(message)


class NotFound(ObjectStoreError):
    def __init__(self, kind: Kind, name: str) -> None:
        super().__init__(kind, name, f'{kind.kind} "{name}" not found')


class AlreadyExists(ObjectStoreError):
    def __init__(self, kind: Kind, name: str) -> None:
        super().__init__(kind, name, f'{kind.kind} "{name}" already exists; use PUT (replace/apply) to change it')


class Expired(Exception):
    """A watch from a resourceVersion whose later changes are no longer all kept."""

    def __init__(self, sent: int, oldest: int) -> None:
        self.oldest = oldest
        super().__init__(
            f"too old resource version: {sent} (oldest kept: {oldest}); list again and watch from its resourceVersion"
        )


class Conflict(ObjectStoreError):
    def __init__(self, kind: Kind, name: str, sent: int, current: int | None) -> None:
        now = f"is now {current}" if current is not None else "changed meanwhile"
        super().__init__(
            kind,
            name,
            f'{kind.kind} "{name}" was modified: resourceVersion {sent} {now}; get it again and re-apply your change',
        )


class UidConflict(ObjectStoreError):
    def __init__(self, kind: Kind, name: str, sent: str, current: str) -> None:
        super().__init__(
            kind,
            name,
            f'{kind.kind} "{name}": precondition failed: uid {sent} in the request, but the object is now uid '
            f"{current} (it was deleted and created again); get it again and re-apply your change",
        )
