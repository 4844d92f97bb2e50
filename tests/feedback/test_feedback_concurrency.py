"""Many labelers at once: 20 threads x 50 submissions against one Store, on a SQLite file and on Postgres, with
deliberate double submits (the same client token sent twice by one thread, and by two threads at the same
moment, as a retried request served by another worker would be). Nothing may be lost or duplicated.

Prints the throughput; run it alone to see: pytest tests/feedback/test_feedback_concurrency.py -s
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import text

from alignops.feedback.store import Store

THREADS, SUBMISSIONS, PROMPTS = 20, 50, 50
MODELS = ("models:/tiny-policy/1", "models:/tiny-policy/2")
SCORES = {"helpful": 4, "correct": 3, "harmless": 5}


def test_concurrent_labelers_lose_nothing_and_duplicate_nothing(store_url: str, add_annotators, samples) -> None:
    store = Store(store_url)
    for model in MODELS:
        store.import_samples(model, samples(model, PROMPTS))
    ids = add_annotators(store, [f"labeler{t:02d}" for t in range(THREADS)])
    annotators = list(ids.values())
    with store._engine.connect() as connection:
        rows = connection.execute(text("SELECT id, prompt_id, model_uri FROM responses ORDER BY id")).all()
    responses: dict[int, list[int]] = {}
    for rid, pid, _ in rows:
        responses.setdefault(pid, []).append(rid)
    prompts = sorted(responses)

    def submission(annotator: int, j: int) -> tuple[str, str, dict]:
        """Labeler `annotator`'s j-th submission: rank prompt j (even j) or rate a response of it (odd j)."""
        token = f"{annotator}-{j}"
        first, second = responses[prompts[j]]
        if j % 2 == 0:
            ranking = [[first], [second]] if (annotator + j) % 3 else [[first, second]]
            args = dict(prompt_id=prompts[j], ranking=ranking, shown=[first, second])
            return "ranking", token, args
        return "rating", token, dict(response_id=first, scores=SCORES, comment=f"c{annotator}")

    def submit(annotator: int, j: int) -> tuple[str, int]:
        kind, token, args = submission(annotator, j)
        if kind == "ranking":
            return token, store.submit_ranking(annotator, client_token=token, **args)
        return token, store.submit_rating(annotator, client_token=token, **args)

    barrier = threading.Barrier(THREADS)

    def labeler(t: int) -> list[tuple[str, int]]:
        me, neighbour = annotators[t], annotators[(t + 1) % THREADS]
        out = []
        try:
            for j in range(SUBMISSIONS):
                if j % 10 == 0:
                    barrier.wait(timeout=120)  # everyone at once, each also replaying its neighbour's submission j
                    out.append(submit(neighbour, j))
                out.append(submit(me, j))
                if j % 10 == 5:
                    out.append(submit(me, j))  # a double click
        except BaseException:
            barrier.abort()  # the others stop waiting for this thread; its error is the one reported
            raise
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        results = [r for thread in pool.map(labeler, range(THREADS)) for r in thread]
    seconds = time.perf_counter() - start
    unique = THREADS * SUBMISSIONS
    print(
        f"\n{store.dialect}: {len(results)} submits ({unique} unique) by {THREADS} threads in {seconds:.2f} s: "
        f"{len(results) / seconds:.0f} submits/s, {unique / seconds:.0f} unique/s"
    )

    # every token answered with one id, whoever sent it and however often
    by_token: dict[str, set[int]] = {}
    for token, rid in results:
        by_token.setdefault(token, set()).add(rid)
    assert len(by_token) == unique and all(len(v) == 1 for v in by_token.values())

    with store._engine.connect() as connection:
        rankings = connection.execute(text("SELECT id, client_token, annotator_id, prompt_id FROM rankings")).all()
        ratings = connection.execute(text("SELECT id, client_token, annotator_id, comment FROM ratings")).all()
    # zero duplicated: one row per token; zero lost: every token's row is there, with the id its sender got
    assert len(rankings) == len(ratings) == unique // 2
    stored = {token: rid for rid, token, *_ in [*rankings, *ratings]}
    assert stored == {token: sent.pop() for token, sent in by_token.items()}
    for _, token, annotator, prompt_id in rankings:
        assert token == f"{annotator}-{prompts.index(prompt_id)}"  # the row is what its token's sender sent
    for _, token, annotator, comment in ratings:
        assert token.startswith(f"{annotator}-") and comment == f"c{annotator}"
    assert Counter(annotator for _, _, annotator, _ in ratings) == dict.fromkeys(annotators, SUBMISSIONS // 2)
    counts = store.counts()["by_annotator"]
    assert all(c == {"rankings": 25, "skipped": 0, "ratings": 25} for c in counts.values())
    records, _ = store.export_rankings()
    assert len(records) == unique // 2
    store.close()
