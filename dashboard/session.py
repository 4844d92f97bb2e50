"""The one place the dashboard's session state is initialised, and who is signed in.

Every page starts with `session.require_user()` or `session.require_admin()`: the page itself refuses a
visitor who may not see it, whatever the navigation menu shows (a URL typed by hand runs the page too).
"""

from __future__ import annotations

import copy
from typing import Any

import streamlit as st

# Every key the dashboard keeps between reruns, with its value at sign-in.
DEFAULTS: dict[str, Any] = {
    "user": None,  # {"id", "name", "role"} once signed in
    "rank_task": None,  # the ranking task on screen: {"task": Task, "token": client token}
    "rank_result": None,  # after a submit: what to reveal (places and model versions)
    "rank_done": 0,  # rankings submitted in this session
    "rate_task": None,  # the response being rated: {"task": RatingTask, "token": client token}
    "rate_result": None,  # after a submit: the scores and the model version
    "rate_done": 0,  # ratings submitted in this session
}


def init() -> None:
    """Fill in every key that is missing; called by the router and by every page (idempotent)."""
    for key, value in DEFAULTS.items():
        if key not in st.session_state:
            st.session_state[key] = copy.deepcopy(value)


def sign_in(annotator: Any) -> None:
    """Start a fresh session for an authenticated annotator (the store's Annotator)."""
    for key, value in DEFAULTS.items():
        st.session_state[key] = copy.deepcopy(value)
    st.session_state["user"] = {"id": annotator.id, "name": annotator.name, "role": annotator.role}


def sign_out() -> None:
    for key, value in DEFAULTS.items():
        st.session_state[key] = copy.deepcopy(value)


def user() -> dict[str, Any] | None:
    init()
    return st.session_state["user"]


def is_admin() -> bool:
    current = user()
    return current is not None and current["role"] == "admin"


def require_user() -> dict[str, Any]:
    """The signed-in user; stops the page for a visitor who has not signed in."""
    current = user()
    if current is None:
        st.warning("Sign in first.")
        st.stop()
    return current


def require_admin() -> dict[str, Any]:
    """The signed-in admin; stops the page for anyone else."""
    current = require_user()
    if current["role"] != "admin":
        st.error("This page is for admins. Ask an admin if you need what it shows.")
        st.stop()
    return current
