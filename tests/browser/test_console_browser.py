"""The console in a real headless browser (Debian's Chromium, driven by Playwright) against
the real API served over HTTP by uvicorn, on the real stack (embedded broker, a Celery
worker process, beat, the sandbox): an operator logs in, finds a failed fax, reads why it
failed in the catalogue's words, retries it after the confirmation, and watches it
succeed on the page's refreshing panel, without reloading.

Chromium comes from the distribution (``.ci/run`` installs it when missing); Playwright's
own browser download is not used. Without Chromium the test fails: it never skips.
Screenshots of each page are saved to a temporary directory, and their paths printed.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from config.settings import get_settings
from dispatcher import queries
from dispatcher.catalogue import classify
from tests.fixtures.api import served_api
from tests.fixtures.documents import make_pdf
from tests.fixtures.stack import Stack

pytestmark = [
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.parametrize("stack_module", ["sqlite"], indirect=True),
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "console-" + "f" * 40
#: The sandbox fails the first send to this number (a temporary network issue) and
#: delivers the next one; with one attempt allowed, the fax fails until it is retried.
TEMPORARY_THEN_SUCCESS = "+12025550105"
WAIT_MS = 60_000


@pytest.fixture
def api_url(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The API over HTTP on a local port, on the stack's database and broker; beat runs,
    as deployed, so sends are followed to their end while the browser watches."""
    monkeypatch.setenv("FAX_API_TOKENS", json.dumps([TOKEN]))
    get_settings.cache_clear()
    beat = stack.start_beat()
    with served_api() as url:
        yield url
    beat.stop()
    stack.workers.remove(beat)


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"no {CHROMIUM}: install Debian's chromium (.ci/run does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots() -> Path:
    return Path(tempfile.mkdtemp(prefix="fax-console-screenshots-"))


def screenshot(page: Page, shots: Path, name: str) -> None:
    path = shots / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")


def failed_fax(api_url: str, stack: Stack) -> str:
    """A fax submitted over the API that fails (one attempt allowed; the first fails)."""
    response = httpx.post(
        f"{api_url}/v1/faxes",
        headers={"Authorization": f"Bearer {TOKEN}"},
        data={
            "to": TEMPORARY_THEN_SUCCESS,
            "provider": "faxplus",
            "options": json.dumps({"max_attempts": 1}),
            "metadata": json.dumps({"patient": "p-42"}),
        },
        files=[("documents", ("referral.pdf", make_pdf(2), "application/pdf"))],
    )
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    stack.wait_for(lambda: queries.get_job(job_id)["state"] == "failed", timeout=60)
    return job_id


def test_log_in_find_a_failed_fax_read_why_retry_it_and_watch_it_succeed(
    api_url: str, stack: Stack, browser: Browser, shots: Path
) -> None:
    job_id = failed_fax(api_url, stack)
    why = classify("faxplus", "failed_normal_temporary_failure")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(WAIT_MS)

    # Logged out, the console asks to log in; a wrong token is refused.
    page.goto(f"{api_url}/console")
    expect(page).to_have_url(f"{api_url}/console/login?next=/console")
    screenshot(page, shots, "0-login")
    page.fill("#token", "not-" + TOKEN)
    page.click("button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("not an operator's admin token")
    screenshot(page, shots, "1-login-refused")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    expect(page.locator("#actor")).to_have_text("admin:1")

    # Find the failed fax: the failed count, then the list filtered to failed faxes.
    expect(page.locator("#count-failed b")).to_have_text("1")
    page.select_option("#state", "failed")
    page.click("#filters button[type=submit]")
    row = page.locator(f"tr[data-job='{job_id}']")
    expect(row).to_contain_text("+1202555****")  # masked in lists
    expect(row).not_to_contain_text(TEMPORARY_THEN_SUCCESS)
    screenshot(page, shots, "2-jobs-failed")

    # Read why: the code, in the catalogue's words, and what happens next.
    row.locator("a").click()
    expect(page.locator("#state")).to_have_text("failed")
    expect(page.locator("#number")).to_have_text(TEMPORARY_THEN_SUCCESS)
    expect(page.locator("#last-code")).to_contain_text(why.label)
    expect(page.locator("#last-code")).to_contain_text(why.description)
    expect(page.locator("#reason")).to_contain_text("gave up after 1 attempts")
    expect(page.locator("#next-step")).to_contain_text("Retry gives it a fresh attempt budget")
    screenshot(page, shots, "3-fax-failed")

    # Retry it, after the confirmation.
    page.click("#action-retry")
    expect(page.locator("#confirm-retry")).to_be_visible()
    screenshot(page, shots, "4-confirm-retry")
    page.fill("#note", "clinic's line is back")
    page.click("#confirm-retry")
    expect(page.locator("#done")).to_contain_text("Retry: recorded as admin:1")

    # Watch it succeed on the refreshing panel, without reloading the page.
    page.evaluate("window.stayedOnThePage = true")
    expect(page.locator("#state")).to_have_text("succeeded", timeout=WAIT_MS)
    expect(page.locator("#timeline")).to_contain_text("Attempt 2 sent to faxplus")
    expect(page.locator("#timeline")).to_contain_text("by admin:1")
    assert page.evaluate("window.stayedOnThePage") is True
    screenshot(page, shots, "5-fax-succeeded")
    last_retry = [e for e in queries.events(job_id) if e["source"] == "operator"][-1]
    assert (last_retry["actor"], last_retry["detail"]) == ("admin:1", "clinic's line is back")
    assert [s["attempt"] for s in stack.sends(job_id)] == [1, 2]

    # Providers and queues: breakers, limits, depths and the oldest due job, refreshed.
    page.click("text=Providers & queues")
    expect(page.locator("tr[data-provider='faxplus']")).to_contain_text("closed")
    expect(page.locator("#queues")).to_contain_text("dispatch")
    expect(page.locator("#oldest-due")).to_contain_text("Oldest due job")
    page.evaluate("document.querySelector('#oldest-due').dataset.seen = 'yes'")
    expect(page.locator("#oldest-due[data-seen]")).to_have_count(0)  # replaced in place
    screenshot(page, shots, "6-providers")

    # Pause a provider, after the confirmation; the row says who and why; resume it.
    page.click("#pause-interfax")
    page.fill("#note", "carrier maintenance")
    screenshot(page, shots, "7-confirm-pause")
    page.click("#confirm-pause")
    paused = page.locator("tr[data-provider='interfax'] td.pause")
    expect(paused).to_contain_text("carrier maintenance")
    expect(paused).to_contain_text("by admin:1")
    screenshot(page, shots, "8-provider-paused")
    page.click("#resume-interfax")
    page.click("#confirm-resume")
    expect(paused).to_have_text("no")

    # Logging out ends the session: the console asks to log in again.
    page.click("text=Log out")
    expect(page.locator("#token")).to_be_visible()
    page.goto(f"{api_url}/console/faxes/{job_id}")
    expect(page).to_have_url(f"{api_url}/console/login?next=/console/faxes/{job_id}")
