"""``policywatch-evaluator``: the API (and the services beside it) in one uvicorn process.

Settings come from ``POLICYWATCH_*`` environment variables, overridden by flags; they are validated
before anything starts (off loopback without tokens, half a TLS pair, ... are refused with the fix).
The database is migrated to the newest schema at start.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import ValidationError

from api.app import create_app
from api.db import ReadOnlyDatabase, check_writable, migrate
from api.kube_controller.client import ConfigError
from api.settings import Settings, check_resolvable

log = logging.getLogger("policywatch.evaluator")

STORES = ("sql", "opensearch")
# Flags whose value, when given, replaces the setting of the same name.
OVERRIDES = (
    "host",
    "port",
    "database_url",
    "token_file",
    "tls_cert_file",
    "tls_key_file",
    "max_body_bytes",
    "scheduler_enabled",
    "alertmanager_url",
    "log_store",
    "event_store",
    "opensearch_url",
    "trusted_proxy_header",
    "trusted_proxy_addresses",
    "trusted_proxy_role",
    "session_lifetime",
    "definitions",
    "kubeconfig",
    "ingest_processes",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="policywatch-evaluator",
        description="GlobalAlert API and scheduler. Every flag also reads POLICYWATCH_<FLAG> from the environment.",
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default 8080)")
    parser.add_argument("--database-url", help="SQLAlchemy URL (default sqlite:///./policywatch.db)")
    parser.add_argument("--token-file", type=Path, help="file of 'read TOKEN' / 'write TOKEN' lines")
    parser.add_argument("--tls-cert-file", type=Path, help="PEM certificate: serve HTTPS")
    parser.add_argument("--tls-key-file", type=Path, help="PEM private key of --tls-cert-file")
    parser.add_argument("--max-body-bytes", type=int, help="larger request bodies get 413 (default 1 MiB)")
    parser.add_argument("--no-migrate", action="store_true", help="do not migrate the database at start")
    parser.add_argument(
        "--metrics-auth", action="store_true", help="/metrics needs a read token too (its series name the alerts)"
    )
    parser.add_argument("--trusted-proxy-header", help="Alerts page: user header of an auth proxy (X-Forwarded-User)")
    parser.add_argument("--trusted-proxy-addresses", help="addresses/CIDRs that header is believed from (loopback)")
    parser.add_argument("--trusted-proxy-role", choices=("read", "write"), help="role of proxy users (default read)")
    parser.add_argument("--session-lifetime", help="Alerts page sign-in lifetime, a duration (default 12h)")
    engine = parser.add_argument_group("alert engine")
    engine.add_argument(
        "--scheduler",
        dest="scheduler_enabled",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the alert scheduler in this process (default on; --no-scheduler serves only the API)",
    )
    engine.add_argument("--alertmanager-url", help="Alertmanager base URL, e.g. http://alertmanager:9093")
    engine.add_argument("--log-store", choices=STORES, help="where flow/dns/audit logs are read (default sql)")
    engine.add_argument("--event-store", choices=STORES, help="where events are written and read (default sql)")
    engine.add_argument("--opensearch-url", help="OpenSearch URL, e.g. https://opensearch:9200")
    kube = parser.add_argument_group("kubernetes")
    kube.add_argument(
        "--definitions",
        choices=("database", "kubernetes"),
        help="where GlobalAlerts live: the database (default, REST CRUD) or the cluster's "
        "globalalerts.projectcalico.org custom resources (listed, watched, status written back; REST reads only)",
    )
    kube.add_argument(
        "--kubeconfig",
        type=Path,
        help="with --definitions=kubernetes (default: the Pod's ServiceAccount, else $KUBECONFIG)",
    )
    parser.add_argument(
        "--ingest-processes",
        type=int,
        help="worker processes that parse and store bulk requests, one core each (default 0: this process)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return parser


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {}
    for name in OVERRIDES:
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    if args.no_migrate:
        overrides["migrate"] = False
    if args.metrics_auth:
        overrides["metrics_auth"] = True
    return Settings(**overrides)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.log_level != "debug":  # httpx logs every request (the watch, each status write) at info
        logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "settings"
            message = str(error["msg"]).removeprefix("Value error, ")
            print(f"policywatch-evaluator: {where}: {message}", file=sys.stderr)
        return 2
    try:
        check_resolvable(settings.host)
    except ValueError as exc:
        print(f"policywatch-evaluator: host: {exc}", file=sys.stderr)
        return 2
    if settings.migrate:
        try:
            migrate(settings.database_url)
        except Exception as exc:  # any driver error: say which database and why, then stop
            print(f"policywatch-evaluator: cannot migrate {_safe_url(settings.database_url)}: {exc}", file=sys.stderr)
            return 1
    try:
        check_writable(settings.database_url)
    except ReadOnlyDatabase as exc:
        print(f"policywatch-evaluator: {exc}", file=sys.stderr)
        return 1
    try:
        app = create_app(settings)
    except ConfigError as exc:  # --definitions=kubernetes without a usable cluster configuration
        print(f"policywatch-evaluator: {exc}", file=sys.stderr)
        return 2
    scheme = "https" if settings.tls_cert_file else "http"
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    log.info("serving on %s://%s:%d", scheme, shown, settings.port)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.tls_cert_file) if settings.tls_cert_file else None,
        ssl_keyfile=str(settings.tls_key_file) if settings.tls_key_file else None,
        log_level=args.log_level,
        access_log=False,
    )
    return 0


def _safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "the database"


if __name__ == "__main__":
    sys.exit(main())
