"""Models (admins): registered models and their versions, aliases, lineage (data version, parent versions),
evaluation metrics and figures; two versions side by side (champion vs challenger by default); and the
promotion gate, run from here by an admin."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from alignops import tracking
from alignops.config import ConfigError
from alignops.stages.promote import PromotionError
from dashboard import logic, services, session

session.require_admin()
st.title("Models")

models = services.models()
if not models:
    st.info("No registered models yet. Train one: alignops run --preset tiny")
    st.stop()

by_name = {m.name: m for m in models}
# open on the model that has a champion (the one people compare and promote), else the first
with_champion = [index for index, m in enumerate(models) if "champion" in m.aliases]
name = st.selectbox("Registered model", list(by_name), index=with_champion[0] if with_champion else 0)
model = by_name[name]
versions = {v.uri: v for v in model.versions}
every_version = {v.uri: v for v in services.versions()}
st.text("Aliases: " + (", ".join(f"{a} -> version {v}" for a, v in sorted(model.aliases.items())) or "none"))

LINEAGE = {
    tracking.STAGE_TAG: "stage",
    tracking.PRESET_TAG: "preset",
    tracking.DATA_VERSION_TAG: "data version",
    tracking.PARENT_MODEL_TAG: "parent",
    tracking.REWARD_MODEL_TAG: "reward model",
    tracking.CONFIG_HASH_TAG: "config hash",
    tracking.GIT_COMMIT_TAG: "git commit",
    tracking.HEALTH_TAG: "health",
    tracking.PROMOTION_TAG: "promotion",
}


def evaluation_metrics(version) -> dict[str, float]:
    found = services.evaluation(version)
    return found.metrics if found else {}


table = pd.DataFrame(
    [
        {  # the evaluation's metrics first: what the table is read for
            "version": int(v.version),
            "aliases": ", ".join(v.aliases),
            **{k: value for k, value in evaluation_metrics(v).items() if k.startswith(("eval/", "human/"))},
            "created": pd.Timestamp(v.created_ms, unit="ms", tz="UTC"),
            **{label: v.tags.get(tag, "") for tag, label in LINEAGE.items()},
        }
        for v in model.versions
    ]
)
st.dataframe(table, hide_index=True)

# ---- lineage of one version: the chain of versions it was trained from
st.subheader("Lineage")
chosen = st.selectbox("Version", list(versions), key="lineage_version")
parents = {uri: v.tags.get(tracking.PARENT_MODEL_TAG, "none") for uri, v in every_version.items()}
chain = logic.lineage(chosen, parents)
rows = []
for uri in chain:
    known = every_version.get(uri)  # a parent may be a folder or a deleted version
    tags = known.tags if known else {}
    rows.append(
        {
            "model version": uri,
            "stage": tags.get(tracking.STAGE_TAG, ""),
            "data version": tags.get(tracking.DATA_VERSION_TAG, ""),
            "trained by run": known.run_id if known else "",
        }
    )
st.dataframe(pd.DataFrame(rows), hide_index=True)

# ---- two versions side by side
st.subheader("Side by side")
uris = list(versions)
by_alias = {alias: f"models:/{name}/{version}" for alias, version in model.aliases.items()}
left_default = by_alias.get("champion", uris[min(1, len(uris) - 1)])
others = [uri for uri in uris if uri != left_default]  # newest first
right_default = by_alias.get("challenger", others[0] if others else left_default)
if "challenger" not in by_alias:
    st.info(
        f"{name} has no challenger: the right side shows "
        + ("the newest other version." if others else "the same version (it has only one).")
    )
columns = st.columns(2)
picked = [
    columns[0].selectbox("Left (default: champion)", uris, index=uris.index(left_default), key="left_version"),
    columns[1].selectbox("Right (default: challenger)", uris, index=uris.index(right_default), key="right_version"),
]
evaluations = [services.evaluation(versions[uri]) for uri in picked]
for column, uri, found in zip(columns, picked, evaluations, strict=True):
    version = versions[uri]
    with column:
        st.text(f"{uri}  {', '.join(version.aliases)}")
        st.dataframe(
            pd.DataFrame({"value": {label: version.tags.get(tag, "") for tag, label in LINEAGE.items()}}),
        )
        if found is None:
            st.text(f"Not evaluated yet: alignops evaluate --model {uri}")
            continue
        st.text(f"evaluation run {found.run_id}, against {found.baseline_uri or 'no baseline'}")
        for path in found.figures:  # inline, not under /media, which Streamlit serves without a session
            st.html(logic.inline_image(services.artifact(found.run_id, path), path.rsplit("/", 1)[-1]))
deltas = logic.metric_deltas(*[found.metrics if found else {} for found in evaluations])
if any(row["left"] is not None or row["right"] is not None for row in deltas):
    st.markdown("**Evaluation metrics** (change = right - left)")
    st.dataframe(pd.DataFrame(deltas), hide_index=True)

# ---- the promotion gate (admins; checked again at the action, not only at the top of the page)
st.subheader("Promote")
st.caption(
    "Runs the promotion gate on the version: it becomes challenger, and champion only if its evaluation holds up "
    "against the champion's. The decision and its evidence are logged as a promote run."
)
candidates = [uri for uri in uris if "champion" not in versions[uri].aliases]
if not candidates:
    st.text("Every version is champion; nothing to promote.")
    st.stop()
with st.form("promote"):
    start = candidates.index(right_default) if right_default in candidates else 0
    target = st.selectbox("Version", candidates, index=start)
    preset = st.text_input("Gate settings from preset", placeholder="the preset the version was trained with")
    go = st.form_submit_button("Run the promotion gate")
if go:
    session.require_admin()
    try:
        result = services.promote(target, preset.strip() or versions[target].tags.get(tracking.PRESET_TAG, "small"))
    except (PromotionError, ConfigError, FileNotFoundError) as exc:  # each message says what to do
        st.error(logic.md_escape(str(exc)))
    else:
        (st.success if result.passed else st.warning)("Promoted to champion." if result.passed else "Not promoted.")
        st.dataframe(pd.DataFrame([vars(c) for c in result.checks]), hide_index=True)
        st.text(f"champion before: {result.champion_before}; after: {result.champion_after}; run {result.run_id}")
