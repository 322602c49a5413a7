"""End-to-end fixtures: a real ``nluserve serve`` on loopback and one headless Chromium.

The server is the installed CLI in a subprocess with its data directory in a temp dir, so the
console is tested exactly as an operator runs it: real SQLite, real audit writer, real quota
headers. Chromium is Debian's (``apt-get install chromium``), driven by Playwright's bundled
driver; Playwright never downloads a browser. A missing Chromium skips these tests on a
developer machine and fails them under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from nluserve.tenancy.keys import generate

CHROMIUM = Path(os.environ.get("NLUSERVE_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
START_TIMEOUT_S = 90.0
# Tenant status and revocations are cached per worker; a short cache keeps "disabled tenant is
# logged out on its next call" quick to observe without changing what is being tested.
AUTH_CACHE_S = "0.5"


def _missing(what: str) -> None:
    reason = f"{what}; install Debian's chromium (apt-get install chromium) for the console tests"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Server:
    """The running server: its URL, the admin key it was given, and the CLI against its data."""

    url: str
    admin_key: str
    env: dict[str, str]

    @property
    def console(self) -> str:
        return self.url + "/console/"

    def cli(self, *args: str) -> Any:
        """Run ``nluserve <args> --json`` against the server's database; the parsed answer."""
        done = subprocess.run(
            [sys.executable, "-m", "nluserve", *args, "--json"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def tenant(self, name: str, *options: str) -> str:
        """A new tenant made with the CLI; returns its API key."""
        made = self.cli("tenant", "create", name, *options)
        key: str = made["api_key"]
        return key

    def api(self, method: str, path: str, key: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)


@contextlib.contextmanager
def serve_console(data: Path, models: str = "general", **extra_env: str) -> Iterator[Server]:
    """``nluserve serve`` of ``models`` on a free loopback port with its data in ``data``, until
    the block ends."""
    _, admin_key = generate()
    port = _free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("NLUSERVE_") or k.startswith("NLUSERVE_TEST")
    }
    env.update(
        NLUSERVE_DATA_DIR=str(data),
        NLUSERVE_ADMIN_KEY=admin_key,
        NLUSERVE_AUTH_CACHE_S=AUTH_CACHE_S,
        NLUSERVE_INFERENCE_THREADS="1",
        NLUSERVE_LOG_LEVEL="warning",
        **extra_env,
    )
    log_path = data / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "nluserve", "serve"),
                *("--host", "127.0.0.1", "--port", str(port), "--models", models),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"nluserve serve exited:\n{log_path.read_text()}", pytrace=False)
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"nluserve serve not ready:\n{log_path.read_text()}", pytrace=False)
            time.sleep(0.2)
        yield Server(url, admin_key, env)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with serve_console(tmp_path_factory.mktemp("e2e-data")) as running:
        yield running


@pytest.fixture(scope="session")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A second server with NLUSERVE_AUTH=false: every call is taken without a key."""
    with serve_console(tmp_path_factory.mktemp("e2e-open"), NLUSERVE_AUTH="false") as running:
        yield running


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One Chromium for the e2e package; each test opens its own context (cookies, storage).

    Package scope: Playwright's sync API keeps an event loop running on the main thread while
    it is open, which would break every later test that calls asyncio.run()."""
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} not found")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is not installed (uv sync --group dev)")

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Console:
    """A page in a fresh browser context that records script errors and CSP violations."""

    def __init__(self, context: Any, server: Server) -> None:
        self.context = context
        self.page = context.new_page()
        self.server = server
        self.problems: list[str] = []
        self.page.on("pageerror", lambda exc: self.problems.append(f"page error: {exc}"))
        self.page.on("console", self._console)

    def _console(self, message: Any) -> None:
        text = message.text
        if "Content Security Policy" in text or "Refused to" in text:
            self.problems.append(f"CSP: {text}")

    def open(self, view: str = "") -> None:
        self.page.goto(self.server.console + (f"#/{view}" if view else ""))

    def login(self, key: str, view: str = "playground") -> None:
        self.open(view)
        self.page.fill("#login-key", key)
        self.page.click("#login-form button[type=submit]")
        self.page.wait_for_selector(f"#view-{view}:not([hidden]) h1")

    def stored_key(self) -> str | None:
        value: str | None = self.page.evaluate("sessionStorage.getItem('nluserve.key')")
        return value


def artefacts_dir() -> Path:
    """Where screenshots go: NLUSERVE_E2E_ARTEFACTS, else <tmp>/nluserve-e2e/artefacts (outside
    pytest's rotating basetemp, so a CI step can still collect them after the run)."""
    chosen = os.environ.get("NLUSERVE_E2E_ARTEFACTS")
    return Path(chosen) if chosen else Path(tempfile.gettempdir()) / "nluserve-e2e" / "artefacts"


@pytest.fixture(scope="session")
def artefacts() -> Path:
    path = artefacts_dir()
    path.mkdir(parents=True, exist_ok=True)
    return path


def pytest_terminal_summary(terminalreporter: Any) -> None:
    path = artefacts_dir()
    if path.is_dir() and any(path.glob("*.png")):
        terminalreporter.write_line(f"console screenshots: {path}")


@pytest.fixture
def shoot(artefacts: Path) -> Any:
    """shoot(page, name, mask): a full-page PNG in the artefacts folder, and in docs/screenshots/
    when NLUSERVE_UPDATE_SCREENSHOTS=1 (how the README's pictures are refreshed)."""

    def take(page: Any, name: str, mask: list[Any] | None = None) -> Path:
        path = artefacts / f"{name}.png"
        page.screenshot(path=str(path), full_page=True, mask=mask or [])
        if os.environ.get("NLUSERVE_UPDATE_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, SCREENSHOTS / path.name)
        return path

    return take


@pytest.fixture
def console_factory(browser: Any, server: Server) -> Iterator[Any]:
    """make(locale=..., width=..., height=..., on=server, timezone_id=..., clock=...) -> Console;
    every context closes after the test, and a test fails if any page hit a script error or a
    CSP violation. `clock` fixes the browser's Date at that time (timers keep running)."""
    opened: list[Console] = []

    def make(
        locale: str = "en-US",
        width: int = 1280,
        height: int = 900,
        on: Server | None = None,
        timezone_id: str | None = None,
        clock: datetime | None = None,
    ) -> Console:
        zone = {"timezone_id": timezone_id} if timezone_id else {}
        context = browser.new_context(
            locale=locale,
            viewport={"width": width, "height": height},
            device_scale_factor=1,
            **zone,
        )
        context.set_default_timeout(15_000)
        console = Console(context, on or server)
        if clock is not None:
            console.page.clock.set_fixed_time(clock)
        opened.append(console)
        return console

    yield make
    problems = [p for c in opened for p in c.problems]
    for c in opened:
        c.context.close()
    assert not problems, problems
