"""The HTTP side of bulk ingest shared by ``/datasets/{d}/_bulk``, the audit webhook and ``/_bulk``:
which paths take large bodies, reading (and decompressing) a body within the limit, and running the
store with a bounded number of requests at once."""

from api.ingest.body import BodyRefused, is_ingest_path, read_ingest_body
from api.ingest.run import IngestUnavailable, ingest_slot, run_ingest

__all__ = ["BodyRefused", "IngestUnavailable", "ingest_slot", "is_ingest_path", "read_ingest_body", "run_ingest"]
