"""The alignops dashboard: compare runs and models, look at generations and data versions, rank and rate.

    alignops dashboard [--port 8501]          # or: streamlit run dashboard/app.py

This file is the router: it initialises the session (restoring a sign-in from the browser's cookie, see
session.py), shows only the sign-in form until someone signs in (on the page a deep link asked for), then the
pages their role may see (labelers: Rank, Rate, Labels; admins also Runs, Models, Generations,
Data). Each page checks the role again itself. The first admin account comes from ALIGNOPS_ADMIN_USER /
ALIGNOPS_ADMIN_PASSWORD (environment, or .streamlit/secrets.toml, which git ignores); admins add labelers on
the Labels page. The store is ALIGNOPS_DATABASE_URL (default SQLite under ALIGNOPS_HOME); MLflow is
MLFLOW_TRACKING_URI (default SQLite under ALIGNOPS_HOME). Sessions are signed with ALIGNOPS_SESSION_SECRET
(environment or secrets.toml; without it, a random key per process).
"""

from __future__ import annotations

import streamlit as st

from alignops import settings
from dashboard import logic, services, session

settings.apply_offline_env()
st.set_page_config(page_title="alignops", layout="wide")
# Deploy, Rerun and Clear cache are developer tools: hidden for everyone who opens the dashboard (the
# `alignops dashboard` command passes the same setting; this covers `streamlit run dashboard/app.py`).
st.set_option("client.toolbarMode", "viewer")
session.sync()
problem = services.ensure_admin()


def sign_in() -> None:
    st.title("alignops")
    if problem:
        st.warning(logic.md_escape(problem))
    st.write(
        "Sign in to rank and rate model responses, or, as an admin, to compare runs and models. No account yet? "
        "An admin adds you on the Labels page (or with `alignops users add NAME`)."
    )
    session.sign_in_form()


def labeling(default: bool) -> list:
    return [
        st.Page("pages/rank.py", title="Rank", default=default),
        st.Page("pages/rate.py", title="Rate"),
        st.Page("pages/labels.py", title="Labels"),
    ]


def engineering(default: bool) -> list:
    return [
        st.Page("pages/runs.py", title="Runs", default=default),
        st.Page("pages/models.py", title="Models"),
        st.Page("pages/generations.py", title="Generations"),
        st.Page("pages/data.py", title="Data"),
    ]


user = session.user()
if user is None:
    # Every page is reachable by its URL, so a deep link (/models) shows the sign-in form there (each page
    # asks for it) and, once signed in, that page; the menu stays hidden.
    start = st.Page(sign_in, title="Sign in", url_path="sign-in", default=True)
    st.navigation([start, *labeling(False), *engineering(False)], position="hidden").run()
else:
    admin = user["role"] == "admin"
    pages = {"Engineering": engineering(True), "Labeling": labeling(False)} if admin else {"Labeling": labeling(True)}
    with st.sidebar:
        st.text(f"Signed in as {user['name']} ({user['role']})")
        st.button("Sign out", on_click=session.sign_out)
    st.navigation(pages).run()
