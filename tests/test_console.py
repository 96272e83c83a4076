"""``vow console`` without a browser: Flask's test client on the real server, and one real served
console process.

Checks escaping (an XSS payload in a promise id, a tag, a value, a dead letter's reason and a
schedule, on every page and its live region), CSRF, the access token, the Inbox's choice of human
waits, double-submit idempotency, JSON validation, the Redis-outage banner and the recovery, paging,
value display, the Requeue button, the throughput chart, and that errors are messages.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from tests.harness import ROOT, wait_until
from vow.cli.console import views as console_views
from vow.cli.console.app import LIVE_HEADER, TOKEN_COOKIE, TOKEN_HEADER, create_app
from vow.cli.console.command import check_bind, is_loopback
from vow.cli.console.present import chart, data_view, timeline
from vow.cli.console.throughput import Throughput
from vow.cli.main import cli
from vow.coordinator import Callback, RedisStore, State, ValidationError, keys
from vow.coordinator import streams as task_streams
from vow.coordinator.streams import ConsumerStats, GroupStats
from vow.coordinator.tasks import TaskKind, TaskMessage
from vow.processes import ManagedProcess
from vow.server import ServerProcess

HOUR_MS = 3_600_000
XSS = "<script>alert(1)</script>\"'&"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&#34;&#39;&amp;"
PAGES = ("/", "/promises", "/streams", "/schedules")


# -- helpers -------------------------------------------------------------------------------------


class _Forms(HTMLParser):
    """Every form of a page: its action and its fields (inputs, textareas, the buttons' values)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "id": a.get("id", ""), "fields": {}, "buttons": []})
        elif self.forms and tag in ("input", "textarea") and "name" in a:
            self.forms[-1]["fields"][a["name"]] = a.get("value", "")
        elif self.forms and tag == "button" and "name" in a:
            self.forms[-1]["buttons"].append(a.get("value", ""))


def forms(html: str) -> list[dict[str, Any]]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def complete_form(client: FlaskClient, promise_id: str, page: str = "/") -> dict[str, str]:
    """The fields of the Resolve/Reject form for ``promise_id`` on ``page``."""
    html = client.get(page).get_data(as_text=True)
    for form in forms(html):
        if form["action"] == "/complete" and form["fields"].get("id") == promise_id:
            return dict(form["fields"])
    raise AssertionError(f"no completion form for {promise_id!r} on {page}: {html[:2000]}")


def flashes(html: str) -> list[str]:
    return re.findall(r'<p class="flash [a-z]+" role="status">(.*?)</p>', html, re.S)


def text(response: Any) -> str:
    return str(response.get_data(as_text=True))


def human_wait(store: RedisStore, root: str, wait_id: str, data: str | None = None) -> None:
    """A root workflow (an invoke) and a child it waits on, as the worker SDK tags them."""
    now = store.now()
    if root not in {p.id for p in store.search(root).promises}:
        store.invoke(root, "workflow", ["alice"], group="workflow-service", timeout=now + HOUR_MS, ikey=root)
    store.create(wait_id, now + HOUR_MS, ikey=wait_id, data=data, tags={"vow:parent": root, "vow:root": root})


@pytest.fixture
def app(real_store: RedisStore) -> Flask:
    return create_app(real_store, live_interval_ms=500)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# -- the Inbox -----------------------------------------------------------------------------------


def test_inbox_lists_the_human_waits_newest_first_with_their_workflow(real_store: RedisStore,
                                                                     client: FlaskClient) -> None:
    now = real_store.now()
    human_wait(real_store, "workflow-a", "email-confirmed-a")
    human_wait(real_store, "workflow-b", "email-confirmed-b")
    tags = {"vow:root": "workflow-a", "vow:parent": "workflow-a"}
    real_store.create("workflow-a.2", now + HOUR_MS, tags={**tags, "resonate:timeout": "true"})  # a timer
    real_store.invoke("workflow-a.3", "send_email", [], group="email-service", timeout=now + HOUR_MS, tags=tags)
    real_store.create("nobody-waits", now + HOUR_MS)  # pending, but no workflow waits on it
    real_store.create("adopted", now + HOUR_MS)  # created outside, awaited by a workflow's callback
    real_store.register_callback("adopted", Callback("workflow-c", "workflow-service", b"resume"))
    real_store.create("done", now + HOUR_MS, tags=tags)
    real_store.resolve("done", data="1")

    html = text(client.get("/"))
    rows = re.findall(r'<tr class="wait" data-promise="([^"]+)">', html)
    assert sorted(rows) == ["adopted", "email-confirmed-a", "email-confirmed-b"]
    created = [real_store.get(r).created_on for r in rows]
    assert created == sorted(created, reverse=True)  # newest first
    assert "3 human waits" in html
    row_a = html[html.index('data-promise="email-confirmed-a"'):]
    assert 'href="/promise?id=workflow-a"' in row_a.split("</tr>")[0]
    assert "workflow-c" in html.split('data-promise="adopted"')[1].split("</tr>")[0]
    live = text(client.get("/", headers={LIVE_HEADER: "1"}))
    assert "<html" not in live and re.findall(r'data-promise="([^"]+)"', live)[:3] == rows


def test_resolve_from_the_inbox_and_a_double_submit_completes_once(real_store: RedisStore,
                                                                  client: FlaskClient) -> None:
    human_wait(real_store, "workflow-a", "email-confirmed-a")
    fields = complete_form(client, "email-confirmed-a")
    first = client.post("/complete", data={**fields, "value": "true", "action": "resolve"}, follow_redirects=True)
    assert first.status_code == 200 and flashes(text(first)) == ["Resolved &#39;email-confirmed-a&#39; with true."]
    # The same form sent again (a double click), even with another value and action: nothing changes.
    again = client.post("/complete", data={**fields, "value": "false", "action": "reject"}, follow_redirects=True)
    [message] = flashes(text(again))
    assert "already completed (RESOLVED) by an earlier send of this same form" in message
    assert "its value stays true" in message
    record = real_store.get("email-confirmed-a")
    assert record.state is State.RESOLVED and record.value.data == b"true"
    assert record.idempotency_key_for_complete == f"console:{fields['form_token']}"
    # Another form (a second tab): refused as already completed, the value still the first's.
    other = dict(fields, form_token="another-form-token-0123")
    late = client.post("/complete", data={**other, "value": "false", "action": "resolve"}, follow_redirects=True)
    [message] = flashes(text(late))
    assert "is already completed (RESOLVED, value true); nothing changed" in message
    assert real_store.get("email-confirmed-a").value.data == b"true"
    assert 'data-promise="email-confirmed-a"' not in text(client.get("/"))


def test_reject_with_a_json_object(real_store: RedisStore, client: FlaskClient) -> None:
    human_wait(real_store, "workflow-a", "approval-a")
    fields = complete_form(client, "approval-a")
    client.post("/complete", data={**fields, "value": '{"reason": "no"}', "action": "reject"})
    record = real_store.get("approval-a")
    assert record.state is State.REJECTED and json.loads(record.value.data or b"") == {"reason": "no"}


@pytest.mark.parametrize("bad", ["{not json", "NaN", "'single'", "True"])
def test_bad_json_is_a_clear_message_and_writes_nothing(real_store: RedisStore, client: FlaskClient, bad: str) -> None:
    human_wait(real_store, "workflow-a", "email-confirmed-a")
    before = real_store.get("email-confirmed-a")
    fields = complete_form(client, "email-confirmed-a")
    response = client.post("/complete", data={**fields, "value": bad, "action": "resolve"}, follow_redirects=True)
    [message] = flashes(text(response))
    assert message.startswith("Not sent: ") and "is not valid JSON" in message and "Nothing was changed" in message
    assert real_store.get("email-confirmed-a") == before
    # ... and the same form still works once the value is fixed
    client.post("/complete", data={**fields, "value": "true", "action": "resolve"})
    assert real_store.get("email-confirmed-a").value.data == b"true"


def test_unknown_promise_and_incomplete_form_are_messages(real_store: RedisStore, client: FlaskClient) -> None:
    human_wait(real_store, "workflow-a", "email-confirmed-a")
    fields = complete_form(client, "email-confirmed-a")
    gone = client.post("/complete", data={**fields, "id": "no-such", "value": "true", "action": "resolve"},
                       follow_redirects=True)
    assert flashes(text(gone)) == ["Promise &#39;no-such&#39; not found. Nothing was changed."]
    for broken in ({"action": "approve"}, {"form_token": "short"}, {"id": ""}):
        response = client.post("/complete", data={**fields, "value": "true", "action": "resolve", **broken},
                               follow_redirects=True)
        assert "The form was incomplete" in flashes(text(response))[0]
    assert real_store.get("email-confirmed-a").pending
    # a "next" that leaves the console is not followed
    response = client.post("/complete", data={**fields, "next": "//evil.example/", "value": "true",
                                              "action": "resolve"})
    assert response.status_code == 303 and response.headers["Location"] == "/"


# -- safety --------------------------------------------------------------------------------------


def _xss_world(store: RedisStore) -> tuple[str, str]:
    """A workflow whose id, a tag, the param and a value hold the payload; a dead letter whose
    reason does; a schedule whose description and template do. Returns (root id, waiting id)."""
    root, wait = f"wf-{XSS}", f"wait-{XSS}"
    now = store.now()
    store.invoke(root, "workflow", [XSS], group="workflow-service", timeout=now + HOUR_MS, tags={XSS: XSS})
    store.create(wait, now + HOUR_MS, data=json.dumps(XSS), tags={"vow:root": root, "vow:parent": root, "k": XSS})
    store.create(f"{root}.1", now + HOUR_MS, tags={"vow:root": root, "vow:parent": root, "vow:func": XSS})
    store.resolve(f"{root}.1", data=json.dumps({XSS: XSS}), headers={XSS: XSS})
    raw = TaskMessage(TaskKind.INVOKE, root, "workflow-service", XSS).encode()
    store.client.xadd(keys.dead_letters(3, "workflow-service"),
                      {"m": raw, "reason": XSS, "from": "1-0", "consumer": XSS, "deliveries": "5"})
    store.client.sadd(keys.groups(3), "workflow-service")
    store.schedules.create(f"s-{XSS}", "0 * * * *", f"tick-{XSS}-{{{{.timestamp}}}}", HOUR_MS, description=XSS)
    return root, wait


def test_an_xss_payload_is_escaped_on_every_page(real_store: RedisStore, client: FlaskClient) -> None:
    root, wait = _xss_world(real_store)
    quoted = urllib.request.quote
    urls = [*PAGES, f"/promise?id={quoted(root)}", f"/promise?id={quoted(wait)}", f"/promise?id={quoted(root)}.1",
            f"/promises?q={quoted(XSS)}", f"/promises?tag={quoted('k=' + XSS)}", f"/schedules?q={quoted(XSS)}",
            f"/promise?id={quoted('missing-' + XSS)}", f"/nowhere-{quoted(XSS)}"]
    shown = 0
    for url in urls:
        for headers in ({}, {LIVE_HEADER: "1"}):
            html = text(client.get(url, headers=headers))
            assert "<script>alert" not in html and XSS not in html, url
            shown += html.count("&lt;script&gt;alert(1)&lt;/script&gt;")
    assert shown > 20
    for url in (f"/promise?id={quoted(root)}", "/"):
        assert ESCAPED in text(client.get(url)), url
    # and in the message after a completion of the promise whose id is the payload
    fields = complete_form(client, wait)
    response = client.post("/complete", data={**fields, "value": json.dumps(XSS), "action": "resolve"},
                           follow_redirects=True)
    assert "<script>alert" not in text(response)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in flashes(text(response))[0]


def test_security_headers(client: FlaskClient) -> None:
    response = client.get("/")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY" and response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"


def test_a_post_without_or_with_a_wrong_csrf_token_is_refused_and_changes_nothing(
    real_store: RedisStore, client: FlaskClient, app: Flask
) -> None:
    human_wait(real_store, "workflow-a", "email-confirmed-a")
    fields = complete_form(client, "email-confirmed-a")
    assert len(fields["csrf"]) >= 32
    base = {**fields, "value": "true", "action": "resolve"}
    without = {k: v for k, v in base.items() if k != "csrf"}
    for data, who in ((without, client), ({**base, "csrf": "wrong"}, client), ({**base, "csrf": ""}, client),
                      (base, app.test_client())):  # another session with this session's token
        response = who.post("/complete", data=data)
        assert response.status_code == 403, response
        assert "security token is missing or wrong" in text(response) and "Traceback" not in text(response)
        assert real_store.get("email-confirmed-a").pending
    ref = task_streams.entry_ref(2, real_store.client.xadd(keys.dead_letters(2, "g"), {"m": b"x", "reason": "r"})
                                 .decode())
    real_store.client.sadd(keys.groups(2), "g")
    assert client.post("/requeue", data={"group": "g", "entry": ref}).status_code == 403
    assert len(task_streams.dead_letters(real_store, "g")) == 1
    assert client.get("/complete").status_code == 405  # state changes are POST only


def test_the_token_is_required_and_checked(real_store: RedisStore) -> None:
    token = "s3cret-token"
    client = create_app(real_store, token=token).test_client()
    for url in ("/", "/streams", "/static/console.js", "/?token=wrong", f"/?token={token}x"):
        response = client.get(url)
        assert response.status_code == 401 and "needs its access token" in text(response), url
    assert client.get("/", headers={TOKEN_HEADER: "wrong"}).status_code == 401
    assert client.get("/", headers={TOKEN_HEADER: token}).status_code == 200
    assert client.get("/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # ?token= sets the cookie and drops the token from the address
    response = client.get(f"/promises?state=pending&token={token}")
    assert response.status_code == 303 and response.headers["Location"] == "/promises?state=pending"
    assert f"{TOKEN_COOKIE}={token}" in response.headers["Set-Cookie"] and "HttpOnly" in response.headers["Set-Cookie"]
    assert client.get("/promises?state=pending").status_code == 200  # the cookie now
    other = create_app(real_store, token=token).test_client()
    other.set_cookie(TOKEN_COOKIE, "wrong")
    assert other.get("/").status_code == 401


def test_without_a_token_only_loopback_host_names_are_served(client: FlaskClient) -> None:
    assert client.get("/", headers={"Host": "127.0.0.1:7700"}).status_code == 200
    assert client.get("/", headers={"Host": "[::1]:7700"}).status_code == 200
    response = client.get("/", headers={"Host": "evil.example:7700"})  # DNS rebinding
    assert response.status_code == 403 and "loopback addresses only" in text(response)


def test_a_non_loopback_bind_needs_a_token() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.7") and not is_loopback("example.com")
    check_bind("0.0.0.0", "t0ken")
    check_bind("127.0.0.1", None)
    with pytest.raises(ValidationError, match="not a loopback address"):
        check_bind("0.0.0.0", None)
    with pytest.raises(ValidationError, match="must not be empty"):
        check_bind("127.0.0.1", " ")
    env = {k: v for k, v in os.environ.items() if k != "VOW_CONSOLE_TOKEN"}
    result = CliRunner(env=env).invoke(cli, ["console", "--host", "0.0.0.0"], prog_name="vow")
    assert result.exit_code == 2 and "not a loopback address" in result.output and "--token" in result.output


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as e:
        with e:
            return int(e.code), e.read().decode()


def test_the_served_console_checks_its_token(redis_url: str, tmp_path: Path) -> None:
    vow = Path(sys.executable).with_name("vow")
    console = ManagedProcess("console", [str(vow), "console", "--url", redis_url, "--port", "0"],
                             env={**os.environ, "VOW_CONSOLE_TOKEN": "t-123", "PYTHONUNBUFFERED": "1"}, cwd=ROOT)
    try:
        line = console.wait_for_line("vow console: open ", timeout=30)
        address = re.search(r"open (http://\S+)", line)
        assert address is not None and address.group(1).endswith("/?token=t-123"), line
        base = address.group(1).split("?")[0]
        assert _get(base)[0] == 401
        assert _get(base, {TOKEN_HEADER: "nope"})[0] == 401
        status, html = _get(base, {TOKEN_HEADER: "t-123"})
        assert status == 200 and "Inbox" in html
        assert _get(base + "static/console.js", {TOKEN_HEADER: "t-123"})[0] == 200
    finally:
        assert console.stop() == 0, console.output
    assert "vow console: stopped" in console.output and "Traceback" not in console.output


def test_unexpected_errors_are_messages_not_tracebacks(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom <b>")

    monkeypatch.setattr(console_views, "human_waits", broken)
    response = client.get("/")
    assert response.status_code == 500
    html = text(response)
    assert "Unexpected RuntimeError" in html and "Traceback" not in html and "boom" not in html
    missing = client.get("/no/such/page")
    assert missing.status_code == 404 and "Not Found" in text(missing)


# -- Redis outage --------------------------------------------------------------------------------


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of this test's own, with its data in tmp_path, that the test stops and restarts."""
    server = ServerProcess(directory=tmp_path / "redis", persistence=True).start()
    yield server
    server.stop()


def test_a_redis_outage_shows_a_banner_and_the_page_recovers(own_server: ServerProcess) -> None:
    store = RedisStore(own_server.url)
    late = RedisStore(own_server.url)  # first used while Redis is down
    try:
        client = create_app(store).test_client()
        late_client = create_app(late).test_client()
        human_wait(store, "workflow-a", "email-confirmed-a")
        fields = complete_form(client, "email-confirmed-a")
        own_server.stop()
        for c in (client, late_client):
            for url in PAGES + ("/promise?id=workflow-a",):
                for headers in ({}, {LIVE_HEADER: "1"}):
                    response = c.get(url, headers=headers)
                    assert response.status_code == 503, (url, headers)
                    html = text(response)
                    assert "Redis is unreachable" in html and own_server.url.split("/0")[0][8:] in html
                    assert "Traceback" not in html
        sent = client.post("/complete", data={**fields, "value": "true", "action": "resolve"}, follow_redirects=True)
        [message] = flashes(text(sent))
        assert message.startswith("Not sent: ") and "Redis unreachable" in message and ".." not in message
        page = text(client.get("/"))
        assert 'id="live"' in page and "data-live=" in page  # the page keeps refreshing itself
        own_server.start()
        for c in (client, late_client):
            recovered = wait_until(lambda c=c: (r := c.get("/", headers={LIVE_HEADER: "1"})).status_code == 200 and r,
                                   what="the console to answer again", interval=0.1, timeout=30)
            html = text(recovered)
            assert "Redis is unreachable" not in html and 'data-promise="email-confirmed-a"' in html
        again = client.post("/complete", data={**fields, "value": "true", "action": "resolve"}, follow_redirects=True)
        assert flashes(text(again)) == ["Resolved &#39;email-confirmed-a&#39; with true."]
    finally:
        store.close()
        late.close()


# -- Promises, a promise, Streams, Schedules ------------------------------------------------------


def test_promises_search_by_glob_state_and_tags_with_paging(real_store: RedisStore, client: FlaskClient) -> None:
    now = real_store.now()
    for i in range(30):
        real_store.create(f"job-{i:02}", now + HOUR_MS, tags={"batch": "even" if i % 2 == 0 else "odd"})
    real_store.resolve("job-07", data="7")
    real_store.create("other", now + HOUR_MS)

    def ids(html: str) -> list[str]:
        return re.findall(r'<tr class="promise-row" data-promise="([^"]+)">', html)

    first = text(client.get("/promises?q=job-*"))
    assert len(ids(first)) == 25 and ids(first)[0] == "job-29"
    next_url = re.search(r'href="([^"]+)" id="next-page"', first)
    assert next_url is not None
    second = text(client.get(next_url.group(1).replace("&amp;", "&")))
    assert ids(second) == [f"job-{i:02}" for i in range(4, -1, -1)] and 'id="next-page"' not in second
    assert ids(text(client.get("/promises?q=job-*&state=resolved"))) == ["job-07"]
    odd = ids(text(client.get("/promises?q=job-*&state=pending&tag=batch%3Dodd")))
    assert odd == [f"job-{i:02}" for i in range(29, 0, -2) if i != 7]
    bad = client.get("/promises?tag=novalue")
    assert bad.status_code == 400 and "is not of the form key=value" in text(bad)
    assert client.get("/promises?cursor=garbage").status_code == 400


def test_a_promise_page_shows_its_record_values_tree_and_timeline(real_store: RedisStore, client: FlaskClient) -> None:
    human_wait(real_store, "workflow-a", "email-confirmed-a", data=json.dumps({"to": "alice", "n": [1, 2]}))
    tags = {"vow:root": "workflow-a", "vow:parent": "workflow-a"}
    now = real_store.now()
    real_store.create("workflow-a.1", now + HOUR_MS, tags={**tags, "vow:func": "step1"})
    real_store.resolve("workflow-a.1", data=b"\x00\xff", headers={"content-type": "application/octet-stream"})
    html = text(client.get("/promise?id=workflow-a"))
    tree = html.split('id="tree"')[1].split("</ul>\n")[0]
    assert "workflow-a.1" in tree and "email-confirmed-a" in tree and "step1" in tree
    assert html.count('class="bar ') == 2
    assert '<pre class="data json" id="param-data">' in html and "&#34;func&#34;: &#34;workflow&#34;" in html
    step = text(client.get("/promise?id=workflow-a.1"))
    assert '<pre class="data base64" id="value-data">AP8=</pre>' in step and "bytes, base64" in step
    waiting = text(client.get("/promise?id=email-confirmed-a"))
    assert "&#34;n&#34;: [\n    1,\n    2\n  ]" in waiting and 'action="/complete"' in waiting
    assert 'action="/complete"' not in step  # completed: no form
    missing = client.get("/promise?id=nope")
    assert missing.status_code == 404 and "promise &#39;nope&#39; not found" in text(missing)


def test_streams_show_figures_dead_letters_and_requeue_once(real_store: RedisStore, client: FlaskClient) -> None:
    real_store.invoke("job-1", "send_email", [], group="email-service", timeout=real_store.now() + HOUR_MS)
    raw = TaskMessage(TaskKind.INVOKE, "job-9", "email-service", "send_email", deliveries=5).encode()
    entry = real_store.client.xadd(keys.dead_letters(5, "email-service"),
                                   {"m": raw, "reason": "handler raised KeyError", "from": "1-0",
                                    "consumer": "w1", "deliveries": "5"})
    real_store.client.sadd(keys.groups(5), "email-service")
    ref = task_streams.entry_ref(5, entry.decode())
    html = text(client.get("/streams"))
    row = html.split('data-group="email-service"')[1].split("</tr>")[0]
    assert re.findall(r'<td class="num[^"]*">(\d+)</td>', row) == ["1", "0", "1", "1"]  # length, pending, lag, dead
    assert "handler raised KeyError" in html and f'data-entry="{ref}"' in html and "<polyline" not in html
    form = next(f for f in forms(html) if f["action"] == "/requeue")
    done = client.post("/requeue", data=form["fields"], follow_redirects=True)
    assert flashes(text(done))[0].startswith(f"Requeued dead letter {ref} of &#39;email-service&#39; as 5-")
    twice = client.post("/requeue", data=form["fields"], follow_redirects=True)
    assert flashes(text(twice))[0].startswith("Not requeued: no dead letter")
    assert task_streams.dead_letters(real_store) == []
    assert task_streams.group_stats(real_store, ["email-service"])[0].length == 2


def test_schedules_page_lists_schedules(real_store: RedisStore, client: FlaskClient) -> None:
    real_store.schedules.create("nightly-report", "0 3 * * *", "report-{{.timestamp}}", HOUR_MS,
                                description="the nightly report")
    html = text(client.get("/schedules"))
    assert 'data-schedule="nightly-report"' in html and "0 3 * * *" in html and "the nightly report" in html
    assert "No schedule matches" in text(client.get("/schedules?q=none-*"))


def _stats(group: str, read: int) -> GroupStats:
    return GroupStats(group, 0, 0, 0, read, 0, (ConsumerStats("c", 0, 0),), 1)


def test_throughput_samples_and_chart() -> None:
    now = [1000.0]
    sampler = Throughput(interval_s=5, window_s=60, clock=lambda: now[0])
    sampler.observe([_stats("g", 100)])
    now[0] += 1
    sampler.observe([_stats("g", 150)])  # younger than the interval: not a sample
    now[0] += 4
    sampler.observe([_stats("g", 150)])
    now[0] += 5
    sampler.observe([_stats("g", 150), _stats("h", 1)])
    assert sampler.series("g") == [(5.0, 10.0), (0.0, 0.0)] and sampler.series("h") == []
    now[0] += 120
    sampler.observe([_stats("g", 150)], force=True)
    assert sampler.series("g") == []  # older samples left the window
    drawn = chart([(5.0, 10.0), (0.0, 0.0)], 60, width=120, height=40)
    assert drawn.points == "110.0,2.0 120.0,38.0" and drawn.peak == 10.0 and drawn.latest == 0.0


def test_values_and_timeline_helpers() -> None:
    assert data_view(b'{"b": 1, "a": [true]}').text == '{\n  "a": [\n    true\n  ],\n  "b": 1\n}'
    assert data_view(b"\xff\x00").kind == "base64" and data_view(b"\xff\x00").text == "/wA="
    assert data_view(b"plain words").kind == "text" and data_view(None).kind == "none"
    assert data_view(b"1", {"content-type": "application/octet-stream"}).text == "MQ=="
    from vow.cli.tree import TreeNode
    from vow.coordinator import DurablePromise, Value

    def record(pid: str, created: int, done: int | None) -> DurablePromise:
        return DurablePromise(pid, State.PENDING if done is None else State.RESOLVED, Value(), Value(), 10**12, None,
                              None, {}, created, done)

    root = TreeNode(record("r", 1000, 2000), "wf", [TreeNode(record("r.1", 1000, 1500), "a"),
                                                    TreeNode(record("r.2", 1500, None), None)])
    bars = timeline(root, now=2000)
    assert [(b.promise.id, b.x, b.width, b.start_ms, b.duration_ms) for b in bars] == [
        ("r.1", 0.0, 300.0, 0, 500), ("r.2", 300.0, 300.0, 500, 500)]
