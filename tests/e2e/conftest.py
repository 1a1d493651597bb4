"""End-to-end fixtures: the live stack, Chromium, logged-in users, screenshots and axe.

The e2e tests run in the PostgreSQL + Redis pass of `.ci/run` (and whenever
DATABASE_URL names PostgreSQL and REDIS_URL is set), against gunicorn and a real
rq worker; on the embedded SQLite setup they are skipped, saying why. They need
Debian's Chromium (/usr/bin/chromium, or CHROMIUM_PATH): Playwright cannot
download its own browsers here.
"""

import os
import shutil
from pathlib import Path

import pytest

from tests.e2e.browser import VIEWPORT, Console, login
from tests.e2e.stack import ROOT, Stack

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
AXE = ROOT / "var" / "node" / "node_modules" / "axe-core" / "axe.min.js"
# Screenshots go under var/ on every run; AMENDS_UPDATE_SCREENSHOTS=1 writes the docs' copies.
DOCS_SHOTS = ROOT / "docs" / "screenshots"
RUN_SHOTS = ROOT / "var" / "e2e" / "screenshots"


def _why_not() -> str | None:
    database_url = os.environ.get("DATABASE_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")):
        return (
            "end-to-end tests run in the PostgreSQL + Redis pass (DATABASE_URL is not PostgreSQL)"
        )
    if not os.environ.get("REDIS_URL"):
        return "end-to-end tests need REDIS_URL: they run a real rq worker"
    if not Path(CHROMIUM).exists():
        return f"end-to-end tests need Chromium at {CHROMIUM} (apt-get install chromium)"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _why_not()
    # In CI's PostgreSQL pass the story must run: a missing browser fails there.
    required = os.environ.get("AMENDS_E2E_REQUIRED") == "1"
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)
            if reason and not required:
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: end-to-end test in a real browser")
    config.addinivalue_line("markers", "incremental: later steps skip once a step fails")


# --- Steps that build on each other ------------------------------------------------
def pytest_runtest_makereport(item, call):
    skipped = (pytest.skip.Exception, pytest.xfail.Exception)
    if (
        "incremental" in item.keywords
        and call.when == "call"
        and call.excinfo is not None
        and not call.excinfo.errisinstance(skipped)
    ):
        item.parent._e2e_failed = item


def pytest_runtest_setup(item):
    if "incremental" in item.keywords:
        failed = getattr(item.parent, "_e2e_failed", None)
        if failed is not None:
            pytest.xfail(f"an earlier step failed: {failed.name}")


# --- The stack and the browser --------------------------------------------------------
@pytest.fixture(scope="package")
def stack():
    running = Stack(
        database_url=os.environ["DATABASE_URL"], redis_url=os.environ["REDIS_URL"]
    ).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        # Root in a container: Chromium's sandbox needs user namespaces it may not have.
        "args": ["--no-sandbox", "--disable-dev-shm-usage"],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": VIEWPORT, "locale": "en-GB", "timezone_id": "UTC"}


@pytest.fixture
def console():
    return Console()


@pytest.fixture
def as_user(browser, stack, console):
    """`as_user("support_sam")` → a logged-in page in its own browser context."""
    contexts = []

    def _open(username: str, **context_args):
        options = {"viewport": VIEWPORT, "locale": "en-GB", "timezone_id": "UTC"}
        context = browser.new_context(base_url=stack.base_url, **(options | context_args))
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = console.watch(context.new_page())
        login(page, username, stack.seed["password"])
        return page

    yield _open
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def shot():
    """`shot(page, "03-audience")` saves a PNG of the viewport for the user guide."""
    target = DOCS_SHOTS if os.environ.get("AMENDS_UPDATE_SCREENSHOTS") == "1" else RUN_SHOTS
    target.mkdir(parents=True, exist_ok=True)

    def _shot(page, name: str, *, at=None, full_page: bool = False):
        """The viewport from the top of the page, or from `at` (a locator) down."""
        page.evaluate("() => document.activeElement?.blur()")
        if at is None:
            page.evaluate("() => window.scrollTo(0, 0)")
        else:
            at.scroll_into_view_if_needed()
            page.evaluate(
                "el => window.scrollBy(0, el.getBoundingClientRect().top - 16)", at.element_handle()
            )
        path = target / f"{name}.png"
        page.screenshot(path=path, full_page=full_page, animations="disabled", caret="hide")
        return path

    return _shot


# --- Accessibility ---------------------------------------------------------------------
@pytest.fixture(scope="session")
def axe_source() -> str:
    if not AXE.exists():
        if os.environ.get("AMENDS_E2E_REQUIRED") == "1":
            pytest.fail(f"axe-core is missing at {AXE}")
        pytest.skip(f"axe-core is not installed: npm install --prefix var/node axe-core@4 ({AXE})")
    return AXE.read_text()
