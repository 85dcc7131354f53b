"""Command-line flags and Felix's environment names -> one validated, immutable configuration."""

from __future__ import annotations

import argparse
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from collector.bpf_loader import ATTACH_CHOICES
from collector.flowlogs import FlowLogConfig
from collector.server import TlsFiles

# kube-proxy uses 0x4000 (masquerade) and 0x8000 (drop), Calico 0xffff0000: the default stays clear of them.
DEFAULT_MARK_MASK = 0x3FFF
DEFAULT_PORT = 9081
ENV_ENABLED = "FELIX_PROMETHEUSREPORTERENABLED"
ENV_PORT = "FELIX_PROMETHEUSREPORTERPORT"
ENV_CERT = "FELIX_PROMETHEUSREPORTERCERTFILE"
ENV_KEY = "FELIX_PROMETHEUSREPORTERKEYFILE"
ENV_CA = "FELIX_PROMETHEUSREPORTERCAFILE"
ENV_NODENAME = "NODENAME"  # calico-node's name of the node
ENV_FLOW_LOGS = "POLICYWATCH_FLOW_LOGS"
ENV_FLOW_LOGS_URL = "POLICYWATCH_FLOW_LOGS_URL"
ENV_FLOW_LOGS_FLUSH = "FELIX_FLOWLOGSFLUSHINTERVAL"
ENV_FLOW_LOGS_TOKEN = "POLICYWATCH_FLOW_LOGS_TOKEN_FILE"
ENV_FLOW_LOGS_CA = "POLICYWATCH_FLOW_LOGS_CA_FILE"
MAX_MAP_SIZE = 1 << 24


class ConfigError(ValueError):
    """A flag or environment value is wrong; the message names it, the value and what would be right."""


@dataclass(frozen=True)
class CollectorConfig:
    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    ttl: float = 60.0
    mark_mask: int = DEFAULT_MARK_MASK
    map_size: int = 16384
    max_series: int = 10000
    drain_interval: float = 1.0
    ruleset_refresh: float = 2.0
    netns_dir: Path = Path("/run/netns")
    tls: TlsFiles | None = None
    print_bpf: bool = False
    log_level: str = "INFO"
    export_unmarked: bool = False
    bpf_dir: Path = Path("/sys/fs/bpf/policywatch")
    state_file: Path = Path("/run/policywatch/collector-state.json")
    uninstall: bool = False
    node_name: str = ""  # the flow records' host; the hostname when not given
    flow_logs: FlowLogConfig | None = None  # None: --flow-logs off, the BPF program has no flow map
    bpf_attach: str = "auto"  # "tp_btf", "raw_tp", or "auto": tp_btf unless the kernel refuses it


