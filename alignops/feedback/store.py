"""The preference store: who labels, what gets labeled, and the rankings and ratings they submit.

The one adapter to the preference database (SQLite under ALIGNOPS_HOME by default, Postgres by URL):

    store = Store()                                   # database_url(); migrates to the newest schema on open
    alice = store.add_annotator("alice", "a long passphrase", role="labeler")
    store.import_samples("models:/tiny-policy/3", samples)   # evaluation's samples.jsonl rows
    task = store.next_task(alice.id, k=4)             # one prompt, K shuffled responses, model versions hidden
    task = store.next_task(alice.id, prefer_uncertain=True)   # ... where the reward model is least sure first
    store.submit_ranking(alice.id, task.prompt_id, [[r2], [r1, r3], [r4]], client_token=uuid4().hex,
                         shown=[r.id for r in task.responses])
    store.response_models([r.id for r in task.responses])      # after the submit: who wrote what
    rate = store.next_rating_task(alice.id)           # one response to rate, with its prompt
    store.progress(alice.id)                          # {"rankings", "skipped", "ratings", "open_tasks"}
    records, watermark = store.export_rankings(after_id=last_watermark)   # the rankings data contract

Labels are never updated or deleted: a correction is a new row whose `supersedes` names the old one, and every
reader skips superseded rows. A submission carries a client token; submitting the same token again (a double
click, a retried request, from any thread or process) returns the first row's id and writes nothing.

Each write is one transaction, retried while the database is busy. Invalid input raises StoreError (a
ValueError) saying what was wrong, where, and how to fix it.

`Store` is the store's parts together, each a module by job: engine.py (connections, migrations, transactions),
queue.py (samples in, tasks out), labels.py (annotators, rankings, ratings, corrections), reports.py (ratings,
judgments, counts, the rankings export); rows.py holds the values they return.
"""

from __future__ import annotations

from alignops.errors import StoreError
from alignops.feedback.engine import database_url
from alignops.feedback.labels import Labels, StaleTask
from alignops.feedback.queue import OVERLAP, TaskQueue, uncertainty
from alignops.feedback.reports import SOURCE, Reports
from alignops.feedback.rows import (
    Annotator,
    Judgment,
    RatingRow,
    RatingTask,
    RecentRanking,
    RecentRating,
    Response,
    Task,
)
from alignops.jsonl import write_jsonl  # re-exported: callers import it from the store

__all__ = [
    "OVERLAP",
    "SOURCE",
    "Annotator",
    "Judgment",
    "RatingRow",
    "RatingTask",
    "RecentRanking",
    "RecentRating",
    "Response",
    "StaleTask",
    "Store",
    "StoreError",
    "Task",
    "database_url",
    "uncertainty",
    "write_jsonl",
]


class Store(Labels, TaskQueue, Reports):
    """The preference database. Thread-safe: one Store may serve many threads (the dashboard keeps one)."""
