"""The REST API's object store under ``--definitions=kubernetes``: reads from the cluster, writes refused.

The cluster is the one store of truth in this mode, so ``GET /globalalerts`` (and ``/globalalerttemplates``,
the web page, ``policywatchctl get``) serve the controller's cache of what the API server holds, status
included. Creating, replacing or deleting through the evaluator is refused with 405 and a message pointing to
kubectl: the evaluator's ServiceAccount may not write specs (its ClusterRole grants only get/list/watch and the
status subresource), and a second way to write would make two sources of truth.
"""

from __future__ import annotations

from api.http import ApiError
from api.kube_controller.sync import ResourceCache
from api.resources import Kind, ObjectIn, StoredObject
from api.store import Change
from evaluator.alerts import AlertStatus


class ReadOnlyStore:
    """``api.store.ObjectStorePort`` over a ``ResourceCache``."""

    def __init__(self, cache: ResourceCache) -> None:
        self.cache = cache
        self.kind: Kind = cache.kind

    def create(self, *, obj: ObjectIn, dry_run: bool = False) -> StoredObject:
        raise self._refused(f"kubectl apply -f FILE (a {self.kind.kind} named {obj.name})")

    def replace(self, *, obj: ObjectIn, dry_run: bool = False) -> StoredObject:
        raise self._refused(f"kubectl apply -f FILE, or kubectl edit {self.kind.kind.lower()} {obj.name}")

    def delete(
        self, name: str, *, resource_version: int | None = None, uid: str | None = None, dry_run: bool = False
    ) -> StoredObject | None:
        raise self._refused(f"kubectl delete {self.kind.kind.lower()} {name}")

    def changes(self, *, after: int, limit: int) -> tuple[list[Change], int]:
        raise self._refused(f"kubectl get {self.kind.plural} --watch, against the cluster")

    def _refused(self, instead: str) -> ApiError:
        return ApiError(
            405,
            "MethodNotAllowed",
            f"{self.kind.kind}s are Kubernetes custom resources here (policywatch-evaluator "
            f"--definitions=kubernetes): this API only reads them; use {instead}",
            headers={"Allow": "GET"},
        )

    def get(self, name: str) -> StoredObject | None:
        entry = self.cache.get(name)
        return None if entry is None else entry.stored

    def get_with_status(self, name: str) -> tuple[StoredObject, AlertStatus | None] | None:
        entry = self.cache.get(name)
        return None if entry is None else (entry.stored, entry.status)

    def list_page(
        self, *, limit: int | None = None, after: str | None = None
    ) -> tuple[list[tuple[StoredObject, AlertStatus | None]], bool]:
        entries = [e for e in self.cache.entries() if after is None or e.name > after]
        more = limit is not None and len(entries) > limit
        return [(e.stored, e.status) for e in entries[:limit]], more

    def max_resource_version(self) -> int:
        version = self.cache.resource_version
        return int(version) if version.isdigit() else 0

    def statuses(self, names: list[str]) -> dict[str, AlertStatus]:
        wanted = set(names)
        return {e.name: e.status for e in self.cache.entries() if e.name in wanted and e.status is not None}
