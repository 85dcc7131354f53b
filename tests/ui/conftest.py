"""Fixtures of the browser tests: Debian's headless Chromium driven by selenium (chromium-driver), a real
``policywatch-evaluator`` with tokens, and the directory where screenshots are kept as test artefacts
(``$POLICYWATCH_ARTIFACTS``, else ``tests/artifacts/``, which git ignores)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.api.support import EvaluatorProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
READ = "read-token-" + "r" * 16
WRITE = "write-token-" + "w" * 16
BROWSER_ZONE = "Asia/Kolkata"  # UTC+05:30 all year: local times are checked against it
WIDTH, HEIGHT = 1400, 900


@pytest.fixture(scope="session")
def artifacts() -> Path:
    root = Path(os.environ.get("POLICYWATCH_ARTIFACTS") or Path(__file__).resolve().parents[1] / "artifacts")
    path = root / "ui"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            pytest.fail(f"{path} is missing: run scripts/setup (it installs Debian's chromium and chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument(f"--window-size={WIDTH},{HEIGHT}")
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    service = Service(executable_path=str(CHROMEDRIVER), env={**os.environ, "TZ": BROWSER_ZONE})
    driver = webdriver.Chrome(options=options, service=service)
    try:
        # the viewport itself at 1400x900, whatever the window decorations take
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
        )
        driver.set_page_load_timeout(30)
        yield driver
    finally:
        driver.quit()


def start_secured(
    process: EvaluatorProcess, *args: str, scheme: str = "http", ca: str | None = None, **env: str
) -> str:
    """The evaluator with a read and a write token (and the scheduler, as in production)."""
    tokens = {"POLICYWATCH_READ_TOKENS": READ, "POLICYWATCH_WRITE_TOKENS": WRITE}
    return process.start(*args, env={**tokens, **env}, scheme=scheme, ca=ca)
