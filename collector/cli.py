"""``policywatch-collector``: the node agent's entry point. Every start-up failure is one line and exit 1."""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from functools import partial
from importlib import metadata
from pathlib import Path
from types import FrameType

from prometheus_client.registry import CollectorRegistry

from bpf import source_path
from collector import lifecycle
from collector.agent import Agent
from collector.bpf_loader import LoadError, ProgramConfig, build_cflags
from collector.bpf_loader import uninstall as bpf_uninstall
from collector.btf import Btf, BtfError
from collector.config import ENV_ENABLED, ENV_PORT, CollectorConfig, ConfigError, parse_config
from collector.exporter import denied_registry, render_text
from collector.flowlogs import FlowAggregator, FlowLogs, FlowShipper
from collector.health import Health
from collector.kernel import (
    KernelError,
    SkbLayout,
    TracepointArgs,
    check_tracepoint,
    kernel_release,
    netfilter_drop_reason,
)
from collector.pinned_source import PinnedDropSource
from collector.policies import NamespaceNames, PolicyResolver
from collector.rulesets import NftRulesetReader, check_libnftables
from collector.series import SeriesStore
from collector.server import HEALTH_PATH, METRICS_PATH, MetricsServer, negotiated, plain_text, tls_context

log = logging.getLogger("policywatch.collector")
PROG = "policywatch-collector"
# CAP_NET_ADMIN (12), CAP_PERFMON (38), CAP_BPF (39)
_NEEDED_CAPS = {12: "CAP_NET_ADMIN", 38: "CAP_PERFMON", 39: "CAP_BPF"}


class StartError(RuntimeError):
    """Start-up failed; the message is the one line the user sees."""


def _version() -> str:
    try:
        return metadata.version("policywatch")
    except metadata.PackageNotFoundError:
        return "unknown"


def missing_capabilities(status: Path = Path("/proc/self/status")) -> list[str]:
    if os.geteuid() == 0:
        return []
    try:
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        effective = int(fields["CapEff"].strip(), 16)
    except (OSError, KeyError, ValueError):
        return list(_NEEDED_CAPS.values())
    return [name for bit, name in _NEEDED_CAPS.items() if not effective >> bit & 1]


def program_config(config: CollectorConfig) -> ProgramConfig:
    flows = config.flow_logs
    if flows is None:
        return ProgramConfig(mark_mask=config.mark_mask, map_size=config.map_size, attach=config.bpf_attach)
    return ProgramConfig(
        mark_mask=config.mark_mask,
        map_size=config.map_size,
        flow_logs=True,
        flow_map_size=flows.map_size,
        attach=config.bpf_attach,
    )


def print_bpf(config: CollectorConfig) -> None:
    check_tracepoint()
    btf = Btf.load()
    attach = "raw_tp" if config.bpf_attach == "raw_tp" else "tp_btf"
    cflags = build_cflags(
        config=program_config(config),
        reason=netfilter_drop_reason(btf=btf),
        layout=SkbLayout.from_btf(btf),
        args=TracepointArgs.from_btf(btf),
        attach=attach,
    )
    source = source_path("denied.c")
    print(f"// {source} compiled by BCC with: {' '.join(cflags)} (attached as {attach})")
    print(source.read_text(), end="")


def serve(config: CollectorConfig, stop: threading.Event) -> None:
    missing = missing_capabilities()
    if missing:
        raise StartError(f"needs root (or the capabilities {', '.join(missing)}) to load BPF; run it as root")
    try:
        check_libnftables()
    except ImportError as exc:
        raise StartError(str(exc)) from exc
    store = SeriesStore(ttl=config.ttl, max_series=config.max_series)
    metrics = denied_registry(store)
    loaded: list[PinnedDropSource] = []  # the BPF source, once opened; the health registry reads it late
    health = Health(
        version=_version(),
        kernel=kernel_release(),
        bpf_stats=lambda: loaded[0].bpf_stats() if loaded else None,
        recursion_misses=lambda: loaded[0].recursion_misses() if loaded else None,
    )
    # The port first: a busy port is one line at once, before the second or so a BPF compile takes.
    server = bind_server(config, metrics=metrics, health=health)
    try:
        try:
            started = lifecycle.start(
                config=program_config(config), bpf_dir=config.bpf_dir, state_file=config.state_file, store=store
            )
        except (KernelError, LoadError, BtfError, OSError) as exc:
            raise StartError(str(exc)) from exc
        source = started.source
        loaded.append(source)
        how = "reused, still attached from the last run" if started.installed.reused else "installed"
        if started.installed.fallback:
            log.warning("BPF program attached as raw_tp, not tp_btf: %s", started.installed.fallback)
        log.info("BPF program %s (%s); %d series continued from %s", source.pin_dir, how, started.restored,
                 config.state_file)  # fmt: skip
        try:
            run_agent(config, started=started, store=store, health=health, server=server, stop=stop)
        finally:
            source.close()
    finally:
        server.stop()
    log.info(
        "stopped; the BPF program stays attached under %s and counts until the next start "
        "(policywatch-collector --uninstall detaches it)",
        config.bpf_dir,
    )


