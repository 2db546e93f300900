"""The console in a real browser: Debian's Chromium driven by Playwright against a real server.

A member signs in, searches "kimi", activates a model with Activate Now, creates a key, calls the
API with the openai client and that key, finds the call in the usage tables, revokes the key (the
next call is refused), and talks to the model in the playground; another workspace stays out of
reach; a form without its CSRF token is refused; repeated wrong passwords lock the account.
Screenshots of every page go to tests/artifacts/console/.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import openai
import pytest

from moonserve.testing.server import start_server

MODEL = "kimi/kimi-k2.6"
ARTIFACTS = Path(__file__).parent / "artifacts" / "console"


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.fail("Debian's chromium is needed for the console tests: apt-get install chromium "
                    "(scripts/test.sh installs it)")
    return exe


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    server = start_server(tmp_path_factory.mktemp("console"))
    owner_password = re.search(r"MOONSERVE_CONSOLE_PASSWORD=(\S+)", server.output()).group(1)
    added = server.cli("users", "add", "bob", "--workspace", "team-b").stdout
    bob_password = added.strip().split()[-1]
    server.cli("users", "add", "carol", "--workspace", "team-c")
    yield {"server": server, "owner": owner_password, "bob": bob_password}
    server.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def sign_in(page, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/console/models")
    assert page.url.endswith("/console/login")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/models")


def test_a_member_activates_a_model_makes_a_key_calls_sees_usage_and_revokes(console, browser):
    server = console["server"]
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.goto(f"{server.url}/console/login")
    page.screenshot(path=ARTIFACTS / "01-login.png")
    sign_in(page, server.url, "bob", console["bob"])

    page.get_by_label("Search models").fill("kimi")
    page.get_by_role("button", name="Search").click()
    cards = page.locator("article.model")
    assert cards.count() == 4
    card = page.locator(f'article.model[data-model="{MODEL}"]')
    assert "Not activated in team-b" in card.inner_text()
    page.screenshot(path=ARTIFACTS / "02-models.png", full_page=True)
    card.get_by_role("button", name="Activate Now").click()
    dialog = card.locator("dialog")
    assert dialog.is_visible() and f"Activate {MODEL}?" in dialog.inner_text()
    page.screenshot(path=ARTIFACTS / "03-activate-dialog.png")
    dialog.get_by_role("button", name="Confirm").click()
    page.wait_for_load_state()
    assert "Activated in team-b" in page.locator(f'article.model[data-model="{MODEL}"]').inner_text()

    page.get_by_role("link", name="API keys").click()
    page.get_by_role("button", name="Create API key").click()
    secret = page.locator("#secret").inner_text()
    assert secret.startswith("sk-")
    page.screenshot(path=ARTIFACTS / "04-new-key.png")
    page.goto(f"{server.url}/console/keys")  # shown once: gone on the next visit
    assert secret not in page.content()

    client = openai.OpenAI(api_key=secret, base_url=server.base_url, max_retries=0)
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=5,
                                       extra_body={"enable_thinking": False})
    with pytest.raises(openai.PermissionDeniedError):  # not activated in team-b
        client.chat.completions.create(model="kimi/kimi-k2.5", messages=[{"role": "user", "content": "Hi"}])

    page.get_by_role("link", name="Usage").click()
    by_model = page.locator("#by-model table")
    row = by_model.locator("tbody tr", has_text=MODEL)
    cells = row.locator("td").all_inner_texts()
    assert cells[0] == "1" and cells[1] == str(r.usage.prompt_tokens) and cells[4] == str(r.usage.completion_tokens)
    assert page.locator("#by-key table tbody tr").count() == 1
    assert page.locator("#by-day svg.chart rect").count() == 2  # one day: a bar in each chart
    page.screenshot(path=ARTIFACTS / "05-usage.png", full_page=True)
    csv_text = page.request.get(f"{server.url}/console/usage.csv?by=model&since=7d").text()
    assert csv_text.splitlines()[0].startswith("group,requests,prompt_tokens")
    assert f"{MODEL},1,{r.usage.prompt_tokens}," in csv_text

    page.get_by_role("link", name="API keys").click()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Revoke").first.click()
    page.wait_for_load_state()
    assert "revoked" in page.locator("tbody tr").first.inner_text()
    page.screenshot(path=ARTIFACTS / "06-revoked.png")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}], max_tokens=5)

    from playwright.sync_api import expect

    page.get_by_role("link", name="Playground").click()
    page.get_by_label("Message").fill("Say hello.")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("#usage")).to_contain_text("Usage:", timeout=60000)
    assert page.locator("#answer").inner_text().strip()
    assert page.locator("#reasoning").inner_text().strip()  # thinking was on: SmolLM2's guided reasoning
    page.screenshot(path=ARTIFACTS / "07-playground.png", full_page=True)

    page.set_viewport_size({"width": 380, "height": 800})  # a narrow window
    page.get_by_role("link", name="Models").click()
    page.screenshot(path=ARTIFACTS / "08-narrow.png", full_page=True)
    context.close()


def signed_in(browser, url: str, username: str, password: str):
    """A page of a new browser context, signed in."""
    page = browser.new_context().new_page()
    sign_in(page, url, username, password)
    return page


def test_a_member_cannot_reach_another_workspace_nor_post_without_the_token(console, browser):
    server = console["server"]
    page = signed_in(browser, server.url, "bob", console["bob"])
    response = page.goto(f"{server.url}/console/usage?workspace=default")
    assert response.status == 403 and "only see your own workspace" in page.content()
    page.screenshot(path=ARTIFACTS / "09-other-workspace.png")
    posted = page.request.post(f"{server.url}/console/keys", form={"action": "create", "workspace": "team-b"})
    assert posted.status == 403 and "security token" in posted.text()
    assert "sk-" not in posted.text()
    page.context.close()


def test_the_owner_sees_every_workspace_and_manages_users(console, browser):
    server = console["server"]
    page = signed_in(browser, server.url, "admin", console["owner"])
    options = page.locator("#workspace option").all_inner_texts()
    assert {"default", "team-b", "team-c"} <= set(options)
    page.goto(f"{server.url}/console/keys?workspace=team-b")
    assert page.locator("tbody tr[data-key]").count() == 1  # bob's key, revoked
    page.get_by_role("link", name="Users").click()
    page.get_by_label("Username").fill("dave")
    page.locator("#new-workspace").fill("team-d")
    page.get_by_role("button", name="Add user").click()
    password = page.locator("#new-password").inner_text()
    page.screenshot(path=ARTIFACTS / "10-users.png", full_page=True)
    dave = signed_in(browser, server.url, "dave", password)
    assert "Users" not in dave.locator("header nav").inner_text()
    assert dave.goto(f"{server.url}/console/users").status == 403
    page.once("dialog", lambda d: d.accept())
    page.locator("tr", has_text="dave").get_by_role("button", name="Remove").click()
    page.wait_for_load_state()
    assert dave.goto(f"{server.url}/console/models").url.endswith("/console/login")  # signed out at once
    page.context.close()
    dave.context.close()


def post_sign_in(c: httpx.Client, username: str, password: str) -> httpx.Response:
    """The sign-in form, as a browser posts it (its token from the page and the cookie beside it)."""
    csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/console/login").text).group(1)
    return c.post("/console/login", data={"csrf": csrf, "username": username, "password": password})


def test_repeated_wrong_passwords_lock_the_account(console):
    server = console["server"]
    with httpx.Client(base_url=server.url) as c:
        def attempt(password: str) -> httpx.Response:
            return post_sign_in(c, "carol", password)

        for _ in range(5):
            assert "Wrong username or password" in attempt("not-the-password").text
        locked = attempt("not-the-password")
        assert locked.status_code == 401 and "locked" in locked.text
        # the session cookie is HttpOnly and SameSite
        r = c.post("/console/login", data={"csrf": "x", "username": "carol", "password": "y"})
        assert "security token" in r.text


def test_hostile_console_requests_get_clear_refusals(console):
    server = console["server"]
    with httpx.Client(base_url=server.url) as c:
        assert post_sign_in(c, "x" * 30000, "\x00" * 1000).status_code == 401
        too_big = c.post("/console/login", content=b"username=" + b"x" * 200_000,
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert too_big.status_code == 403 and "64 KB" in too_big.text
        assert post_sign_in(c, "bob", console["bob"]).status_code == 303
        page = c.get("/console/playground").text
        token = re.search(r'data-csrf="([^"]+)"', page).group(1)
        chat = "/console/playground/chat"
        assert c.post(chat, json={"model": MODEL, "message": "Hi"}).status_code == 403  # no CSRF header
        headers = {"X-CSRF-Token": token, "Content-Type": "application/json"}
        for body, status in [(b"[]", 400), (b"{", 400), (b'{"model": "nope", "message": "Hi"}', 404),
                             (b'{"model": "kimi/kimi-k2.5", "message": "Hi"}', 403),
                             (b'{"model": "kimi/kimi-k2.6", "workspace": "default", "message": "Hi"}', 403)]:
            r = c.post(chat, content=body, headers=headers)
            assert r.status_code == status, (body, r.text)
        assert c.get("/console/usage.csv?by=nope").status_code == 403
    assert server.proc.poll() is None and "Traceback" not in server.output()