def _port(text: str, where: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a port number; use an integer 1-65535") from None
    if not 1 <= value <= 65535:
        raise ConfigError(f"{where}: {value} is out of range; use a port 1-65535")
    return value


def _seconds(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a number of seconds; use e.g. 60 or 0.5") from None
    if not value > 0 or value == float("inf"):
        raise ConfigError(f"{where}: {text!r} must be a positive, finite number of seconds")
    return value


def _mask(text: str, where: str) -> int:
    try:
        value = int(text, 16)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not hexadecimal; use e.g. 0x3fff") from None
    if not 0 < value <= 0xFFFFFFFF:
        raise ConfigError(f"{where}: {text!r} must be a non-zero 32-bit mask, e.g. 0x3fff")
    return value


def _count(text: str, where: str, *, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not an integer; use 1-{high}") from None
    if not 1 <= value <= high:
        raise ConfigError(f"{where}: {value} is out of range; use 1-{high}")
    return value


def _bool(text: str, where: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ConfigError(f"{where}: {text!r} is not a boolean; use true or false")


def _bpf_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_absolute() or len(path.parts) < 3:
        raise ConfigError(f"--bpf-dir: {text!r} must be a directory inside a bpffs mount, e.g. /sys/fs/bpf/policywatch")
    return path


def _file(text: str, where: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise ConfigError(f"{where}: {text!r} is not a readable file")
    return path


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="policywatch-collector",
        description="Counts netfilter drops with eBPF and serves them as calico_denied_packets/bytes on :9081.",
    )
    p.add_argument("--port", help=f"metrics port (env {ENV_PORT}; default {DEFAULT_PORT})")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0; '::' for IPv6)")
    p.add_argument("--ttl", metavar="SECONDS", default="60", help="a series vanishes this long after its last drop")
    p.add_argument(
        "--mark-mask", metavar="HEX", default=f"{DEFAULT_MARK_MASK:#x}", help="mark bits holding the policy id"
    )
    p.add_argument(
        "--map-size", metavar="N", default="16384", help="entries of each BPF counting map (distinct keys per drain)"
    )
    p.add_argument("--max-series", metavar="N", default="10000", help="cap on per-source series")
    p.add_argument("--drain-interval", metavar="SECONDS", default="1", help="how often the BPF maps are drained")
    p.add_argument("--ruleset-refresh", metavar="SECONDS", default="2", help="how often nft rulesets are re-read")
    p.add_argument("--netns-dir", default="/run/netns", help="where named network namespaces live")
    p.add_argument("--tls-cert", help=f"serve HTTPS with this certificate (env {ENV_CERT})")
    p.add_argument("--tls-key", help=f"private key of --tls-cert (env {ENV_KEY})")
    p.add_argument("--tls-ca", help=f"require client certificates signed by this CA (env {ENV_CA})")
    p.add_argument(
        "--export-unmarked",
        action="store_true",
        help='also export drops no policy made as calico_denied_*{policy="unmarked"} (they always count in '
        "policywatch_collector_unattributed_drops_total on /collector/metrics)",
    )
    p.add_argument(
        "--bpf-dir",
        default="/sys/fs/bpf/policywatch",
        help="bpffs directory the program and its maps are pinned in; they stay attached across restarts",
    )
    p.add_argument(
        "--bpf-attach",
        choices=ATTACH_CHOICES,
        default="auto",
        help="attach as a BTF-enabled tracepoint (tp_btf: plain loads, no helper calls), as a raw tracepoint "
        "(raw_tp: helper reads), or auto: tp_btf, else raw_tp when the kernel refuses it (default auto)",
    )
    p.add_argument(
        "--state-file",
        default="/run/policywatch/collector-state.json",
        help="where series totals are kept across restarts",
    )
    p.add_argument(
        "--uninstall", action="store_true", help="detach the BPF program, remove its pins and the state file, exit"
    )
    p.add_argument(
        "--flow-logs",
        action="store_true",
        help=f"also count denied traffic per flow and ship flow records to --flow-logs-url (env {ENV_FLOW_LOGS})",
    )
    p.add_argument(
        "--flow-logs-url",
        metavar="URL",
        help=f"evaluator or OpenSearch base URL taking POST /_bulk (env {ENV_FLOW_LOGS_URL})",
    )
    p.add_argument(
        "--flow-logs-flush-interval",
        metavar="SECONDS",
        help=f"one record per flow per interval (env {ENV_FLOW_LOGS_FLUSH}; default 15)",
    )
    p.add_argument("--flow-logs-token-file", help=f"bearer token for --flow-logs-url (env {ENV_FLOW_LOGS_TOKEN})")
    p.add_argument("--flow-logs-ca-file", help=f"CA bundle for an https --flow-logs-url (env {ENV_FLOW_LOGS_CA})")
    p.add_argument("--node-name", help=f"host of the flow records (env {ENV_NODENAME}; default the hostname)")
    p.add_argument("--flow-map-size", metavar="N", default="16384", help="entries of each BPF flow map")
    p.add_argument("--print-bpf", action="store_true", help="print the BPF C source and its -D flags, then exit")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def parse_config(argv: Sequence[str], env: Mapping[str, str]) -> CollectorConfig:
    """Flags win over Felix's environment names, which win over defaults."""
    args = build_parser().parse_args(list(argv))
    enabled = _bool(env[ENV_ENABLED], ENV_ENABLED) if env.get(ENV_ENABLED, "").strip() else True
    if args.port is not None:
        port = _port(args.port, "--port")
    elif env.get(ENV_PORT, "").strip():
        port = _port(env[ENV_PORT], ENV_PORT)
    else:
        port = DEFAULT_PORT

    def pick(flag_value: str | None, flag: str, env_name: str) -> Path | None:
        if flag_value:
            return _file(flag_value, flag)
        if env.get(env_name, "").strip():
            return _file(env[env_name], env_name)
        return None

    cert = pick(args.tls_cert, "--tls-cert", ENV_CERT)
    key = pick(args.tls_key, "--tls-key", ENV_KEY)
    ca = pick(args.tls_ca, "--tls-ca", ENV_CA)
    tls = None
    if cert or key or ca:
        if not (cert and key):
            raise ConfigError(
                f"TLS needs both a certificate and its key (--tls-cert/{ENV_CERT} and --tls-key/{ENV_KEY}); "
                f"got certificate={cert}, key={key}"
            )
        tls = TlsFiles(cert=cert, key=key, ca=ca)
    flow_logs = _flow_logs(args, env)
    ttl = _seconds(args.ttl, "--ttl")
    drain = _seconds(args.drain_interval, "--drain-interval")
    if drain > ttl:
        raise ConfigError(f"--drain-interval {drain:g} is longer than --ttl {ttl:g}; series would expire unseen")
    return CollectorConfig(
        enabled=enabled,
        host=args.host,
        port=port,
        ttl=ttl,
        mark_mask=_mask(args.mark_mask, "--mark-mask"),
        map_size=_count(args.map_size, "--map-size", high=MAX_MAP_SIZE),
        max_series=_count(args.max_series, "--max-series", high=MAX_MAP_SIZE),
        drain_interval=drain,
        ruleset_refresh=_seconds(args.ruleset_refresh, "--ruleset-refresh"),
        netns_dir=Path(args.netns_dir),
        tls=tls,
        print_bpf=args.print_bpf,
        log_level=args.log_level,
        export_unmarked=args.export_unmarked,
        bpf_dir=_bpf_dir(args.bpf_dir),
        bpf_attach=args.bpf_attach,
        state_file=Path(args.state_file),
        uninstall=args.uninstall,
        flow_logs=flow_logs,
        node_name=args.node_name or env.get(ENV_NODENAME, "").strip() or socket.gethostname(),
    )


def _flow_logs(args: argparse.Namespace, env: Mapping[str, str]) -> FlowLogConfig | None:
    enabled = args.flow_logs or (
        _bool(env[ENV_FLOW_LOGS], ENV_FLOW_LOGS) if env.get(ENV_FLOW_LOGS, "").strip() else False
    )
    if not enabled:
        return None
    url = args.flow_logs_url or env.get(ENV_FLOW_LOGS_URL, "").strip()
    if not url:
        raise ConfigError(f"--flow-logs needs --flow-logs-url (or {ENV_FLOW_LOGS_URL}), e.g. http://evaluator:8080")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--flow-logs-url: {url!r} must be an http:// or https:// URL")
    interval = 15.0
    if args.flow_logs_flush_interval:
        interval = _seconds(args.flow_logs_flush_interval, "--flow-logs-flush-interval")
    elif env.get(ENV_FLOW_LOGS_FLUSH, "").strip():
        interval = _seconds(env[ENV_FLOW_LOGS_FLUSH], ENV_FLOW_LOGS_FLUSH)
    token = args.flow_logs_token_file or env.get(ENV_FLOW_LOGS_TOKEN, "").strip()
    ca = args.flow_logs_ca_file or env.get(ENV_FLOW_LOGS_CA, "").strip()
    return FlowLogConfig(
        url=url,
        flush_interval=interval,
        token_file=_file(token, "--flow-logs-token-file") if token else None,
        ca_file=_file(ca, "--flow-logs-ca-file") if ca else None,
        map_size=_count(args.flow_map_size, "--flow-map-size", high=MAX_MAP_SIZE),
    )