def uninstall(config: CollectorConfig) -> None:
    removed = bpf_uninstall(config.bpf_dir)
    config.state_file.unlink(missing_ok=True)
    print(f"{PROG}: detached and unpinned {len(removed)} BPF program(s) under {config.bpf_dir}; state file removed")


def bind_server(config: CollectorConfig, *, metrics: CollectorRegistry, health: Health) -> MetricsServer:
    try:
        tls = tls_context(config.tls) if config.tls is not None else None
    except (OSError, ValueError) as exc:
        raise StartError(f"TLS set-up failed ({config.tls}): {exc}; check the certificate, key and CA files") from exc
    try:
        return MetricsServer(
            host=config.host,
            port=config.port,
            metrics=plain_text(partial(render_text, metrics)),
            health=negotiated(health.registry),
            tls=tls,
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartError(
                f"port {config.port} is already in use on {config.host}; choose another with --port or {ENV_PORT}"
            ) from exc
        raise StartError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from exc


def run_agent(
    config: CollectorConfig,
    *,
    started: lifecycle.Started,
    store: SeriesStore,
    health: Health,
    server: MetricsServer,
    stop: threading.Event,
) -> None:
    def rebuilt(names: NamespaceNames) -> None:
        health.ruleset_refreshes.inc()
        health.policy_conflicts.set(len(names.conflicts))

    resolver = PolicyResolver(
        mask=config.mark_mask, reader=NftRulesetReader(netns_dir=config.netns_dir), on_rebuild=rebuilt
    )
    resolver.refresh()
    source = started.source
    shipper: FlowShipper | None = None
    flow_logs: FlowLogs | None = None
    if config.flow_logs is not None:
        flows = config.flow_logs
        try:
            token = flows.token_file.read_text().strip() if flows.token_file else None
        except OSError as exc:
            raise StartError(f"--flow-logs-token-file {flows.token_file}: {exc.strerror or exc}") from exc
        shipper = FlowShipper(
            flows.url,
            registry=health.registry,
            index=flows.index,
            token=token,
            ca_file=str(flows.ca_file) if flows.ca_file else None,
            buffer_records=flows.buffer_records,
        )
        flow_logs = FlowLogs(
            aggregator=FlowAggregator(host=config.node_name), sink=shipper, flush_interval=flows.flush_interval
        )
        shipper.start()
        log.info("flow records every %gs to %s", flows.flush_interval, shipper.url)
    agent = Agent(
        source=source,
        store=store,
        resolver=resolver,
        health=health,
        ruleset_refresh=config.ruleset_refresh,
        export_unmarked=config.export_unmarked,
        persist=lifecycle.persister(state_file=config.state_file, source=source, store=store),
        flow_logs=flow_logs,
    )
    for drained in started.retired:
        agent.add(drained)
    if started.retired:
        lifecycle.persister(state_file=config.state_file, source=source, store=store)()
    server.start()
    log.info("attached BPF program id %s to skb:kfree_skb as %s", source.program_id, started.installed.attach)
    scheme = "https" if config.tls else "http"
    log.info(
        "serving %s://%s:%d%s (denied packets) and %s (collector health); mark mask %#x",
        scheme,
        config.host,
        server.port,
        METRICS_PATH,
        HEALTH_PATH,
        config.mark_mask,
    )
    try:
        agent.run(stop=stop, interval=config.drain_interval)
    finally:
        if shipper is not None:
            shipper.stop(flush_timeout=5.0)


def stop_on_signals() -> threading.Event:
    """An event SIGTERM and SIGINT set: a last drain is counted and saved, the process exits 0."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received, stopping after a last drain", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = parse_config(sys.argv[1:] if argv is None else argv, os.environ)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(config.log_level)
    if not config.enabled:
        print(f"{PROG}: the reporter is disabled ({ENV_ENABLED}=false); nothing to do", file=sys.stderr)
        return 0
    try:
        if config.print_bpf:
            print_bpf(config)
        elif config.uninstall:
            uninstall(config)
        else:
            serve(config, stop_on_signals())
    except (StartError, KernelError, BtfError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
