"""The console's pages and its two state changes (complete a promise, requeue a dead letter).

Each page is a layout around a *live region*. The page's script asks for the same address again
with the ``X-Vow-Live: 1`` header every few seconds while the tab is visible, and gets only the
live region back. Reading the figures is the same code either way (:func:`_page`): a Redis outage
renders a banner in the live region (status 503), so the next refresh after Redis is back shows the
figures again without a reload. The two POST handlers answer with a redirect (post/redirect/get)
and a flashed message.

A completion uses the store's normal complete with the idempotency key ``console:<form token>``.
Every rendering of a form has a fresh random form token, so a double click (the same form sent
twice) completes the promise once: the second send is an idempotent retry that changes nothing,
and is reported as such, with the value the first one set.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from vow.coordinator import NotFound, State, StoreConnectionError, VowError
from vow.coordinator import streams as task_streams
from vow.coordinator.states import Status
from vow.coordinator.waits import human_waits, is_human_wait_candidate

from ..options import check_json_text
from ..tree import call_tree, function_name
from . import present
from .app import LIVE_HEADER, page_context, state

__all__ = ["views"]

views = Blueprint("console", __name__)

#: promises per page of the Promises search
PAGE_SIZE = 25
_FORM_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}")
_ACTIONS = {"resolve": State.RESOLVED, "reject": State.REJECTED}


def form_token() -> str:
    """A fresh token for one rendering of a completion form (its idempotency key's source)."""
    return secrets.token_urlsafe(16)


def _page(template: str, nav: str, load: Callable[[], dict[str, Any]]) -> tuple[str, int]:
    """Render ``template`` (the full page, or only its live region when the script asks)."""
    status, outage, problem = 200, None, None
    context: dict[str, Any] = {}
    try:
        context = load()
    except StoreConnectionError as e:
        status, outage = 503, str(e).rstrip(".")
    except NotFound as e:
        status, problem = 404, _sentence(e)
    except VowError as e:
        status, problem = 400, _sentence(e)
    live = request.headers.get(LIVE_HEADER) == "1"
    html = render_template(
        template, live=live, nav=nav, outage=outage, problem=problem, live_url=request.full_path.rstrip("?"),
        form_token=form_token, present=present, **page_context(), **context,
    )
    return html, status


def _sentence(error: Exception) -> str:
    """An error's message as one sentence (one final full stop)."""
    return str(error).rstrip(".") + "."


def _now() -> int:
    return state().store.estimated_now()


# -- pages ---------------------------------------------------------------------------------------


@views.get("/")
def inbox() -> tuple[str, int]:
    def load() -> dict[str, Any]:
        store = state().store
        found = human_waits(store)
        roots = {w.root for w in found.waits if w.root}
        records = store.read_records(sorted(roots)) if roots else {}
        funcs = {r: function_name(p) if p is not None else None for r, p in records.items()}
        return {"waits": found.waits, "truncated": found.truncated, "root_funcs": funcs, "now": _now()}

    return _page("inbox.html", "inbox", load)


@views.get("/promises")
def promises() -> tuple[str, int]:
    pattern = request.args.get("q", "").strip() or "*"
    family = request.args.get("state", "")
    tag_texts = [t for t in request.args.getlist("tag") if t.strip()]
    cursor = request.args.get("cursor") or None

    def load() -> dict[str, Any]:
        tags = present.parse_tags(tag_texts)
        page = state().store.search(pattern, state=family or None, tags=tags, limit=PAGE_SIZE, cursor=cursor)
        next_url = None
        if page.cursor:
            next_url = url_for(".promises", q=pattern, state=family, tag=tag_texts, cursor=page.cursor)
        return {"found": page.promises, "next_url": next_url, "now": _now()}

    return _page("promises.html", "promises", load)


@views.get("/promise")
def promise() -> tuple[str, int]:
    promise_id = request.args.get("id", "")

    def load() -> dict[str, Any]:
        store = state().store
        tree = call_tree(store, promise_id)
        now = _now()
        record = tree.promise
        return {
            "record": record, "tree": tree, "now": now, "bars": present.timeline(tree, now),
            "param": present.data_view(record.param.data, record.param.headers),
            "value": present.data_view(record.value.data, record.value.headers),
            "can_complete": is_human_wait_candidate(record),
        }

    return _page("promise.html", "promises", load)


@views.get("/streams")
def streams() -> tuple[str, int]:
    def load() -> dict[str, Any]:
        console = state()
        stats = task_streams.group_stats(console.store)
        console.throughput.observe(stats)
        charts = {
            s.group: present.chart(console.throughput.series(s.group), console.throughput.window_s) for s in stats
        }
        letters = task_streams.dead_letters(console.store, None, limit=100)
        return {"stats": stats, "charts": charts, "letters": letters, "window_s": console.throughput.window_s}

    return _page("streams.html", "streams", load)


@views.get("/schedules")
def schedules() -> tuple[str, int]:
    pattern = request.args.get("q", "").strip() or "*"
    cursor = request.args.get("cursor") or None

    def load() -> dict[str, Any]:
        page = state().store.schedules.search(pattern, limit=PAGE_SIZE, cursor=cursor)
        next_url = url_for(".schedules", q=pattern, cursor=page.cursor) if page.cursor else None
        return {"found": page.schedules, "next_url": next_url, "now": _now()}

    return _page("schedules.html", "schedules", load)


# -- state changes -------------------------------------------------------------------------------


def _back(default: str = "/") -> Response:
    """A redirect to the form's ``next`` page (a path of this console only) or ``default``."""
    target = request.form.get("next", "")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = default
    return redirect(target, code=303)


def _complete_message(promise_id: str, verb: str, status: Status, record: Any) -> tuple[str, str]:
    value = present.preview(record.value.data, 80)
    if status is Status.COMPLETED:
        return "ok", f"{verb.capitalize()}d {promise_id!r} with {value}."
    if status is Status.DEDUPLICATED:
        return "warn", (f"{promise_id!r} is already completed ({record.state.value}) by an earlier send of this "
                        f"same form; nothing changed and its value stays {value}.")
    if status is Status.TIMEDOUT:
        return "error", f"{promise_id!r} had already timed out ({record.state.value}); nothing changed."
    return "error", (f"{promise_id!r} is already completed ({record.state.value}, value {value}); "
                     "nothing changed.")


@views.post("/complete")
def complete() -> Response:
    promise_id = request.form.get("id", "")
    verb = request.form.get("action", "")
    token = request.form.get("form_token", "")
    text = request.form.get("value", "").strip()
    target = _ACTIONS.get(verb)
    if target is None or not _FORM_TOKEN.fullmatch(token) or not promise_id:
        flash("The form was incomplete (no promise, action or form token): reload the page. Nothing was changed.",
              "error")
        return _back()
    try:
        data = check_json_text(text) if text else None
        status, record = state().store.complete_ex(promise_id, target, ikey=f"console:{token}", data=data)
    except StoreConnectionError as e:
        flash(f"Not sent: {_sentence(e)} Send the form again once Redis is back "
              "(it completes the promise at most once).", "error")
        return _back()
    except VowError as e:
        flash(f"Not sent: {_sentence(e)} Nothing was changed.", "error")
        return _back()
    if record is None:
        flash(f"Promise {promise_id!r} not found. Nothing was changed.", "error")
    else:
        category, message = _complete_message(promise_id, verb, status, record)
        flash(message, category)
    return _back()


@views.post("/requeue")
def requeue() -> Response:
    group = request.form.get("group", "")
    entry = request.form.get("entry", "")
    try:
        new_ref = task_streams.requeue(state().store, group, entry)
    except VowError as e:
        flash(f"Not requeued: {_sentence(e)}", "error")
    else:
        flash(f"Requeued dead letter {entry} of {group!r} as {new_ref}.", "ok")
    return _back("/streams")
