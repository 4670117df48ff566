"""A real browser (Debian's Chromium, driven by Playwright) on real ``aisle serve`` processes.

Chromium is installed by ``make system-deps`` (a step of ``make test``); the browser tests skip, saying
so, only when no Chromium executable can be found. Playwright's own browser downloads are never
used: the system Chromium is launched by path. Every page runs with the network cut off except
for the server under test, and a request to any other host fails the test.

Screenshots go to ``$AISLE_SCREENSHOTS`` when set (``make screenshots`` points it at
``docs/screenshots``), else to a temporary folder.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.system.server import REPO_ROOT, ServerProcess, server_environment

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
API_KEY = "playground-test-key"
DEMO_CATALOG = REPO_ROOT / "demo" / "catalog.csv"
VIEWPORT = {"width": 1366, "height": 900}
EXPERIMENT = "home-recs"
#: The demo server's experiment, configured only where the service has experiments.
EXPERIMENTS_CONFIG = f"""experiments:
  - name: {EXPERIMENT}
    surfaces: [recommendations, search, similar]
    variants:
      - {{name: control, share: 0.5, control: true}}
      - {{name: personal, share: 0.5}}
"""


def has_experiments() -> bool:
    return importlib.util.find_spec("aisle.service.experiments") is not None


def chromium_executable() -> str | None:
    """``$AISLE_CHROMIUM``, Debian's Chromium, or a ``chromium`` on the PATH."""
    configured = os.environ.get("AISLE_CHROMIUM")
    if configured:
        return configured
    found = next((path for path in CHROMIUM_CANDIDATES if Path(path).is_file()), None)
    return found or shutil.which("chromium") or shutil.which("chromium-browser")


def build_index(catalog: Path, out: Path, *extra: str) -> None:
    """``aisle build`` as a shop runs it (the real encoder, its export cached)."""
    result = subprocess.run(
        [sys.executable, "-m", "aisle", "build", "--catalog", str(catalog), "--out", str(out), "--no-progress", *extra],
        cwd=REPO_ROOT,
        env=server_environment(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("AISLE_SCREENSHOTS")
    folder = Path(configured) if configured else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    executable = chromium_executable()
    if executable is None:
        pytest.skip(
            "no Chromium found (looked for $AISLE_CHROMIUM, /usr/bin/chromium, chromium on PATH): "
            "run `make system-deps` (apt-get install chromium) to run the browser tests"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=LAUNCH_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """The demo catalogue served with an API key (events, profiles and admin routes need it)."""
    root = tmp_path_factory.mktemp("playground-demo")
    build_index(DEMO_CATALOG, root / "index")
    settings: dict[str, Any] = {"api_key": API_KEY, "watch_interval_s": 0}
    if has_experiments():
        (root / "aisle.yaml").write_text(EXPERIMENTS_CONFIG)
        settings["config"] = root / "aisle.yaml"
    with ServerProcess(root / "index", root / "data", root / "server.log", **settings) as server:
        yield server


@pytest.fixture(scope="session")
def picture_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """Real fashion products with their pictures (the shared data's fixture), no API key."""
    shared = Path(os.environ.get("AISLE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    fashion = shared / "fixture" / "images" / "fashion"
    if not (fashion / "styles.csv").is_file():
        pytest.skip(f"shared evaluation data not found at {shared} (set AISLE_SHARED_DATA)")
    root = tmp_path_factory.mktemp("playground-pictures")
    catalog = root / "fashion.jsonl"
    with (fashion / "styles.csv").open(newline="", encoding="utf-8") as handle, catalog.open("w") as out:
        for row in csv.DictReader(handle):
            product = {
                "id": row["id"],
                "title": row["productDisplayName"],
                "category": f"{row['masterCategory']} > {row['subCategory']} > {row['articleType']}",
                "image": str(fashion / "images" / f"{row['id']}.jpg"),
                "gender": row["gender"],
                "colour": row["baseColour"],
                "season": row["season"],
            }
            out.write(json.dumps(product) + "\n")
    build_index(catalog, root / "index")
    with ServerProcess(root / "index", root / "data", root / "server.log", watch_interval_s=0) as server:
        yield server


class Browser:
    """One page in a fresh context, cut off from every host but the server's."""

    def __init__(self, chromium: Any, server: ServerProcess, screenshots: Path, api_key: str | None) -> None:
        self.server = server
        self.screenshots = screenshots
        self.context = chromium.new_context(viewport=VIEWPORT)
        if api_key:
            self.context.add_init_script(f"sessionStorage.setItem('aisle.apiKey', {json.dumps(api_key)});")
        self.outside: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._only_the_server)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.set_default_timeout(20_000)

    def _only_the_server(self, route: Any) -> None:
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", None) or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.outside.append(route.request.url)
            route.abort()

    def open(self, path: str, view: str) -> Any:
        """Goes to ``path`` and waits until the playground has rendered ``view``."""
        self.page.goto(self.server.url + path)
        return self.ready(view)

    def ready(self, view: str) -> Any:
        self.page.wait_for_selector(f"body[data-ready='{view}']")
        return self.page

    def shot(self, name: str) -> Path:
        path = self.screenshots / f"{name}.png"
        self.page.screenshot(path=str(path))
        return path

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def demo(chromium: Any, demo_server: ServerProcess, screenshot_dir: Path) -> Iterator[Browser]:
    browser = Browser(chromium, demo_server, screenshot_dir, API_KEY)
    yield browser
    browser.close()
    assert browser.outside == [], f"the page reached outside the server: {browser.outside}"
    assert browser.errors == [], f"script errors: {browser.errors}"


@pytest.fixture
def keyless(chromium: Any, demo_server: ServerProcess, screenshot_dir: Path) -> Iterator[Browser]:
    """The demo server from a tab where nobody has typed the API key yet."""
    browser = Browser(chromium, demo_server, screenshot_dir, None)
    yield browser
    browser.close()
    assert browser.outside == [], f"the page reached outside the server: {browser.outside}"
    assert browser.errors == [], f"script errors: {browser.errors}"


@pytest.fixture
def pictures(chromium: Any, picture_server: ServerProcess, screenshot_dir: Path) -> Iterator[Browser]:
    browser = Browser(chromium, picture_server, screenshot_dir, None)
    yield browser
    browser.close()
    assert browser.outside == [], f"the page reached outside the server: {browser.outside}"
    assert browser.errors == [], f"script errors: {browser.errors}"
