"""The OCI image of scripts/image, run with podman: the evaluator inside answers GET /healthz and enforces its
tokens, the collector's command runs (--help; loading BPF needs the node's kernel headers, which the image leaves
to the chart's host mounts), and the image's Debian userland is the one the tests run on."""

from __future__ import annotations

import json
import os
import resource
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

# The first build on a machine makes the Debian base (minutes; cached in /var/cache/policywatch-image after).
pytestmark = pytest.mark.timeout(1800)
REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "image-test-token-" + secrets.token_hex(8)


def podman_run_args() -> list[str]:
    """`podman run` as this machine allows it. runc, because crun (1.8, Debian 12) refuses the hybrid cgroup
    layout (v1 controllers plus a v2 mount) such machines have; explicit ulimits, because podman's defaults
    (nofile 1048576, nproc 4194304) exceed the hard limits here and the sandbox may not raise them."""
    nofile = min(4096, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
    nproc = min(4096, resource.getrlimit(resource.RLIMIT_NPROC)[1])
    runtime = ["--runtime", "runc"] if shutil.which("runc") else []
    return ["podman", *runtime, "run", "--rm", f"--ulimit=nofile={nofile}:{nofile}", f"--ulimit=nproc={nproc}:{nproc}"]


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, check=check)


@pytest.fixture(scope="session")
def image() -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("scripts/image builds the root filesystem with mmdebstrap in root mode: run as root")
    if shutil.which("podman") is None:
        pytest.skip("podman missing: ./scripts/setup installs it")
    tag = f"localhost/policywatch-test:{secrets.token_hex(4)}"
    with tempfile.TemporaryDirectory(prefix="policywatch-image-") as work:
        archive = Path(work) / "policywatch.oci.tar"
        build = subprocess.run(
            [str(REPO_ROOT / "scripts" / "image"), "--output", str(archive), "--tag", tag, "--load"],
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        assert build.returncode == 0, build.stderr[-3000:]
    try:
        yield tag
    finally:
        podman("rmi", "--force", tag, check=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_evaluator_in_the_image_serves_healthz_and_checks_tokens(image: str) -> None:
    port = free_port()
    name = f"pw-evaluator-{secrets.token_hex(4)}"
    run = [
        *podman_run_args(),
        "--detach",
        "--name",
        name,
        "--network",
        "host",
        "-e",
        f"POLICYWATCH_WRITE_TOKENS={TOKEN}",
    ]
    # The image's own command and user (uid 10001); only the bind address and the database file are set here.
    started = subprocess.run(
        [
            *run,
            image,
            "policywatch-evaluator",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--database-url",
            "sqlite:////var/lib/policywatch/policywatch.db",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                assert time.monotonic() < deadline, podman("logs", name, check=False).stderr[-2000:]
                time.sleep(0.5)
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        assert get(f"http://127.0.0.1:{port}/globalalerts")[0] == 401
        status, body = get(f"http://127.0.0.1:{port}/globalalerts", TOKEN)
        assert status == 200 and json.loads(body)["kind"] == "GlobalAlertList"
        user = podman("exec", name, "id", "-u").stdout.strip()
        assert user == "10001"
    finally:
        podman("rm", "--force", name, check=False)


def test_the_collector_command_runs_in_the_image(image: str) -> None:
    result = subprocess.run(
        [*podman_run_args(), image, "policywatch-collector", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "usage: policywatch-collector" in result.stdout and "--mark-mask" in result.stdout


def test_the_image_is_the_debian_userland_the_tests_run_on(image: str) -> None:
    script = (
        "import bcc, nftables, platform, sys; "
        "print(open('/etc/debian_version').read().strip()); print(platform.python_version()); print(sys.prefix)"
    )
    result = subprocess.run(
        [*podman_run_args(), image, "python", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    debian, python, prefix = result.stdout.split()
    assert debian.split(".")[0] == Path("/etc/debian_version").read_text().strip().split(".")[0]
    host_python = subprocess.run(
        ["/usr/bin/python3", "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert python == host_python
    assert prefix == "/opt/venv"
