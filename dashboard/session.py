"""The one place the dashboard's session state is initialised, and who is signed in.

Every page starts with `session.require_user()` or `session.require_admin()`: the page itself refuses a
visitor who may not see it, whatever the navigation menu shows (a URL typed by hand runs the page too). A
signed-out visitor gets the sign-in form on the page they asked for, and that page after signing in.

A sign-in is kept in a browser cookie holding a signed, expiring token (dashboard/tokens.py), so a reload or
a new tab stays signed in; `sync()`, called by the router on every run, restores it, signs out a session
idle for tokens.IDLE_S and keeps the cookie fresh while the labeler works. Failed sign-ins are throttled per
account and per client address (dashboard/throttle.py) and logged.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import streamlit as st

from dashboard import browser, services, tokens

log = logging.getLogger("alignops.dashboard")

# Every key the dashboard keeps between reruns, with its value at sign-in.
DEFAULTS: dict[str, Any] = {
    "user": None,  # {"id", "name", "role"} once signed in
    "rank_task": None,  # the ranking task on screen: {"task": Task, "token": client token, "supersedes": id|None}
    "rank_last": None,  # the last submit: what to reveal (places and model versions) above the next task
    "rank_notice": None,  # why the task on screen changed (it went stale), or what to fix in the last submit
    "rank_done": 0,  # rankings submitted in this session
    "rate_task": None,  # the response being rated: {"task": RatingTask, "token": client token}
    "rate_last": None,  # the last submit: the scores and the model version
    "rate_notice": None,
    "rate_skipped": [],  # response ids skipped on Rate in this session (offered again next session)
    "rate_done": 0,  # ratings submitted in this session
    "last_seen": 0.0,  # time of this session's last run while signed in (the idle timeout)
    "cookie_issued": 0.0,  # when the token in the browser's cookie was issued
    "cookie_due": None,  # what the next run writes to the browser: "set", "clear" or None
    "restored": False,  # whether this session already looked at the browser's cookie
    "notice": None,  # a message for the sign-in form (signed out for being idle)
}


def init() -> None:
    """Fill in every key that is missing; called by the router and by every page (idempotent)."""
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = copy.deepcopy(value)


def _reset() -> None:
    for key, value in DEFAULTS.items():
        st.session_state[key] = copy.deepcopy(value)
    st.session_state["restored"] = True  # the cookie the connection brought is not looked at again


def sign_in(annotator: Any, now: float | None = None) -> None:
    """Start a fresh session for an authenticated annotator (the store's Annotator)."""
    _reset()
    st.session_state["user"] = {"id": annotator.id, "name": annotator.name, "role": annotator.role}
    st.session_state["last_seen"] = time.time() if now is None else now
    st.session_state["cookie_due"] = "set"


def sign_out() -> None:
    _reset()
    st.session_state["cookie_due"] = "clear"


def sync() -> None:
    """Once per run, before any page: restore a sign-in from the browser's cookie, sign out an idle session,
    and write the cookie when it is due."""
    init()
    state, now = st.session_state, time.time()
    secret = services.session_secret()
    if state.user is None and not state.restored:
        state.restored = True
        token = st.context.cookies.get(browser.COOKIE)
        annotator_id = tokens.verify(token, secret, now)
        annotator = services.store().annotator(annotator_id) if annotator_id is not None else None
        if annotator is not None:  # the account still exists; its role is read afresh
            sign_in(annotator, now)
            state.cookie_issued, state.cookie_due = float(tokens.issued_at(token) or 0), None
    if state.user is not None:
        if now - state.last_seen > tokens.IDLE_S:
            sign_out()
            state.notice = f"Signed out after {tokens.IDLE_S // 60} minutes without activity; sign in again."
        else:
            state.last_seen = now
            if now - state.cookie_issued > tokens.REFRESH_S:
                state.cookie_due = "set"
    if state.cookie_due == "set" and state.user is not None:
        browser.set_cookie(tokens.issue(state.user["id"], secret, now), tokens.IDLE_S)
        state.cookie_issued = now
    elif state.cookie_due == "clear":
        browser.clear_cookie()
    state.cookie_due = None


def _throttle_keys(name: str) -> list[str]:
    client = st.context.ip_address or "an unknown address"
    return [f"account:{name.lower()}", f"client:{client}"]


def sign_in_form() -> None:
    """The sign-in form; on success the same page runs again, now signed in."""
    if st.session_state.get("notice"):
        st.info(st.session_state["notice"])
    with st.form("sign_in"):
        name = st.text_input("Name", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    name, now = name.strip(), time.time()
    keys, throttle = _throttle_keys(name), services.throttle()
    wait = throttle.wait_s(keys, now)
    if wait > 0:  # the password is not even checked: guessing costs time, not our CPU
        log.warning("sign-in refused (throttled, %.0f s left) for account %r from %s", wait, name, keys[1])
        st.error(f"Too many failed sign-ins. Wait {wait:.0f} s and try again.")
        return
    annotator = services.store().authenticate(name, password)
    if annotator is None:
        failures = throttle.failed(keys, now)
        log.warning("sign-in failed for account %r from %s (%d in a row)", name, keys[1], failures)
        st.error("Wrong name or password.")
        return
    throttle.succeeded(keys)
    sign_in(annotator, now)
    st.rerun()


def user() -> dict[str, Any] | None:
    init()
    return st.session_state["user"]


def is_admin() -> bool:
    current = user()
    return current is not None and current["role"] == "admin"


def require_user() -> dict[str, Any]:
    """The signed-in user; shows the sign-in form (and stops the page) for a visitor who has not signed in."""
    current = user()
    if current is None:
        st.warning("Sign in first.")
        sign_in_form()
        st.stop()
    return current


def require_admin() -> dict[str, Any]:
    """The signed-in admin; stops the page for anyone else."""
    current = require_user()
    if current["role"] != "admin":
        st.error("This page is for admins. Ask an admin if you need what it shows.")
        st.stop()
    return current
