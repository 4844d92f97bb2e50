"""Data (admins): the verdict of the latest validation first (Great Expectations, logged by `alignops data
validate`; its report folded), then the dataset versions recorded in data.dvc (its git history) and the
datasheet of each (folded)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import services, session

session.require_admin()
st.title("Data")

st.subheader("Latest validation")
found = services.latest_validation()
if found is None:
    st.info("Data was never validated here: alignops data validate")
else:
    run, report = found
    passed = run.metrics.get("validation/success") == 1.0
    (st.success if passed else st.error)("Passed every suite." if passed else "Validation failed.")
    st.text(
        f"run {run.run_id} · {pd.Timestamp(run.start_ms, unit='ms', tz='UTC'):%Y-%m-%d %H:%M} UTC · "
        f"data version {run.tags.get('alignops.data_version', '?')}"
    )
    with st.expander("Validation report"):  # folded: the verdict above is what is read first
        st.code(report, language=None)

versions = services.data_versions()
if not versions:
    st.info("No data version recorded (no data.dvc here). Build the data: alignops data build")
else:
    st.subheader("Versions")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "data version": v.md5,
                    "files": v.nfiles,
                    "MB": round(v.size / 1e6, 1) if v.size else None,
                    "date": v.date,
                    "commit": (v.commit or "")[:12],
                    "message": v.subject,
                }
                for v in versions
            ]
        ),
        hide_index=True,
    )
    md5 = st.selectbox("Datasheet of version", [v.md5 for v in versions])
    sheet = services.datasheet(md5)
    if sheet is None:
        st.text("No datasheet found for this version (neither in data/ nor logged by its data-build run).")
    else:
        with st.expander("Datasheet", expanded=False), st.container(border=True):
            st.markdown(sheet)  # written by alignops data build from our own tables, not by users
