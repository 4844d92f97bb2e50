"""Runs (admins): pipeline and stage runs in a sortable table (a short set of metric columns chosen per stage,
every one behind a toggle), metric curves of several runs overlaid (a metric logged once is a number, not a
one-dot chart), reward against KL for PPO/GRPO runs, and a side-by-side comparison of two or more runs with the
differences of their configs."""

from __future__ import annotations

from datetime import UTC, datetime

import altair as alt
import pandas as pd
import streamlit as st

from alignops import tracking
from dashboard import logic, services, session

session.require_admin()
st.title("Runs")

runs = services.runs()
if not runs:
    st.info("No runs yet. Run the pipeline first: alignops run --preset tiny")
    st.stop()


# Every chart colours runs alike: the whole label in the legend (two runs may share a name; the label adds the
# start time and id) and a palette of 20 distinct colours.
RUN_COLOUR = alt.Color(
    "run:N", scale=alt.Scale(scheme="tableau20"), legend=alt.Legend(orient="bottom", columns=1, labelLimit=0)
)


def label(run) -> str:
    return f"{run.name} · {datetime.fromtimestamp(run.start_ms / 1000, UTC):%Y-%m-%d %H:%M:%S} · {run.run_id[:8]}"


by_id = {run.run_id: run for run in runs}
stages = sorted({run.stage or "(untagged)" for run in runs})
chosen_stages = st.multiselect("Stages", stages, default=stages, help="pipeline: the parent run of a pipeline run")
shown = [run for run in runs if (run.stage or "(untagged)") in chosen_stages]

# One row per run; each metric its own column, so the table sorts by any of them (click a header). By default
# only the stages' key metrics, first: with every metric the useful ones would sit off screen.
every_metric = st.toggle("All metric columns", value=False)
available = sorted(set().union(*(run.metrics.keys() for run in shown))) if shown else []
columns_shown = available if every_metric else logic.metric_columns(sorted({r.stage or "" for r in shown}), available)
table = pd.DataFrame(
    [
        {
            "run": run.name,
            "stage": run.stage,
            **{key: run.metrics.get(key) for key in columns_shown},
            "status": run.status,
            "started": pd.Timestamp(run.start_ms, unit="ms", tz="UTC"),
            "seconds": (run.end_ms - run.start_ms) / 1000 if run.end_ms else None,
            "preset": run.tags.get(tracking.PRESET_TAG, ""),
            "data version": run.tags.get(tracking.DATA_VERSION_TAG, "")[:12],
            "git commit": run.tags.get(tracking.GIT_COMMIT_TAG, "")[:12],
            "parent": by_id[run.parent_run_id].name if run.parent_run_id in by_id else "",
            "run id": run.run_id,
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
numbers: dict[str, dict[str, float]] = {}  # metrics logged once per run: a table, not one-dot charts
for key in metrics:
    histories = {label(by_id[r]): services.metric_history(r, key) for r in selected}
    rows = logic.metric_rows(histories)
    if not rows:
        continue
    if all(len(points) <= 1 for points in histories.values()):
        numbers[key] = {run: points[-1][2] for run, points in histories.items() if points}
        continue
    chart = (
        alt.Chart(pd.DataFrame(rows), title=key)
        .mark_line(point=len(rows) < 60)
        .encode(
            x=alt.X(f"{x_axis}:Q", title=x_axis),
            y=alt.Y("value:Q", title=key, scale=alt.Scale(zero=False)),
            color=RUN_COLOUR,
            tooltip=["run", "step", alt.Tooltip("seconds:Q", format=".1f"), alt.Tooltip("value:Q", format=".4g")],
        )
        .interactive()  # zoom and pan with the mouse; double-click resets
    )
    st.altair_chart(chart, width="stretch")
if numbers:
    st.markdown("**Logged once** (one value per run)")
    st.dataframe(pd.DataFrame(numbers))

# ---- reward against KL: what PPO/GRPO gained for how far it moved from the reference
rl_runs = [r for r in selected if {logic.REWARD, logic.KL} <= by_id[r].metrics.keys()]
if rl_runs:
    trade = logic.trade_off_rows(
        {
            label(by_id[r]): (services.metric_history(r, logic.REWARD), services.metric_history(r, logic.KL))
            for r in rl_runs
        }  # fmt: skip
    )
    if trade:
        st.altair_chart(
            alt.Chart(pd.DataFrame(trade), title="Reward against KL (PPO/GRPO)")
            .mark_line(point=True)
            .encode(
                x=alt.X("kl:Q", title=logic.KL + " (nats)"),
                y=alt.Y("reward:Q", title=logic.REWARD, scale=alt.Scale(zero=False)),
                order="step:Q",
                color=RUN_COLOUR,
                tooltip=["run", "step", alt.Tooltip("kl:Q", format=".4g"), alt.Tooltip("reward:Q", format=".4g")],
            ),
            width="stretch",
        )

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
            "preset": run.tags.get(tracking.PRESET_TAG, ""),
            "data version": run.tags.get(tracking.DATA_VERSION_TAG, ""),
            "config hash": run.tags.get(tracking.CONFIG_HASH_TAG, ""),
            "git commit": run.tags.get(tracking.GIT_COMMIT_TAG, ""),
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
