"""The whole chain on one machine: namespaces with tagged deny rules and their traffic, the collector, Prometheus
with the chart's rules, Alertmanager with a webhook receiver, and the evaluator with flow logs and a GlobalAlert.

Every step records how to undo itself; ``close()`` undoes them all in reverse order, whatever failed. The test
suite's ``Netns``/``PrometheusServer``/``AlertmanagerServer``/``ManagedProcess`` do the work (tests/fixtures).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from demo.assets import JOB_COLLECTOR, JOB_COLLECTOR_HEALTH, JOB_EVALUATOR, RULES_FILE
from demo.samples import ALERT_NAME, FLOW_LOGS_FLUSH_INTERVAL, GLOBAL_ALERT
from demo.topology import Topology
from devstack.services import (
    LOOPBACK,
    AlertmanagerServer,
    ManagedProcess,
    PrometheusServer,
    WebhookReceiver,
    free_port,
    http_get,
    wait_until,
)

BPF_STATS = Path("/proc/sys/kernel/bpf_stats_enabled")


class StackError(RuntimeError):
    """A step of the demo failed; the message says which and shows the component's log."""


def venv_command(name: str) -> str:
    """A console script of this project, from the interpreter's own venv (else PATH)."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise StackError(f"{name} is not installed; run ./scripts/setup")
    return found


def http_json(method: str, url: str, body: bytes | None = None, content_type: str = "application/json") -> Any:
    """Send a request and decode the JSON answer; raise StackError with the status and body on a non-2xx."""
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:  # loopback URLs only
            payload = resp.read()
    except urllib.error.HTTPError as err:
        raise StackError(f"{method} {url} answered {err.code}: {err.read()[:500]!r}") from None
    return json.loads(payload) if payload else None


def event_items(doc: Any) -> list[dict[str, Any]]:
    """The events of an ``/events`` answer (a list object's ``items``, or a bare list)."""
    if isinstance(doc, dict):
        items = doc.get("items", doc.get("events", []))
        return list(items) if isinstance(items, list) else []
    return list(doc) if isinstance(doc, list) else []


def alertmanager_config(webhook_url: str) -> dict[str, Any]:
    """Alertmanager routing every alert to the demo's webhook receiver, grouped per alert and policy."""
    return {
        "route": {
            "receiver": "demo-webhook",
            "group_by": ["alertname", "policy", "alert"],
            "group_wait": "1s",
            "group_interval": "5s",
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "demo-webhook", "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}],
    }


def prometheus_config(
    collector_url: str, evaluator_url: str | None, alertmanager_url: str, scrape_interval: str
) -> dict[str, Any]:
    """Prometheus scraping the collector (metrics and health) and, once it runs, the evaluator."""
    collector = collector_url.removeprefix("http://")
    jobs = [(JOB_COLLECTOR, "/metrics", collector), (JOB_COLLECTOR_HEALTH, "/collector/metrics", collector)]
    if evaluator_url:
        jobs.append((JOB_EVALUATOR, "/metrics", evaluator_url.removeprefix("http://")))
    return {
        "global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_url.removeprefix("http://")]}]}]},
        "scrape_configs": [
            {"job_name": job, "metrics_path": path, "static_configs": [{"targets": [target]}]}
            for job, path, target in jobs
        ],
    }


class DemoStack:
    def __init__(
        self,
        *,
        say: Callable[[str], None] = print,
        traffic_seconds: float = 600.0,
        scrape_interval: str = "5s",
        workdir: Path | None = None,
    ) -> None:
        self.say = say
        self.traffic_seconds = traffic_seconds
        self.scrape_interval = scrape_interval
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="policywatch-demo-"))
        self.topology = Topology()
        self.collector: ManagedProcess | None = None
        self.collector_url = ""
        self.evaluator: ManagedProcess | None = None
        self.evaluator_url = ""  # set once the evaluator runs (Prometheus scrapes it from then on)
        self.evaluator_port = free_port()  # known before: the collector ships its flow records there
        self.webhook: WebhookReceiver | None = None
        self.alertmanager: AlertmanagerServer | None = None
        self.prometheus: PrometheusServer | None = None
        self._undo: list[Callable[[], None]] = []

    # -- steps ----------------------------------------------------------------------------------------------
    def start_network(self) -> None:
        self._undo.append(self.topology.close)
        self.topology.build()

    def start_traffic(self) -> None:
        """Once the collector runs: every denied datagram is then in its flow records as in the nft counters."""
        self.topology.start_traffic(seconds=self.traffic_seconds)

    def enable_bpf_stats(self) -> None:
        """kernel.bpf_stats_enabled=1 for the collector's BPF run-time metrics; the old value is put back."""
        try:
            old = BPF_STATS.read_text().strip()
            BPF_STATS.write_text("1\n")
        except OSError as err:
            self.say(f"   (kernel.bpf_stats_enabled left as is: {err.strerror}; BPF run-time panels stay empty)")
            return

        def restore() -> None:
            BPF_STATS.write_text(f"{old}\n")

        self._undo.append(restore)

    def start_collector(self, *, timeout: float = 180.0) -> None:
        port = free_port()
        self.collector_url = f"http://{LOOPBACK}:{port}"
        argv = [
            venv_command("policywatch-collector"),
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--ttl",
            "60",
            "--ruleset-refresh",
            "1",
        ]
        # Denied-flow records to the evaluator's flows data set, which the GlobalAlert reads. The evaluator starts
        # later on the port kept for it; until then the collector keeps its records and retries.
        argv += [
            "--flow-logs",
            "--flow-logs-url",
            f"http://{LOOPBACK}:{self.evaluator_port}",
            "--flow-logs-flush-interval",
            str(FLOW_LOGS_FLUSH_INTERVAL),
        ]
        # The demo's own pins and state file: the collector keeps its program attached across restarts, so a
        # demo run must neither continue an earlier run's totals nor leave its program behind.
        pins = ["--bpf-dir", f"/sys/fs/bpf/pwdemo-{secrets.token_hex(4)}", "--state-file", str(self.workdir / "state")]
        argv += pins

        def uninstall() -> None:
            subprocess.run([venv_command("policywatch-collector"), "--uninstall", *pins], check=True, timeout=60,
                           capture_output=True)  # fmt: skip

        self._undo.append(uninstall)
        self.collector = ManagedProcess(argv, log_path=self.workdir / "collector.log")
        self._undo.append(self.collector.stop)
        self._wait_ready(self.collector, f"{self.collector_url}/metrics", "collector", timeout)

    def start_monitoring(self) -> None:
        for sub in ("alertmanager", "prometheus"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        self.webhook = WebhookReceiver().start()
        self._undo.append(self.webhook.stop)
        self.alertmanager = AlertmanagerServer(
            alertmanager_config(self.webhook.url), workdir=self.workdir / "alertmanager"
        )
        self._undo.append(self.alertmanager.stop)
        self.alertmanager.start()
        self.prometheus = PrometheusServer(
            self.prometheus_config(), rule_files=[RULES_FILE], workdir=self.workdir / "prometheus"
        )
        self._undo.append(self.prometheus.stop)
        self.prometheus.start()

    def prometheus_config(self) -> dict[str, Any]:
        assert self.alertmanager is not None
        return prometheus_config(self.collector_url, self.evaluator_url, self.alertmanager.url, self.scrape_interval)

    def start_evaluator(self, *, timeout: float = 60.0) -> None:
        port = self.evaluator_port
        self.evaluator_url = f"http://{LOOPBACK}:{port}"
        argv = [
            venv_command("policywatch-evaluator"),
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--database-url",
            f"sqlite:///{self.workdir / 'policywatch.db'}",
        ]
        env = {
            **os.environ,
            "POLICYWATCH_ALERTMANAGER_URL": self.alertmanager.url if self.alertmanager else "",
            # the collector's --flow-logs-flush-interval: the lookback warning allows for it
            "POLICYWATCH_FLOW_LOGS_FLUSH_INTERVAL": f"{FLOW_LOGS_FLUSH_INTERVAL}s",
        }
        self.evaluator = ManagedProcess(argv, log_path=self.workdir / "evaluator.log", env=env)
        self._undo.append(self.evaluator.stop)
        self._wait_ready(self.evaluator, f"{self.evaluator_url}/metrics", "evaluator", timeout)

    def wait_flows_stored(self) -> None:
        """Long enough for the collector's last flush of the finished senders to be shipped and stored."""
        time.sleep(3 * FLOW_LOGS_FLUSH_INTERVAL)

    def create_alert(self) -> Any:
        """Create the GlobalAlert over the flows data set the collector feeds; return the answer."""
        return http_json("POST", f"{self.evaluator_url}/globalalerts", json.dumps(GLOBAL_ALERT).encode())

    def events(self) -> list[dict[str, Any]]:
        return event_items(http_json("GET", f"{self.evaluator_url}/events?alert={ALERT_NAME}"))

    def scrape_prometheus_again(self) -> None:
        """Rewrite Prometheus' configuration (e.g. once the evaluator has a port) and reload it."""
        assert self.prometheus is not None
        cfg = self.prometheus_config()
        cfg["rule_files"] = [str(RULES_FILE)]
        self.prometheus.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        http_json("POST", f"{self.prometheus.url}/-/reload")

    # -- reading --------------------------------------------------------------------------------------------
    def denied_lines(self) -> list[str]:
        status, body = http_get(f"{self.collector_url}/metrics")
        if status != 200:
            raise StackError(f"collector /metrics answered {status}")
        return [line for line in body.decode().splitlines() if line.startswith("calico_denied_")]

    def unattributed_drops(self) -> dict[str, float]:
        """``policywatch_collector_unattributed_drops_total`` per namespace: drops no policy made."""
        status, body = http_get(f"{self.collector_url}/collector/metrics")
        if status != 200:
            raise StackError(f"collector /collector/metrics answered {status}")
        found: dict[str, float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                if sample.name == "policywatch_collector_unattributed_drops_total":
                    found[sample.labels["namespace"]] = sample.value
        return found

    def firing_alerts(self) -> list[dict[str, Any]]:
        assert self.prometheus is not None
        alerts: list[dict[str, Any]] = self.prometheus.api("alerts")["alerts"]
        return [a for a in alerts if a.get("state") == "firing"]

    # -- teardown -------------------------------------------------------------------------------------------
    def close(self) -> None:
        errors = []
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except Exception as err:  # keep undoing the rest, report at the end
                errors.append(err)
        shutil.rmtree(self.workdir, ignore_errors=True)
        if errors:
            raise StackError(f"clean-up left errors: {errors}")

    def _wait_ready(self, process: ManagedProcess, url: str, name: str, timeout: float) -> None:
        def ready() -> bool:
            if not process.alive():
                raise StackError(f"{name} exited with {process.proc.returncode}:\n{process.log_tail()}")
            try:
                status, _ = http_get(url, timeout=2.0)
            except OSError:
                return False
            return status == 200

        try:
            wait_until(ready, timeout=timeout, interval=0.5, what=f"{name} at {url}")
        except StackError:
            raise
        except TimeoutError as err:
            raise StackError(f"{err}\n{process.log_tail()}") from None
