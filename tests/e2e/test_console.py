"""The web console in a real Chromium against a real ``nluserve serve``."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import Console, Server

pytestmark = pytest.mark.slow

TEXTS = ["张三在北京大学读书。", "李四去了上海市浦东新区，谷爱凌在北京冬奥会获得金牌。"]
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
MARKS_JS = """() => [...document.querySelectorAll('#pg-output .result')].map((result) =>
  [...result.querySelectorAll('mark')].map((m) => ({
    start: Number(m.dataset.start), end: Number(m.dataset.end),
    label: m.dataset.label, text: m.textContent,
  })))"""

Make = Callable[..., Console]
Shoot = Callable[..., Any]


def _spans(answer: dict[str, Any]) -> list[list[dict[str, Any]]]:
    return [
        [{k: e[k] for k in ("start", "end", "label", "text")} for e in result["entities"]]
        for result in answer["results"]
    ]


def _run(console: Console, texts: list[str]) -> None:
    """Run the playground on texts and wait for the answer (Run is disabled while it runs)."""
    page = console.page
    page.select_option("#pg-model", "general")
    page.fill("#pg-text", "\n".join(texts))
    page.click("#pg-run")
    page.wait_for_selector("#pg-run:not([disabled])")
    page.wait_for_selector("#pg-summary")


def test_console_page_and_assets_carry_a_strict_csp(server: Server) -> None:
    redirect = httpx.get(server.url + "/console", follow_redirects=False)
    assert redirect.status_code == 308
    assert redirect.headers["location"] == "console/"
    page = httpx.get(server.console)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CSP
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    # Every script is a file: no inline script, handler or style attribute in the page.
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text)
    assert not re.search(r"\son[a-z]+=|\sstyle=", page.text)
    script = httpx.get(server.url + "/console/assets/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert script.headers["content-security-policy"] == CSP
    again = httpx.get(
        server.url + "/console/assets/app.js", headers={"If-None-Match": script.headers["etag"]}
    )
    assert again.status_code == 304
    etag = script.headers["etag"]
    for given in (f"W/{etag}", f'"other", {etag}', "*"):  # weak, a list, any
        revalidated = httpx.get(
            server.url + "/console/assets/app.js", headers={"If-None-Match": given}
        )
        assert revalidated.status_code == 304, given
    changed = httpx.get(server.url + "/console/assets/app.js", headers={"If-None-Match": '"old"'})
    assert changed.status_code == 200
    for url in (server.console, server.url + "/console/assets/app.js"):  # uptime probes use HEAD
        head = httpx.head(url)
        assert head.status_code == 200, url
        assert head.headers["content-security-policy"] == CSP
        assert head.headers["etag"] and not head.content
    assert httpx.head(server.url + "/console/assets/nope.js").status_code == 404
    assert httpx.get(server.url + "/console/assets/nope.js").status_code == 404
    assert httpx.get(server.url + "/console/assets/..%2Fapp.py").status_code == 404


def test_wrong_key_shows_a_clear_message_and_stores_nothing(
    server: Server, console_factory: Make, shoot: Shoot
) -> None:
    console = console_factory()
    page = console.page
    console.open()
    page.fill("#login-key", "nlu_AAAAAAAAAAAA_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    page.press("#login-key", "Enter")  # the form works from the keyboard
    message = page.locator("#login-message")
    message.wait_for()
    assert "was not accepted" in message.inner_text()
    assert console.stored_key() is None
    assert page.is_hidden("#nav")
    shoot(page, "login-error")


@pytest.mark.parametrize("typed", ["nlu_ＡＢＣ密钥", "nlu_AAAA\u200bBBBB", "nlu_AAAA BBBB"])
def test_a_key_with_characters_no_key_has_is_named_as_such(
    server: Server, console_factory: Make, typed: str
) -> None:
    # fetch() refuses a header value outside Latin-1, which used to read "Cannot reach the
    # server"; and nothing is sent for what cannot be a key.
    console = console_factory()
    page = console.page
    console.open()
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url))
    page.fill("#login-key", typed)
    page.press("#login-key", "Enter")
    message = page.locator("#login-message")
    message.wait_for()
    assert "This is not an API key" in message.inner_text()
    assert "reach the server" not in message.inner_text()
    assert not [url for url in sent if "/v1/" in url]
    assert console.stored_key() is None


def test_language_follows_the_browser_and_the_choice_is_remembered(
    server: Server, console_factory: Make
) -> None:
    console = console_factory(locale="zh-CN")
    page = console.page
    console.open()
    assert page.inner_text("#login-title") == "使用 API 密钥登录"
    assert page.get_attribute("html", "lang") == "zh-CN"
    page.select_option("#lang", "en")
    assert page.inner_text("#login-title") == "Log in with an API key"
    page.reload()
    assert page.inner_text("#login-title") == "Log in with an API key"


def test_prediction_highlights_the_apis_offsets(
    server: Server, console_factory: Make, shoot: Shoot
) -> None:
    key = server.tenant("playground-e2e")
    console = console_factory()
    page = console.page
    console.login(key)
    _run(console, TEXTS)
    shown = page.evaluate(MARKS_JS)
    answer = server.api("POST", "/v1/models/general/predict", key, json={"texts": TEXTS}).json()
    assert shown == _spans(answer)
    assert any(shown), "the model should find entities in these sentences"
    rows = page.locator("#pg-entities tbody tr").count()
    assert rows == sum(len(r) for r in shown)
    assert int(page.get_attribute("#pg-summary", "data-latency-ms") or "-1") >= 0
    curl = page.inner_text("#pg-curl")
    python = page.inner_text("#pg-python")
    assert "$NLUSERVE_KEY" in curl and "NLUSERVE_KEY" in python
    assert key not in page.content()
    assert key not in page.url
    assert page.evaluate("JSON.stringify(localStorage)").find(key) == -1
    shoot(page, "playground")

    # Entity types picked by their Chinese names: the same schema as the API call.
    page.check("#pg-labels input[data-code=name]")
    _run(console, TEXTS)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#pg-output mark')]"
        ".every((m) => m.dataset.label === 'name')"
    )
    narrowed = server.api(
        "POST", "/v1/models/general/predict", key, json={"texts": TEXTS, "labels": ["人名"]}
    ).json()
    assert page.evaluate(MARKS_JS) == _spans(narrowed)
    assert '"labels":["人名"]' in page.inner_text("#pg-curl")


def test_console_fits_a_phone_screen(server: Server, console_factory: Make, shoot: Shoot) -> None:
    key = server.tenant("phone-e2e")
    console = console_factory(locale="zh-CN", width=390, height=844)
    page = console.page
    console.login(key)
    _run(console, TEXTS[:1])
    overflow = page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0
    shoot(page, "playground-phone")


def test_usage_chart_counts_the_calls_just_made(
    server: Server, console_factory: Make, shoot: Shoot
) -> None:
    key = server.tenant("usage-e2e", "--quota-daily", "500", "--burst", "30")
    console = console_factory()
    page = console.page
    console.login(key, "usage")
    calls = page.locator("[data-chart=calls]")
    assert calls.get_attribute("data-total") == "0"
    assert page.get_attribute("#us-quota", "data-limit") == "500"
    assert page.get_attribute("#us-rate", "data-burst") == "30"

    page.click("#nav a[data-view=playground]")
    page.wait_for_selector("#view-playground:not([hidden]) #pg-model option", state="attached")
    _run(console, TEXTS)
    _run(console, TEXTS[:1])
    page.click("#nav a[data-view=usage]")
    deadline = time.monotonic() + 15
    while calls.get_attribute("data-total") != "2":  # the audit writer flushes every 0.5 s
        assert time.monotonic() < deadline, "the usage chart never showed the two calls"
        time.sleep(0.3)
        page.click("#us-refresh")
        page.wait_for_selector("#us-refresh:not([disabled])")
    chars = sum(len(t) for t in TEXTS) + len(TEXTS[0])
    assert page.get_attribute("[data-chart=chars]", "data-total") == str(chars)
    assert page.get_attribute("#us-quota", "data-used") == "2"
    assert page.locator("#us-models tbody tr").count() == 1
    shoot(page, "usage")


def test_tenant_key_gets_admin_only_and_no_admin_data(
    server: Server, console_factory: Make
) -> None:
    key = server.tenant("nosy-e2e")
    console = console_factory()
    page = console.page
    statuses: list[int] = []
    page.on(
        "response",
        lambda r: statuses.append(r.status) if "/admin/" in r.url else None,
    )
    console.login(key, "admin")
    page.wait_for_selector("#ad-denied")
    assert "Admin only" in page.inner_text("#ad-denied")
    assert page.locator("#ad-tenants, #ad-create, [data-chart=tenants]").count() == 0
    assert statuses and set(statuses) == {403}
    assert console.stored_key() == key  # "admin only" is an answer, not a logout
    assert server.api("GET", "/admin/tenants", key).status_code == 403


def test_admin_creates_disables_and_revokes(
    server: Server, console_factory: Make, shoot: Shoot
) -> None:
    console = console_factory()
    page = console.page
    console.login(server.admin_key, "admin")
    table = page.locator("#ad-tenants")
    table.wait_for()
    assert table.locator("[data-tenant-name=admin]").count() == 1

    page.fill("#ad-name", "acme-e2e")
    page.fill("#ad-quota", "1234")
    page.click("#ad-create button[type=submit]")
    new_key = page.locator("#ad-new-key")
    new_key.wait_for()
    api_key = new_key.input_value()
    assert server.api("GET", "/v1/models", api_key).status_code == 200
    row = table.locator("tr", has=page.locator("[data-tenant-name=acme-e2e]"))
    assert "1,234" in row.inner_text()
    page.wait_for_selector("[data-chart=tenants] svg")
    shoot(page, "admin", mask=[new_key])  # a real key, even if a throwaway one

    page.on("dialog", lambda dialog: dialog.accept())  # "Revoke key …?", "Disable …?"
    page.click("button[data-action=keys][data-tenant=acme-e2e]")
    page.locator("#ad-keys button[data-action=revoke]").click()
    page.wait_for_selector("#ad-keys .badge.disabled")
    deadline = time.monotonic() + 5
    while server.api("GET", "/v1/models", api_key).status_code != 401:
        assert time.monotonic() < deadline, "a revoked key kept working"
        time.sleep(0.2)

    page.click("button[data-action=status][data-tenant=acme-e2e]")
    page.wait_for_selector("[data-tenant-name=acme-e2e]")
    status = row.locator("[data-status]")
    status.wait_for()
    page.wait_for_function(
        "() => document.querySelector('tr:has([data-tenant-name=\"acme-e2e\"]) [data-status]')"
        ".dataset.status === 'disabled'"
    )
    assert server.cli("tenant", "show", "acme-e2e")["tenant"]["status"] == "disabled"


def test_disabled_tenant_is_logged_out_on_its_next_call(
    server: Server, console_factory: Make
) -> None:
    key = server.tenant("doomed-e2e")
    console = console_factory()
    page = console.page
    console.login(key)
    server.cli("tenant", "disable", "doomed-e2e")
    deadline = time.monotonic() + 10
    while page.is_hidden("#view-login"):  # the tenant cache may answer once more
        assert time.monotonic() < deadline, "a disabled tenant stayed logged in"
        page.click("#pg-run")
        page.wait_for_selector("#pg-run:not([disabled]), #view-login:not([hidden])")
    assert "disabled" in page.inner_text("#login-message")
    assert console.stored_key() is None
    assert page.locator("#pg-output mark").count() == 0  # nothing of the session is left


def _release(route: Any) -> None:
    """Let a held request's real answer through. A request the page has already aborted (a
    logout aborts what the ended session had in flight) cannot be answered any more: fine."""
    from playwright.sync_api import Error as PlaywrightError

    with contextlib.suppress(PlaywrightError):
        route.fulfill(response=route.fetch())


def test_a_late_answer_from_the_previous_session_is_never_drawn(
    server: Server, console_factory: Make
) -> None:
    key = server.tenant("next-session-e2e")
    console = console_factory()
    page = console.page
    held: list[Any] = []

    def hold(route: Any) -> None:
        held.append(route)

    console.login(server.admin_key, "playground")
    # A slow server: the admin's usage answer arrives after the next user has logged in.
    page.route("**/admin/usage*", hold)
    page.click("#nav a[data-view=admin]")
    deadline = time.monotonic() + 10
    while not held:
        assert time.monotonic() < deadline, "the admin view never asked for /admin/usage"
        page.wait_for_timeout(100)
    page.click("#logout")
    page.wait_for_selector("#view-login:not([hidden])")
    page.fill("#login-key", key)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#view-admin:not([hidden]) #ad-denied")
    page.unroute("**/admin/usage*")
    _release(held[0])
    page.wait_for_timeout(800)
    assert page.locator("#ad-tenants, #ad-create, [data-chart=tenants]").count() == 0
    assert page.locator("#ad-denied").count() == 1
    assert console.stored_key() == key

    # The playground: A's text and entities must not appear in B's page.
    page.click("#nav a[data-view=playground]")
    page.wait_for_selector("#view-playground:not([hidden]) #pg-model option", state="attached")
    page.click("#logout")
    page.wait_for_selector("#view-login:not([hidden])")
    held.clear()
    page.fill("#login-key", server.admin_key)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#view-playground:not([hidden]) #pg-model option", state="attached")
    page.route("**/predict", hold)
    page.select_option("#pg-model", "general")
    page.fill("#pg-text", "机密：王五在深圳腾讯公司工作。")
    page.click("#pg-run")
    while not held:
        assert time.monotonic() < deadline + 10, "the run never reached the server"
        page.wait_for_timeout(100)
    page.click("#logout")
    page.fill("#login-key", key)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#view-playground:not([hidden]) #pg-model option", state="attached")
    page.unroute("**/predict")
    _release(held[0])
    page.wait_for_timeout(800)
    assert page.locator("#pg-output *").count() == 0
    assert "王五" not in page.inner_text("#view-playground")
    assert page.is_enabled("#pg-run")


def test_usage_draws_only_the_period_last_picked(server: Server, console_factory: Make) -> None:
    key = server.tenant("period-e2e")
    console = console_factory()
    page = console.page
    console.login(key, "usage")
    page.wait_for_selector("[data-chart=calls]")
    held: list[Any] = []

    def thirty_days(url: str) -> bool:
        return "usage?days=30" in url

    def hold(route: Any) -> None:
        held.append(route)

    page.route(thirty_days, hold)
    page.select_option("#us-days", "30")
    deadline = time.monotonic() + 10
    while not held:
        assert time.monotonic() < deadline, "the 30-day request never left"
        page.wait_for_timeout(100)
    page.select_option("#us-days", "7")
    page.wait_for_selector("#us-refresh:not([disabled])")
    page.unroute(thirty_days)
    _release(held[0])  # the slow 30-day answer arrives last
    page.wait_for_timeout(800)
    assert page.input_value("#us-days") == "7"
    assert page.locator("[data-chart=calls] tbody tr").count() == 7


def test_admin_confirms_destructive_actions_and_marks_this_sessions_key(
    server: Server, console_factory: Make
) -> None:
    server.tenant("careful-e2e")
    console = console_factory()
    page = console.page
    dialogs: list[tuple[str, str]] = []

    def back_out(dialog: Any) -> None:
        dialogs.append((dialog.type, dialog.message))
        if dialog.type == "prompt":
            dialog.accept("not the name")  # a wrong answer is as good as Cancel
        else:
            dialog.dismiss()

    page.on("dialog", back_out)
    console.login(server.admin_key, "admin")
    page.locator("#ad-tenants").wait_for()

    page.click("button[data-action=status][data-tenant=careful-e2e]")
    page.wait_for_selector("#ad-message .alert")
    assert dialogs[-1][0] == "confirm" and "careful-e2e" in dialogs[-1][1]
    assert server.cli("tenant", "show", "careful-e2e")["tenant"]["status"] == "active"

    page.click("button[data-action=status][data-tenant=admin]")
    assert dialogs[-1][0] == "prompt" and "lock yourself out" in dialogs[-1][1]
    assert server.cli("tenant", "show", "admin")["tenant"]["status"] == "active"

    page.click("button[data-action=keys][data-tenant=admin]")
    own = page.locator("#ad-keys tr", has=page.locator("[data-this-session]"))
    own.wait_for()
    assert "this session" in own.inner_text()
    own_id = server.admin_key.split("_")[1]
    assert own.locator(f'button[data-action=revoke][data-key="{own_id}"]').count() == 1
    own.locator("button[data-action=revoke]").click()
    assert dialogs[-1][0] == "prompt" and "key of this session" in dialogs[-1][1]
    assert own_id in dialogs[-1][1]
    page.wait_for_selector("#ad-message .alert.ok")
    assert server.api("GET", "/v1/models", server.admin_key).status_code == 200
    assert console.stored_key() == server.admin_key
    assert len(dialogs) == 3


def test_admin_refuses_a_quota_typo_and_says_when_copy_failed(
    server: Server, console_factory: Make
) -> None:
    console = console_factory()
    page = console.page
    console.login(server.admin_key, "admin")
    page.locator("#ad-tenants").wait_for()
    page.fill("#ad-name", "typo-e2e")
    page.locator("#ad-quota").press_sequentially("1e")  # not a number: input.value is ""
    page.click("#ad-create button[type=submit]")
    page.wait_for_selector("#ad-message [role=alert]")
    assert "whole number" in page.inner_text("#ad-message")
    assert page.get_attribute("#ad-quota", "aria-invalid") == "true"
    assert server.api("GET", "/admin/tenants/typo-e2e", server.admin_key).status_code == 404

    page.fill("#ad-quota", "")
    page.locator("#ad-quota").press_sequentially("77")
    page.click("#ad-create button[type=submit]")
    page.locator("#ad-new-key").wait_for()
    assert server.cli("tenant", "show", "typo-e2e")["tenant"]["quota_daily"] == 77

    # Plain http on a LAN address has no navigator.clipboard: say so and select the key.
    page.evaluate(
        "Object.defineProperty(navigator, 'clipboard', {value: undefined, configurable: true})"
    )
    page.click(".reveal button[data-action=copy]")
    page.wait_for_selector("[data-copy-failed]")
    assert "Ctrl+C" in page.inner_text("[data-copy-failed]")
    assert page.inner_text(".reveal button[data-action=copy]") == "Copy"
    assert page.evaluate(
        "(() => { const i = document.getElementById('ad-new-key');"
        " return document.activeElement === i && i.selectionStart === 0"
        " && i.selectionEnd === i.value.length; })()"
    )


def test_a_failed_run_clears_the_old_result_and_keeps_the_problems_details(
    server: Server, console_factory: Make
) -> None:
    key = server.tenant("failed-run-e2e")
    console = console_factory()
    page = console.page
    console.login(key)
    _run(console, TEXTS[:1])
    page.fill("#pg-text", "张" * 20_000)  # over the API's length limit: a 422
    page.click("#pg-run")
    page.wait_for_selector("#pg-message [role=alert]")
    page.wait_for_selector("#pg-run:not([disabled])")
    said = page.inner_text("#pg-message")
    assert "(422)" in said and "request id " in said, said
    assert page.locator("#pg-output *").count() == 0


def test_without_authentication_the_console_needs_no_key_and_hides_tenancy(
    open_server: Server, console_factory: Make
) -> None:
    console = console_factory(on=open_server)
    page = console.page
    console.open("usage")  # a tenancy view asked for: the playground is shown instead
    page.wait_for_selector("#view-playground:not([hidden]) h1")
    assert page.is_hidden("#view-login")
    assert page.is_visible("#auth-off")
    assert page.is_visible("#nav a[data-view=playground]")
    assert page.is_hidden("#nav a[data-view=usage]")
    assert page.is_hidden("#nav a[data-view=admin]")
    assert page.is_hidden("#logout")
    assert page.url.endswith("#/playground")
    _run(console, TEXTS[:1])
    assert page.locator("#pg-output mark").count() > 0
    assert console.stored_key() is None


ACTIVE_JS = "() => document.activeElement.id || document.activeElement.dataset.action || 'body'"


def test_repeated_buttons_name_their_tenant_or_key_and_focus_is_never_lost(
    server: Server, console_factory: Make
) -> None:
    console = console_factory()
    page = console.page
    page.on("dialog", lambda dialog: dialog.accept())
    console.login(server.admin_key, "admin")
    page.locator("#ad-tenants").wait_for()
    page.fill("#ad-name", "a11y-e2e")
    page.press("#ad-name", "Enter")
    page.locator("#ad-new-key").wait_for()
    assert page.evaluate(ACTIVE_JS) == "ad-new-key"  # not <body>: the key, ready for Ctrl+C
    assert page.get_attribute("#ad-new-key ~ button[data-action=copy]", "aria-label") == (
        "Copy New API key"
    )
    toggle = page.locator("button[data-action=status][data-tenant=a11y-e2e]")
    assert toggle.get_attribute("aria-label") == "Disable a11y-e2e"
    keys = page.locator("button[data-action=keys][data-tenant=a11y-e2e]")
    assert keys.get_attribute("aria-label") == "Keys of a11y-e2e"
    keys.click()
    page.locator("#ad-keys").wait_for()
    assert keys.get_attribute("aria-label") == "Hide keys of a11y-e2e"
    page.fill("#ad-key-name", "second")
    page.press("#ad-key-name", "Enter")
    page.wait_for_function("() => document.querySelectorAll('#ad-keys tbody tr').length === 2")
    assert page.evaluate(ACTIVE_JS) == "ad-new-key"
    revokes = page.locator("#ad-keys button[data-action=revoke]")
    for key_id in revokes.evaluate_all("(buttons) => buttons.map((b) => b.dataset.key)"):
        button = page.locator(f'#ad-keys button[data-key="{key_id}"]')
        assert button.get_attribute("aria-label") == f"Revoke key {key_id}"
    revokes.first.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#ad-keys .badge.disabled")
    assert page.evaluate(ACTIVE_JS) == "revoke"  # the next key's Revoke
    page.locator("#ad-keys button[data-action=revoke]").first.click()
    page.wait_for_function(
        "() => document.querySelectorAll('#ad-keys .badge.disabled').length == 2"
    )
    assert page.evaluate(ACTIVE_JS) == "ad-keys-title"

    page.click("#nav a[data-view=playground]")
    _run(console, TEXTS[:1])
    names = page.locator("#pg-output button[data-action=copy]").evaluate_all(
        "(buttons) => buttons.map((b) => b.getAttribute('aria-label'))"
    )
    assert names == ["Copy curl", "Copy Python"]


def test_admin_marks_times_as_utc_expired_keys_as_expired_and_shows_slow_rates(
    server: Server, console_factory: Make
) -> None:
    server.tenant("slow-e2e", "--rate", "0.01")
    server.cli("key", "create", "slow-e2e", "--name", "short", "--expires-days", "0.00002")
    time.sleep(2)  # about 1.7 s: the key has expired
    console = console_factory()
    page = console.page
    console.login(server.admin_key, "admin")
    row = page.locator("#ad-tenants tr", has=page.locator("[data-tenant-name=slow-e2e]"))
    row.wait_for()
    assert "0.01/s" in row.inner_text()
    page.click("button[data-action=keys][data-tenant=slow-e2e]")
    short = page.locator("#ad-keys tbody tr", has_text="short")
    short.wait_for()
    assert short.locator("[data-expired]").inner_text() == "expired"
    assert short.locator("button[data-action=revoke]").count() == 0
    cells = short.locator("td").all_inner_texts()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", cells[2]), cells
    assert cells[4].endswith(" UTC"), cells


def test_chinese_quota_reset_time_uses_chinese_units(server: Server, console_factory: Make) -> None:
    key = server.tenant("units-e2e")
    assert server.api("POST", "/v1/models/general/predict", key, json={"text": TEXTS[0]}).is_success
    console = console_factory(locale="zh-CN")
    page = console.page
    console.login(key, "usage")
    reset = page.locator("#us-body .quota p", has_text="重置")
    reset.wait_for()
    text = reset.inner_text()
    assert re.fullmatch(r"(\d+ 小时 )?\d+ 分钟后重置。", text), text


def test_usage_errors_heading_says_only_admitted_calls_are_counted(
    server: Server, console_factory: Make
) -> None:
    key = server.tenant("refused-e2e")
    refused = server.api("POST", "/v1/models/general/predict", key, json={"text": ""})
    assert refused.status_code == 422  # refused before admission: not audited
    console = console_factory()
    page = console.page
    console.login(key, "usage")
    page.locator("#us-errors-title").wait_for()
    assert "admitted" in page.inner_text("#us-errors-title")
    assert "400 or above" not in page.inner_text("#us-errors-title")
    note = page.inner_text("#us-errors-note")
    assert "422" in note and "429" in note


def test_skip_link_keeps_the_view_in_the_url(server: Server, console_factory: Make) -> None:
    console = console_factory()
    page = console.page
    console.login(server.admin_key, "usage")
    page.focus("a.skip")
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    assert page.url.endswith("#/usage"), page.url
    page.reload()
    page.wait_for_selector("#view-usage:not([hidden]) h1")


def test_chart_tick_labels_are_readable(server: Server, console_factory: Make) -> None:
    console = console_factory()
    page = console.page
    console.login(server.admin_key, "usage")
    page.locator("[data-chart=calls] svg .tick").first.wait_for()
    heights = page.eval_on_selector_all(
        "[data-chart] svg .tick", "(ticks) => ticks.map((t) => t.getBoundingClientRect().height)"
    )
    # Line boxes: about 10 px (7.5 px text) before, 18 px (13.5 px text) now at 1280 px.
    assert heights and min(heights) >= 15, heights
