"""Property-based tests generated from /openapi.json (schemathesis): no request may produce a 5xx, and
every answer is a documented status with a documented content type. Bounded examples per operation.

The app runs on an in-memory SQLite database (one shared connection), migrated at import, so nothing is
left behind on disk.
"""

from __future__ import annotations

import schemathesis
from alembic import command
from hypothesis import HealthCheck, settings
from prometheus_client import CollectorRegistry
from schemathesis.checks import content_type_conformance, not_a_server_error, status_code_conformance
from sqlalchemy.pool import StaticPool

from api.app import create_app
from api.db import alembic_config, make_engine
from api.settings import Settings
from tests.api.support import no_services

MAX_EXAMPLES = 30
OWN_PATHS = {
    f"{prefix}/{plural}{item}"
    for prefix in ("", "/apis/projectcalico.org/v3")
    for plural in ("globalalerts", "globalalerttemplates")
    for item in ("", "/{name}")
}


def _app() -> object:
    engine = make_engine("sqlite://", poolclass=StaticPool)
    with engine.begin() as connection:
        config = alembic_config("sqlite://")
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    settings_ = Settings(database_url="sqlite://")
    return create_app(settings_, engine=engine, registry=CollectorRegistry(), service_factory=no_services)


schema = schemathesis.openapi.from_asgi("/openapi.json", _app())


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_server_errors(case: schemathesis.Case) -> None:
    if case.path in OWN_PATHS:
        case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance])
    else:  # other developers' operations: held to "no server error" here
        case.call_and_validate(checks=[not_a_server_error])
