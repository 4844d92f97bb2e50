"""The alignops dashboard: compare runs and models, look at generations and data versions, rank and rate.

    alignops dashboard [--port 8501]          # or: streamlit run dashboard/app.py

This file is the router: it initialises the session, shows only the sign-in page until someone signs in,
then the pages their role may see (labelers: Rank, Rate, Labels; admins also Runs, Models, Generations,
Data). Each page checks the role again itself. The first admin account comes from ALIGNOPS_ADMIN_USER /
ALIGNOPS_ADMIN_PASSWORD (environment, or .streamlit/secrets.toml, which git ignores); admins add labelers on
the Labels page. The store is ALIGNOPS_DATABASE_URL (default SQLite under ALIGNOPS_HOME); MLflow is
MLFLOW_TRACKING_URI (default SQLite under ALIGNOPS_HOME).
"""

from __future__ import annotations

import streamlit as st

from alignops import settings
from dashboard import logic, services, session

settings.apply_offline_env()
st.set_page_config(page_title="alignops", layout="wide")
session.init()
problem = services.ensure_admin()


def sign_in() -> None:
    st.title("alignops")
    if problem:
        st.warning(logic.md_escape(problem))
    st.write(
        "Sign in to rank and rate model responses, or, as an admin, to compare runs and models. No account yet? "
        "An admin adds you on the Labels page (or with `alignops users add NAME`)."
    )
    with st.form("sign_in"):
        name = st.text_input("Name", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        annotator = services.store().authenticate(name.strip(), password)
        if annotator is None:
            st.error("Wrong name or password.")
        else:
            session.sign_in(annotator)
            st.rerun()


user = session.user()
if user is None:
    pages: list | dict = [st.Page(sign_in, title="Sign in", url_path="sign-in")]
else:
    admin = user["role"] == "admin"
    labeling = [
        st.Page("pages/rank.py", title="Rank", default=not admin),
        st.Page("pages/rate.py", title="Rate"),
        st.Page("pages/labels.py", title="Labels"),
    ]
    engineering = [
        st.Page("pages/runs.py", title="Runs", default=admin),
        st.Page("pages/models.py", title="Models"),
        st.Page("pages/generations.py", title="Generations"),
        st.Page("pages/data.py", title="Data"),
    ]
    pages = {"Engineering": engineering, "Labeling": labeling} if admin else {"Labeling": labeling}
    with st.sidebar:
        st.text(f"Signed in as {user['name']} ({user['role']})")
        st.button("Sign out", on_click=session.sign_out)

st.navigation(pages).run()
