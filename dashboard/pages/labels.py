"""Labels (everyone signed in; actions for admins): how many rankings and ratings each annotator and each model
version has, how well annotators agree, and, for admins only, the export of the rankings (the rankings data
contract, as the feedback flow writes them) and new annotator accounts.

Rendering reads counts and the rankings of prompts two or more annotators ranked (plain reads); the export
itself, which on Postgres locks the rankings table while it reads, runs only when an admin clicks download."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from alignops.evaluation.human import rating_metrics
from alignops.feedback.store import StoreError
from dashboard import logic, services, session

session.require_user()
store = services.store()
st.title("Labels")

counts = store.counts()
totals = counts["totals"]
for column, key in zip(st.columns(5), ("prompts", "responses", "rankings", "skipped", "ratings"), strict=True):
    column.metric(key, totals.get(key, 0))

st.subheader("Per annotator")
st.dataframe(pd.DataFrame.from_dict(counts["by_annotator"], orient="index").rename_axis("annotator"))
st.subheader("Per model version")
if counts["by_model"]:
    st.dataframe(pd.DataFrame.from_dict(counts["by_model"], orient="index").rename_axis("model version"))
else:
    st.text("No responses imported yet.")

st.subheader("Agreement between annotators")
ranked = logic.agreement(store.shared_rankings())
rated = rating_metrics(store.ratings())
left, right = st.columns(2)
left.metric("Rankings: same order of a pair", "-" if ranked.agreement is None else f"{ranked.agreement:.0%}")
left.metric("Rankings: Krippendorff's alpha", "-" if ranked.alpha is None else f"{ranked.alpha:.2f}")
left.caption(f"{ranked.items} prompts ranked by two or more annotators; {ranked.comparisons} pair judgments compared.")
alpha = rated.get("human/rating_alpha")
right.metric("Ratings: Krippendorff's alpha", "-" if alpha is None else f"{alpha:.2f}")
right.caption(f"{int(rated['human/ratings'])} ratings by {int(rated['human/raters'])} annotators.")
if ranked.by_pair:
    st.dataframe(
        pd.DataFrame(
            [
                {"annotator": a, "other": b, "pairs": n, "agreement": share}
                for (a, b), (n, share) in ranked.by_pair.items()
            ]
        ),
        hide_index=True,
    )

# ---- admin actions: refused here, not just hidden, for anyone else
st.subheader("Export")
if not session.is_admin():
    st.text("Exporting labels is for admins.")
else:
    st.download_button(
        f"Download {totals['rankings']} rankings (JSONL)",
        lambda: logic.to_jsonl(store.export_rankings()[0]),  # on click (in its own thread), not on every render
        file_name="rankings-dashboard.jsonl",
        mime="application/jsonl",
    )
    st.caption("The feedback flow exports the same records into data/rankings and trains the next reward model.")

    st.subheader("Labeling queue")
    st.caption(
        "Rank and Rate show the eval samples of the model versions imported here (the evaluate stage saves them). "
        "Importing a version twice adds nothing."
    )
    evaluated = [v for v in services.versions() if services.evaluation(v) and services.evaluation(v).samples_path]
    fresh = [v.uri for v in evaluated if v.uri not in counts["by_model"]]
    with st.form("import_samples"):
        chosen = st.multiselect("Evaluated model versions", [v.uri for v in evaluated], default=fresh)
        if st.form_submit_button("Import their samples"):
            session.require_admin()
            by_uri = {v.uri: v for v in evaluated}
            try:
                added = {uri: store.import_samples(uri, services.samples(by_uri[uri])) for uri in chosen}
            except StoreError as exc:  # a malformed samples.jsonl: the message names the row
                st.error(logic.md_escape(str(exc)))
            else:
                st.success(f"Imported {sum(added.values())} new responses.")
                st.text("\n".join(f"{uri}: {n} new" for uri, n in added.items()))

    st.subheader("Add an annotator")
    with st.form("add_annotator", clear_on_submit=True):
        name = st.text_input("Name")
        password = st.text_input("Initial password (at least 10 characters)", type="password")
        role = st.selectbox("Role", ["labeler", "admin"])
        if st.form_submit_button("Add"):
            session.require_admin()
            try:
                account = store.add_annotator(name.strip(), password, role=role)
            except StoreError as exc:
                st.error(logic.md_escape(str(exc)))  # messages quote what was typed: shown literally
            else:
                st.success("Added.")
                st.text(f"{account.name} ({account.role}) can sign in now.")
