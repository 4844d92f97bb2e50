"""Runs (admins): pipeline and stage runs in a sortable table, metric curves of several runs overlaid, and
a side-by-side comparison of two or more runs with the differences of their configs."""

from __future__ import annotations

from datetime import UTC, datetime

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import logic, services, session

session.require_admin()
st.title("Runs")

runs = services.runs()
if not runs:
    st.info("No runs yet. Run the pipeline first: alignops run --preset tiny")
    st.stop()


def label(run) -> str:
    return f"{run.name} · {datetime.fromtimestamp(run.start_ms / 1000, UTC):%Y-%m-%d %H:%M:%S} · {run.run_id[:8]}"


by_id = {run.run_id: run for run in runs}
stages = sorted({run.stage or "(untagged)" for run in runs})
chosen_stages = st.multiselect("Stages", stages, default=stages, help="pipeline: the parent run of a pipeline run")
shown = [run for run in runs if (run.stage or "(untagged)") in chosen_stages]

# One row per run; every metric its own column, so the table sorts by any of them (click a header).
table = pd.DataFrame(
    [
        {
            "run": run.name,
            "stage": run.stage,
            "status": run.status,
            "started": pd.Timestamp(run.start_ms, unit="ms", tz="UTC"),
            "seconds": (run.end_ms - run.start_ms) / 1000 if run.end_ms else None,
            "preset": run.tags.get("alignops.preset", ""),
            "data version": run.tags.get("alignops.data_version", "")[:12],
            "git commit": run.tags.get("alignops.git_commit", "")[:12],
            "parent": by_id[run.parent_run_id].name if run.parent_run_id in by_id else "",
            "run id": run.run_id,
            **run.metrics,
        }
        for run in shown
    ]
)
st.dataframe(table, hide_index=True, key="runs_table")

selected = st.multiselect(
    "Runs to plot and compare",
    [run.run_id for run in shown],
    format_func=lambda run_id: label(by_id[run_id]),
    help="Type part of a name to filter; pick two or more to compare them.",
)
if not selected:
    st.caption("Pick runs above to see their metric curves and compare them.")
    st.stop()

# ---- metric curves, several runs overlaid
keys = sorted(set().union(*(by_id[r].metrics.keys() for r in selected)))
default_keys = [k for k in ("train/loss", "val/loss", "ppo/reward", "reward/accuracy") if k in keys][:2] or keys[:1]
metrics = st.multiselect("Metrics", keys, default=default_keys)
x_axis = st.radio("x axis", ["step", "seconds"], horizontal=True, help="seconds since each run's first point")
for key in metrics:
    histories = {label(by_id[r]): services.metric_history(r, key) for r in selected}
    rows = logic.metric_rows(histories)
    if not rows:
        continue
    chart = (
        alt.Chart(pd.DataFrame(rows), title=key)
        .mark_line(point=len(rows) < 60)
        .encode(
            x=alt.X(f"{x_axis}:Q", title=x_axis),
            y=alt.Y("value:Q", title=key, scale=alt.Scale(zero=False)),
            color=alt.Color("run:N", legend=alt.Legend(orient="bottom", columns=1)),
            tooltip=["run", "step", alt.Tooltip("seconds:Q", format=".1f"), alt.Tooltip("value:Q", format=".4g")],
        )
        .interactive()  # zoom and pan with the mouse; double-click resets
    )
    st.altair_chart(chart, width="stretch")

# ---- side by side
if len(selected) < 2:
    st.caption("Pick a second run to compare configs and final metrics side by side.")
    st.stop()
st.subheader("Side by side")
columns = {label(by_id[r]): by_id[r] for r in selected}
summary = pd.DataFrame(
    {
        name: {
            "stage": run.stage,
            "status": run.status,
            "preset": run.tags.get("alignops.preset", ""),
            "data version": run.tags.get("alignops.data_version", ""),
            "config hash": run.tags.get("alignops.config_hash", ""),
            "git commit": run.tags.get("alignops.git_commit", ""),
        }
        for name, run in columns.items()
    }
)
st.dataframe(summary)
final = pd.DataFrame({name: run.metrics for name, run in columns.items()})
st.markdown("**Final metrics**")
st.dataframe(final)
st.markdown("**Config differences**")
diff = logic.config_diff({name: services.run_config(run.run_id) for name, run in columns.items()})
if diff:
    st.dataframe(pd.DataFrame(diff), hide_index=True)
else:
    st.text("The configs are identical.")
