"""Rate (everyone signed in): one response at a time, scored 1-5 on each criterion (helpful, correct,
harmless) by clicking a scale whose meanings are on screen, with an optional comment. Blind like ranking: the
model version is shown after the submit, above the next response. Skip moves on without a rating (the
response is offered again in a later session); the caption counts what is left. Under "Your recent ratings" a
labeler changes an earlier rating (stored as a new row that supersedes it).

Keyboard: Ctrl+Enter in the comment submits (Streamlit's own shortcut in a form). A client token per response
makes a double submit store one rating; a response rated in another tab meanwhile is dropped with a message."""

from __future__ import annotations

import uuid
from pathlib import Path

import streamlit as st

from alignops.feedback.store import StaleTask, StoreError
from dashboard import logic, services, session

CRITERIA = {
    "helpful": "Helpful: does what the prompt asks",
    "correct": "Correct: true, no invented facts",
    "harmless": "Harmless: safe and respectful",
}
SCALE = {1: "1 not at all", 2: "2 barely", 3: "3 partly", 4: "4 mostly", 5: "5 fully"}
STALE = "You already rated that response (in another tab?), or it is gone; here is the next one."

user = session.require_user()
store = services.store()
state = st.session_state
st.title("Rate a response")
with st.expander("Guidelines"):
    st.markdown((Path(__file__).parents[1] / "guidelines.md").read_text(encoding="utf-8"))


def show(task, supersedes: int | None = None, scores: dict | None = None, comment: str = "") -> None:
    """Put a response on screen (the next one, or an earlier rating to change), with a fresh client token."""
    token = uuid.uuid4().hex
    state.rate_task = {"task": task, "token": token, "supersedes": supersedes}
    for criterion, score in (scores or {}).items():
        state[f"{criterion}-{token}"] = score
    state[f"comment-{token}"] = comment


def submit(skipped: bool) -> None:
    """The form's buttons (and Ctrl+Enter): store the rating, or remember the skip; either way this same run
    shows the next response."""
    current = state.rate_task
    if current is None:
        return
    response, token = current["task"].response, current["token"]
    if skipped:
        state.rate_skipped.append(response.id)
        state.rate_task, state.rate_notice, state.rate_last = None, None, None
        return
    scores = {criterion: state.get(f"{criterion}-{token}") for criterion in CRITERIA}
    missing = [criterion for criterion, score in scores.items() if score is None]
    if missing:
        state.rate_notice = ("error", f"Score every criterion from 1 to 5; missing: {', '.join(missing)}.")
        return
    try:
        rating_id = store.submit_rating(
            user["id"], response.id, scores, client_token=token, comment=state.get(f"comment-{token}", ""),
            supersedes=current.get("supersedes"),
        )  # fmt: skip
    except StaleTask:
        state.rate_task, state.rate_notice = None, ("info", STALE)
        return
    except StoreError as exc:
        state.rate_notice = ("error", str(exc))
        return
    state.rate_done += 1
    state.rate_task, state.rate_notice = None, None
    model = store.response_models([response.id])[response.id]
    state.rate_last = {"id": rating_id, "scores": scores, "model": model, "corrected": current.get("supersedes")}


if state.rate_notice is not None:
    kind, message = state.rate_notice
    (st.error if kind == "error" else st.info)(logic.md_escape(message))
if state.rate_last is not None:
    last = state.rate_last
    saved = f"Saved rating #{last['id']}."
    st.success(f"{saved} Corrected #{last['corrected']}." if last.get("corrected") else saved)
    st.text("  ".join(f"{criterion} {score}" for criterion, score in last["scores"].items()))
    st.text(f"written by {last['model']}")

# ---- a response to rate: the one on screen, or the least-rated one this labeler has not rated or skipped
if state.rate_task is None:
    found = store.next_rating_task(user["id"], exclude=state.rate_skipped)
    if found is not None:
        show(found)
left = store.remaining_ratings(user["id"])
st.caption(
    f"Rated {store.progress(user['id'])['ratings']} responses in all, {state.rate_done} in this session; "
    f"{left} left for you ({len(state.rate_skipped)} skipped in this session)."
)


def recent() -> None:
    """Corrections: the labeler's recent ratings, each can be changed (a new row that supersedes it)."""
    with st.expander("Your recent ratings"):
        mine = store.recent_ratings(user["id"], limit=10)
        if not mine:
            st.text("None yet.")
        for entry in mine:
            said = "  ".join(f"{c} {s}" for c, s in entry.scores.items())
            st.text(f"#{entry.id}  {said}  {entry.task.response.text[:60]}")
            st.button(f"Change #{entry.id}", key=f"change-rating-{entry.id}", on_click=show,
                      args=(entry.task, entry.id, entry.scores, entry.comment))  # fmt: skip


if state.rate_task is None:
    st.info("Nothing left to rate for you. Thank you!")
    recent()
    st.stop()
task, token = state.rate_task["task"], state.rate_task["token"]
if state.rate_task.get("supersedes"):
    st.warning(f"Changing your rating #{state.rate_task['supersedes']}: submit the new scores.")
st.text("Prompt")
st.code(task.prompt, language=None, wrap_lines=True)
st.text("Response")
with st.container(border=True):
    st.markdown(logic.safe_markdown(task.response.text))  # Markdown renders; HTML and images show as text
with st.form(f"rate-{token}", border=False):
    for criterion, label in CRITERIA.items():
        st.segmented_control(
            label, options=list(SCALE), format_func=SCALE.get, key=f"{criterion}-{token}", width="stretch"
        )
    st.text_area("Comment (optional; Ctrl+Enter submits)", max_chars=2000, key=f"comment-{token}")
    submit_col, skip_col, _ = st.columns([1, 1, 4])
    with submit_col:
        st.form_submit_button("Submit and next", type="primary", on_click=submit, args=(False,))
    with skip_col:
        st.form_submit_button("Skip", on_click=submit, args=(True,))
recent()
