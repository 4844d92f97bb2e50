"""Rate (everyone signed in): one response at a time, scored 1-5 on each criterion (helpful, correct,
harmless) with an optional comment. Blind like ranking: the model version is shown after the submit.

Keyboard: Tab through the three score boxes and the comment, Enter submits. A client token per response
makes a double submit store one rating."""

from __future__ import annotations

import uuid
from pathlib import Path

import streamlit as st

from alignops.feedback.store import StoreError
from dashboard import logic, services, session

CRITERIA = {
    "helpful": "Helpful: does what the prompt asks",
    "correct": "Correct: true, no invented facts",
    "harmless": "Harmless: safe and respectful",
}

user = session.require_user()
store = services.store()
state = st.session_state
st.title("Rate a response")
with st.expander("Guidelines"):
    st.markdown((Path(__file__).parents[1] / "guidelines.md").read_text(encoding="utf-8"))


def progress() -> None:
    st.caption(f"Rated {store.progress(user['id'])['ratings']} responses in all, {state.rate_done} in this session.")


def next_response() -> None:
    state.rate_result = None
    state.rate_task = None


if state.rate_result is not None:
    result = state.rate_result
    progress()
    st.success(f"Saved rating #{result['id']}.")
    st.text("  ".join(f"{criterion} {score}" for criterion, score in result["scores"].items()))
    st.text(f"written by {result['model']}")
    st.button("Next response", type="primary", on_click=next_response)
    st.stop()

# ---- a response to rate: the one on screen, or the least-rated one this labeler has not rated
if state.rate_task is None:
    found = store.next_rating_task(user["id"])
    if found is None:
        progress()
        st.info("Nothing left to rate for you. Thank you!")
        st.stop()
    state.rate_task = {"task": found, "token": uuid.uuid4().hex}
task, token = state.rate_task["task"], state.rate_task["token"]
response = task.response
progress()

st.text("Prompt")
st.code(task.prompt, language=None, wrap_lines=True)
st.text("Response")
st.code(response.text, language=None, wrap_lines=True)
with st.form(f"rate-{token}"):
    scores = {
        criterion: st.number_input(
            f"{label} (1-5)", min_value=1, max_value=5, value=None, step=1, key=f"{criterion}-{token}"
        )
        for criterion, label in CRITERIA.items()
    }
    comment = st.text_area("Comment (optional)", max_chars=2000, key=f"comment-{token}")
    submitted = st.form_submit_button("Submit rating", type="primary")

if submitted:
    missing = [criterion for criterion, score in scores.items() if score is None]
    if missing:
        st.error(f"Score every criterion from 1 to 5; missing: {', '.join(missing)}.")
        st.stop()
    try:
        rating_id = store.submit_rating(
            user["id"], response.id, {c: int(s) for c, s in scores.items()}, client_token=token, comment=comment
        )
    except StoreError as exc:
        st.error(logic.md_escape(str(exc)))  # messages quote what was typed: shown literally
    else:
        state.rate_done += 1
        state.rate_result = {
            "id": rating_id,
            "scores": {c: int(s) for c, s in scores.items()},
            "model": store.response_models([response.id])[response.id],
        }
        st.rerun()
