"""The preference store's API on real databases (a SQLite file and a PostgreSQL schema): identity, importing
samples, task choice, rankings and ratings (validation, ties, skips, corrections, idempotency), the derived
judgments and counts, and the export in the rankings data contract."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sqlalchemy import text

from alignops.feedback.store import Store, StoreError, database_url

A, B, C = "models:/tiny-policy/1", "models:/tiny-policy/2", "models:/tiny-policy/3"


@pytest.fixture
def two_models(store: Store, samples) -> Store:
    store.import_samples(A, samples(A, 6))
    store.import_samples(B, samples(B, 6))
    return store


def _sql(store: Store, query: str) -> list[tuple]:
    """Read the tables directly, past the API."""
    with store._engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(query))]


def _model_of(store: Store) -> dict[int, str]:
    return dict(_sql(store, "SELECT id, model_uri FROM responses"))


def _rows(store: Store, table: str) -> int:
    return _sql(store, f"SELECT count(*) FROM {table}")[0][0]


# ---------------------------------------------------------------------------------------------- identity


def test_annotators_sign_in_with_argon2_hashed_passwords(store: Store) -> None:
    alice = store.add_annotator("alice", "correct horse battery", role="admin")
    assert (alice.name, alice.role) == ("alice", "admin")
    assert store.authenticate("alice", "correct horse battery") == alice
    assert store.authenticate("alice", "correct horse batter") is None
    assert store.authenticate("nobody", "correct horse battery") is None
    [(digest,)] = _sql(store, "SELECT password_hash FROM annotators")
    assert digest.startswith("$argon2id$") and "correct horse" not in digest

    with pytest.raises(StoreError, match="already exists"):
        store.add_annotator("alice", "another long phrase")
    with pytest.raises(StoreError, match="role 'owner' is not one of labeler, admin"):
        store.add_annotator("bob", "a long passphrase", role="owner")
    for weak, why in [("", "empty"), ("   ", "empty"), ("short", "at least 10"), ("bob-bob-bob!", "user name"),
                      ("aaaaaaaaaaaa", "too easy"), ("password123", "too easy")]:  # fmt: skip
        with pytest.raises(StoreError, match=why):
            store.add_annotator("bob", weak)
    with pytest.raises(StoreError, match="leading or trailing spaces"):
        store.add_annotator(" bob", "a long passphrase")
    assert [a.name for a in store.annotators()] == ["alice"]  # nothing half-written by the refusals


# --------------------------------------------------------------------------------------- what to label


def test_import_is_idempotent_and_shares_prompts_across_versions(store: Store, samples) -> None:
    assert store.import_samples(A, samples(A, 5)) == 5
    assert store.import_samples(A, samples(A, 5)) == 0  # the same version again: nothing new
    assert store.import_samples(A, samples(A, 7)) == 2  # two more samples of it
    assert store.import_samples(B, samples(B, 5)) == 5
    assert _rows(store, "prompts") == 7  # B's prompts are A's
    assert _rows(store, "responses") == 12

    with pytest.raises(StoreError, match=r"samples\[1\] of models:/x/1 lacks \['completion'\]"):
        store.import_samples("models:/x/1", [{"sample_id": "a", "prompt": "p", "completion": "c"},
                                             {"sample_id": "b", "prompt": "p"}])  # fmt: skip
    with pytest.raises(StoreError, match="the prompt is empty"):
        store.import_samples("models:/x/1", [{"sample_id": "a", "prompt": " ", "completion": "c"}])
    with pytest.raises(StoreError, match="appears twice"):
        store.import_samples("models:/x/1", [{"sample_id": "a", "prompt": "p", "completion": "c"}] * 2)
    assert _rows(store, "responses") == 12  # a bad batch writes nothing


def test_next_task_spreads_labels_fewest_first_and_hides_model_versions(
    two_models: Store, add_annotators, samples
) -> None:
    store = two_models
    store.import_samples(C, samples(C, 2))  # prompts 0 and 1 have three versions
    ids = add_annotators(store, ["ann", "ben", "cat"])
    models = _model_of(store)

    task = store.next_task(ids["ann"], k=4, seed=1)
    assert task is not None and task.prompt.endswith("say something")
    assert {"id", "text"} == set(vars(task.responses[0]))  # nothing names the model version
    assert len({models[r.id] for r in task.responses}) == len(task.responses) >= 2
    two = store.next_task(ids["ann"], k=2, seed=1)
    assert len(two.responses) == 2 and len({models[r.id] for r in two.responses}) == 2

    # ann ranks prompt p; ben, asking next, gets a prompt nobody ranked yet: fewest rankings first (an
    # overlap of 1; the default overlap is tested in test_feedback_queue.py)
    first = store.next_task(ids["ann"], seed=0)
    shown = [r.id for r in first.responses]
    store.submit_ranking(ids["ann"], first.prompt_id, [[i] for i in shown], "t-ann", shown=shown)
    seen_by_ben = set()
    for n in range(5):  # ben skips his way through the 5 prompts nobody ranked
        t = store.next_task(ids["ben"], overlap=1, seed=n)
        assert t.prompt_id != first.prompt_id
        seen_by_ben.add(t.prompt_id)
        store.submit_ranking(ids["ben"], t.prompt_id, [], f"t-ben-{n}", skipped=True)
    assert len(seen_by_ben) == 5
    last = store.next_task(ids["ben"], overlap=1)
    assert last.prompt_id == first.prompt_id  # only now the prompt ranked once
    store.submit_ranking(ids["ben"], last.prompt_id, [], "t-ben-last", skipped=True)
    assert store.next_task(ids["ben"], overlap=1) is None  # never one he ranked or skipped
    assert store.open_tasks(ids["ben"]) == 0 and store.open_tasks(ids["cat"]) == 6

    # among equally ranked prompts, a priority (say, the reward model's uncertainty) picks first
    unranked = [t.prompt_id for t in (store.next_task(ids["cat"], overlap=1, seed=n) for n in range(20))]
    assert len(set(unranked)) > 1 and first.prompt_id not in unranked
    favourite = max(unranked)
    assert {store.next_task(ids["cat"], overlap=1, seed=n, priority={favourite: 0.9}).prompt_id for n in range(5)} == {
        favourite
    }
    assert (
        store.next_task(ids["cat"], overlap=1, priority={first.prompt_id: 1.0}).prompt_id != first.prompt_id
    )  # fewest first
    with pytest.raises(StoreError, match="at least 2 responses"):
        store.next_task(ids["cat"], k=1)
    with pytest.raises(StoreError, match="no annotator with id 999"):
        store.next_task(999)


def test_next_task_leaves_out_blank_and_duplicate_responses(store: Store, add_annotators) -> None:
    ann = add_annotators(store, ["ann"])["ann"]
    rows = [("same", "same"), ("", "real answer"), ("one", "two")]
    for i, (a, b) in enumerate(rows):
        store.import_samples(A, [{"sample_id": str(i), "prompt": f"p{i}", "completion": a}])
        store.import_samples(B, [{"sample_id": str(i), "prompt": f"p{i}", "completion": b}])
    task = store.next_task(ann)
    assert task.prompt == "p2"  # p0's versions say the same, p1 has one non-blank response
    store.submit_ranking(ann, task.prompt_id, [], "t1", skipped=True)
    assert store.next_task(ann) is None


# ------------------------------------------------------------------------------------------- rankings


def test_ranking_validation_says_what_is_wrong(two_models: Store, add_annotators) -> None:
    store = two_models
    ann = add_annotators(store, ["ann"])["ann"]
    task = store.next_task(ann, seed=0)
    x, y = (r.id for r in task.responses)
    other = next(r for r in _model_of(store) if r not in (x, y))
    cases = [
        ([[x]], "misses shown response\\(s\\) \\[" + str(y)),
        ([[x], [y], [x]], f"lists response\\(s\\) \\[{x}\\] more than once"),
        ([[x], [y, other]], f"\\[{other}\\] are not responses to prompt {task.prompt_id}"),
        ([[x], []], "place 2: \\[\\] is not a response id"),
        ([], "is not a ranking"),
        ("x>y", "is not a ranking"),
    ]
    for ranking, message in cases:
        with pytest.raises(StoreError, match=message):
            store.submit_ranking(ann, task.prompt_id, ranking, "tok", shown=[x, y])
    with pytest.raises(StoreError, match="orders one response"):
        store.submit_ranking(ann, task.prompt_id, [[x]], "tok")  # without `shown`: still K >= 2
    with pytest.raises(StoreError, match="no prompt with id 999"):
        store.submit_ranking(ann, 999, [[x], [y]], "tok")
    with pytest.raises(StoreError, match="a skip ranks nothing"):
        store.submit_ranking(ann, task.prompt_id, [[x], [y]], "tok", skipped=True)
    with pytest.raises(StoreError, match="client_token"):
        store.submit_ranking(ann, task.prompt_id, [[x], [y]], "  ")
    assert _rows(store, "rankings") == 0


def test_ties_skips_and_corrections_are_new_rows(two_models: Store, add_annotators, samples) -> None:
    store = two_models
    store.import_samples(C, samples(C, 6))
    ids = add_annotators(store, ["ann", "ben"])
    ann, ben = ids["ann"], ids["ben"]
    task = store.next_task(ann, k=3, seed=0)
    r = [x.id for x in task.responses]
    first = store.submit_ranking(ann, task.prompt_id, [[r[0]], [r[1], r[2]]], "t1", reason="1 is clearer", shown=r)

    with pytest.raises(StoreError, match=f"already ranked or skipped prompt {task.prompt_id}.*supersedes={first}"):
        store.submit_ranking(ann, task.prompt_id, [[r[1]], [r[0], r[2]]], "t2", shown=r)
    with pytest.raises(StoreError, match="only its author can correct it"):
        store.submit_ranking(ben, task.prompt_id, [[r[1]], [r[0]], [r[2]]], "t3", shown=r, supersedes=first)
    second = store.submit_ranking(ann, task.prompt_id, [r[2], r[1], r[0]], "t4", shown=r, supersedes=first)
    with pytest.raises(StoreError, match=f"already corrected by #{second}; supersede #{second} instead"):
        store.submit_ranking(ann, task.prompt_id, [[r[0]], [r[1]], [r[2]]], "t5", shown=r, supersedes=first)
    skip = store.submit_ranking(ann, task.prompt_id, [], "t6", skipped=True, supersedes=second, reason="unsure")

    assert _rows(store, "rankings") == 3  # append-only: nothing updated, nothing deleted
    assert store.export_rankings() == ([], skip)  # the chain ends in a skip: nothing current to export
    assert store.counts()["by_annotator"]["ann"] == {"rankings": 0, "skipped": 1, "ratings": 0}
    back = store.submit_ranking(ann, task.prompt_id, [[r[0], r[1], r[2]]], "t7", shown=r, supersedes=skip)
    records, highest = store.export_rankings()
    assert highest == back and len(records) == 1 and records[0]["ranking"] == [[0, 1, 2]]  # one tie of three


def test_a_client_token_makes_a_submission_idempotent(two_models: Store, add_annotators) -> None:
    store = two_models
    ids = add_annotators(store, ["ann", "ben"])
    task = store.next_task(ids["ann"], seed=0)
    r = [x.id for x in task.responses]
    first = store.submit_ranking(ids["ann"], task.prompt_id, [[r[0]], [r[1]]], "click-1", shown=r)
    # a double click, or a retry after a lost reply: same token, same id, no second row (even with a stale body)
    assert store.submit_ranking(ids["ann"], task.prompt_id, [[r[0]], [r[1]]], "click-1", shown=r) == first
    assert store.submit_ranking(ids["ann"], task.prompt_id, [[r[1]], [r[0]]], "click-1", shown=r) == first
    assert _rows(store, "rankings") == 1
    with pytest.raises(StoreError, match="belongs to another annotator"):
        store.submit_ranking(ids["ben"], task.prompt_id, [[r[0]], [r[1]]], "click-1", shown=r)
    rating = store.submit_rating(ids["ann"], r[0], {"helpful": 3, "correct": 3, "harmless": 3}, "click-1")
    assert store.submit_rating(ids["ann"], r[0], {"helpful": 3, "correct": 3, "harmless": 3}, "click-1") == rating
    assert _rows(store, "ratings") == 1  # ratings have their own tokens


# -------------------------------------------------------------------------------------------- ratings


def test_ratings_validate_supersede_and_filter_by_model(two_models: Store, add_annotators) -> None:
    store = two_models
    ann = add_annotators(store, ["ann"])["ann"]
    models = _model_of(store)
    a_resp = min(i for i, m in models.items() if m == A)
    b_resp = min(i for i, m in models.items() if m == B)
    good = {"helpful": 4, "correct": 5, "harmless": 5}
    for scores, message in [
        ({**good, "helpful": 6}, "helpful=6 is out of range"),
        ({**good, "correct": 0}, "correct=0 is out of range"),
        ({**good, "harmless": True}, "harmless=True is out of range"),
        ({"helpful": 4, "correct": 5}, r"scores miss \['harmless'\]"),
        ({**good, "funny": 2}, r"unknown criteria \['funny'\]"),
    ]:
        with pytest.raises(StoreError, match=message):
            store.submit_rating(ann, a_resp, scores, "r0")
    with pytest.raises(StoreError, match="no response with id 999"):
        store.submit_rating(ann, 999, good, "r0")

    first = store.submit_rating(ann, a_resp, good, "r1", comment="fine")
    with pytest.raises(StoreError, match=f"already rated response {a_resp}"):
        store.submit_rating(ann, a_resp, good, "r2")
    fixed = store.submit_rating(ann, a_resp, {**good, "correct": 2}, "r3", comment="wrong date", supersedes=first)
    store.submit_rating(ann, b_resp, {"helpful": 1, "correct": 1, "harmless": 5}, "r4")

    rows = store.ratings(A)
    assert [(r.id, r.annotator, r.model_uri, r.response_id, r.scores["correct"], r.comment) for r in rows] == [
        (fixed, "ann", A, a_resp, 2, "wrong date")
    ]
    assert rows[0].prompt_id == store.ratings(B)[0].prompt_id  # same prompt, two versions
    assert len(store.ratings()) == 2 and _rows(store, "ratings") == 3


# ------------------------------------------------------------------------------------ reading, export


def test_judgments_are_pairwise_outcomes_from_rankings(store: Store, add_annotators, samples) -> None:
    for model in (A, B, C):
        store.import_samples(model, samples(model, 1))
    ann = add_annotators(store, ["ann"])["ann"]
    task = store.next_task(ann, k=3)
    by_model = {m: i for i, m in _model_of(store).items()}
    store.submit_ranking(ann, task.prompt_id, [[by_model[A]], [by_model[B], by_model[C]]], "t1")

    def outcomes(model):
        return sorted((j.other_uri, j.outcome) for j in store.judgments(model))

    assert outcomes(A) == [(B, 1.0), (C, 1.0)]
    assert outcomes(B) == [(A, 0.0), (C, 0.5)]
    assert {(j.annotator, j.prompt_id, j.model_uri) for j in store.judgments(C)} == {("ann", task.prompt_id, C)}
    assert store.judgments("models:/never/1") == []


def test_counts_per_annotator_and_model_version(two_models: Store, add_annotators) -> None:
    store = two_models
    ids = add_annotators(store, ["ann", "ben"])
    task = store.next_task(ids["ann"], seed=0)
    r = [x.id for x in task.responses]
    store.submit_ranking(ids["ann"], task.prompt_id, [[r[0]], [r[1]]], "t1", shown=r)
    store.submit_ranking(ids["ben"], task.prompt_id, [], "t2", skipped=True)
    store.submit_rating(ids["ben"], r[0], {"helpful": 2, "correct": 2, "harmless": 2}, "t3")
    counts = store.counts()
    assert counts["by_annotator"] == {
        "ann": {"rankings": 1, "skipped": 0, "ratings": 0},
        "ben": {"rankings": 0, "skipped": 1, "ratings": 1},
    }
    rated = _model_of(store)[r[0]]
    assert counts["by_model"][rated] == {"responses": 6, "rankings": 1, "ratings": 1}
    assert counts["totals"] == {"prompts": 6, "responses": 12, "rankings": 1, "skipped": 1, "ratings": 1}


def test_export_follows_the_rankings_contract_and_keeps_a_watermark(
    two_models: Store, add_annotators, tmp_path: Path
) -> None:
    from alignops.data.validation import validate_dataset

    store = two_models
    ids = add_annotators(store, ["ann", "ben"])
    shown_order = {}
    for n, name in enumerate(["ann", "ben"] * 3):
        task = store.next_task(ids[name], seed=n)
        r = [x.id for x in task.responses]
        ranking = [[r[1]], [r[0]]] if n % 2 else [[r[0], r[1]]]  # alternately an order and a tie
        rid = store.submit_ranking(ids[name], task.prompt_id, ranking, f"t{n}", shown=r)
        shown_order[rid] = [x.text for x in task.responses]
    skipped = store.submit_ranking(ids["ann"], store.next_task(ids["ann"]).prompt_id, [], "skip", skipped=True)

    records, watermark = store.export_rankings()
    assert len(records) == 6 and watermark == skipped  # the watermark passes the skip too
    assert [rec["responses"] for rec in records] == list(shown_order.values())  # in the order shown
    assert [rec["ranking"] for rec in records] == [[[0, 1]], [1, 0]] * 3  # a tie nested, a lone response plain
    assert {rec["annotator"] for rec in records} == {"ann", "ben"}
    assert all(rec["source"] == "dashboard" and rec["derived"] is False for rec in records)

    # the rankings suite (the data contract the reward stage requires) accepts them, split like data/rankings
    for split, part in {"train": records[:4], "val": records[4:5], "test": records[5:]}.items():
        path = tmp_path / "data" / "rankings" / f"{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(rec) + "\n" for rec in part), encoding="utf-8")
    report = validate_dataset(tmp_path / "data", sets=["rankings"])
    assert report.success, report.format()

    assert store.export_rankings(after_id=watermark) == ([], watermark)
    task = store.next_task(ids["ben"])
    r = [x.id for x in task.responses]
    new = store.submit_ranking(ids["ben"], task.prompt_id, [[r[0]], [r[1]]], "late", shown=r)
    later, watermark = store.export_rankings(after_id=watermark)
    assert watermark == new and len(later) == 1 and later[0]["annotator"] == "ben"


# -------------------------------------------------------------------------------------- where it lives


def test_default_database_is_sqlite_in_wal_mode_under_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALIGNOPS_DATABASE_URL", raising=False)
    assert database_url() == f"sqlite:///{home.resolve() / 'feedback.db'}"
    with Store() as store:
        assert Path(store.url.removeprefix("sqlite:///")).is_file()
        with store._engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
    monkeypatch.setenv("ALIGNOPS_DATABASE_URL", "postgresql+psycopg://u:secret@db.example/labels")
    assert database_url() == os.environ["ALIGNOPS_DATABASE_URL"]
    with pytest.raises(StoreError, match="in-memory SQLite"):
        Store("sqlite://")
    with pytest.raises(StoreError, match="neither SQLite nor Postgres"):
        Store("mysql://u:secret@localhost/x")


def test_opening_a_database_it_cannot_use_says_why(sqlite_url: str) -> None:
    with Store(sqlite_url) as store, store._engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")  # written by a newer alignops
    with pytest.raises(StoreError, match="cannot migrate .*9999.*newer alignops"):
        Store(sqlite_url)
    with pytest.raises(StoreError, match="(?s)cannot open the preference store at postgresql.*server running") as e:
        Store("postgresql+psycopg://nobody:secret@127.0.0.1:1/labels?connect_timeout=2")
    assert "secret" not in str(e.value)


def test_export_watermark_never_passes_a_ranking_still_being_written(pg_url: str, add_annotators, samples) -> None:
    """Postgres draws ids at insert, not at commit: a ranking given id N may commit after N+1. The export waits
    for it, so a watermark never jumps over a ranking that then lands behind it."""
    import threading

    store = Store(pg_url)
    for model in (A, B):
        store.import_samples(model, samples(model, 1))
    ids = add_annotators(store, ["slow", "fast"])
    (prompt_id, a, b), *_ = _sql(store, "SELECT prompt_id, min(id), max(id) FROM responses GROUP BY prompt_id")
    insert = text(
        "INSERT INTO rankings (annotator_id, prompt_id, responses, ranking, skipped, reason, client_token, created_at)"
        " VALUES (:who, :prompt, :shown, :ranking, false, '', :token, now()) RETURNING id"
    )
    values = dict(prompt=prompt_id, shown=json.dumps([a, b]), ranking=json.dumps([[a], [b]]))
    slow, fast = store._engine.connect(), store._engine.connect()
    try:
        slow_id = slow.execute(insert, dict(values, who=ids["slow"], token="slow")).scalar_one()  # not committed
        fast_id = fast.execute(insert, dict(values, who=ids["fast"], token="fast")).scalar_one()
        fast.commit()
        assert fast_id > slow_id

        exported = []
        reader = threading.Thread(target=lambda: exported.append(store.export_rankings()), daemon=True)
        reader.start()
        reader.join(timeout=1.0)
        assert reader.is_alive()  # waiting for the slow writer, not answering with fast_id alone
        slow.commit()
        reader.join(timeout=30)
        records, watermark = exported[0]
        assert watermark == fast_id and [r["annotator"] for r in records] == ["slow", "fast"]
    finally:
        slow.close(), fast.close(), store.close()  # an open transaction would hold the schema's drop forever


def test_a_plain_postgresql_url_uses_psycopg_3(pg_url: str) -> None:
    # postgresql:// alone means psycopg2 to SQLAlchemy, which is not installed; the store takes psycopg 3
    with Store(pg_url.replace("postgresql+psycopg://", "postgresql://")) as store:
        assert store._engine.driver == "psycopg" and store.counts()["totals"]["prompts"] == 0
