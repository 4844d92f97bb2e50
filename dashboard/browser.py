"""The few things the dashboard asks of the browser that Streamlit has no call for: keep the session cookie,
and put the keyboard focus on a page's first field (Streamlit returns focus to the top after every rerun).

Each is a tiny script run by st.html(unsafe_allow_javascript=True) in the page itself (no iframe); only
constants and values the dashboard made (a signed token, a widget label of its own) go into a script, never
text from data. A `nonce` makes the element differ from the last run's, so the script runs again."""

from __future__ import annotations

import json

import streamlit as st

COOKIE = "alignops_session"


def _run(script: str) -> None:
    st.html(f"<script>{script}</script>", unsafe_allow_javascript=True, width="content")


def set_cookie(value: str, max_age_s: int) -> None:
    """Store the session token for this site: the next reload or a new tab sends it with the connection."""
    cookie = f"{COOKIE}={value}; Max-Age={int(max_age_s)}; Path=/; SameSite=Strict"
    _run(f"document.cookie = {json.dumps(cookie)};")


def clear_cookie() -> None:
    _run(f"document.cookie = {json.dumps(f'{COOKIE}=; Max-Age=0; Path=/; SameSite=Strict')};")


def focus(label: str, nonce: str) -> None:
    """Focus the input or text area whose aria-label is `label` once it is on screen (retries for 2 s)."""
    selector = json.dumps(f'input[aria-label="{label}"], textarea[aria-label="{label}"]')
    _run(
        f"/* {nonce} */ (function tryFocus(n) {{ const el = document.querySelector({selector}); "
        "if (el) { el.focus(); } else if (n > 0) { setTimeout(() => tryFocus(n - 1), 50); } })(40);"
    )
