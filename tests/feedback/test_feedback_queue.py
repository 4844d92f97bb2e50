"""The labeling queue on real databases (SQLite and PostgreSQL): a task that went stale (labeled in another tab,
its responses gone) is a StaleTask the pages recover from; each prompt reaches `overlap` labelers before new
prompts; a labeler's recent rankings and their correction; Rate's skip list and remaining count."""

from __future__ import annotations

import pytest

from alignops.feedback.store import StaleTask, Store

A, B = "models:/tiny-policy/1", "models:/tiny-policy/2"
GOOD = {"helpful": 4, "correct": 4, "harmless": 5}


def _ids(task) -> list[int]:
    return [r.id for r in task.responses]


def test_a_task_labeled_in_another_tab_is_stale_on_submit_and_on_skip(store: Store, add_annotators, samples) -> None:
    for uri in (A, B):
        store.import_samples(uri, samples(uri, 3))
    ann = add_annotators(store, ["ann"])["ann"]
    task = store.next_task(ann, seed=0)  # both tabs show this task
    shown = _ids(task)
    store.submit_ranking(ann, task.prompt_id, [[shown[0]], [shown[1]]], "tab-1", shown=shown)
    with pytest.raises(StaleTask, match="already ranked or skipped"):
        store.submit_ranking(ann, task.prompt_id, [[shown[1]], [shown[0]]], "tab-2", shown=shown)
    with pytest.raises(StaleTask, match="already ranked or skipped"):
        store.submit_ranking(ann, task.prompt_id, [], "tab-2-skip", skipped=True, shown=shown)
    assert store.next_task(ann, seed=0).prompt_id != task.prompt_id  # the next one is another prompt
    with pytest.raises(StaleTask, match="are not responses to prompt"):
        store.submit_ranking(ann, task.prompt_id, [], "gone", skipped=True, shown=[999_999])
    rating = store.next_rating_task(ann, seed=0)
    store.submit_rating(ann, rating.response.id, GOOD, "rate-1")
    with pytest.raises(StaleTask, match="already rated"):
        store.submit_rating(ann, rating.response.id, GOOD, "rate-2")


def test_each_prompt_reaches_the_overlap_before_new_prompts(store: Store, add_annotators, samples) -> None:
    for uri in (A, B):
        store.import_samples(uri, samples(uri, 4))
    ids = add_annotators(store, ["ann", "ben", "cat", "dan"])

    def rank(name: str, overlap: int) -> int:
        task = store.next_task(ids[name], overlap=overlap)
        shown = _ids(task)
        store.submit_ranking(ids[name], task.prompt_id, [[shown[0]], [shown[1]]], f"{name}-{task.prompt_id}",
                             shown=shown)  # fmt: skip
        return task.prompt_id

    first = rank("ann", overlap=3)
    assert rank("ben", overlap=3) == first  # ranked once, short of 3: before any new prompt
    assert rank("cat", overlap=3) == first
    second = rank("dan", overlap=3)
    assert second != first  # it reached 3: a new prompt next
    # overlap 1: nobody is sent to a prompt someone else ranked while new ones remain
    fresh = add_annotators(store, ["eve"])["eve"]
    assert store.next_task(fresh, overlap=1).prompt_id not in {first, second}
    # overlap 2 (the default): eve is sent to dan's prompt, ranked once, before the new ones
    assert store.next_task(fresh).prompt_id == second
    # the queue shows a labeler only what they have not labeled
    seen = set()
    while (task := store.next_task(ids["ann"])) is not None:
        assert task.prompt_id not in seen and task.prompt_id != first
        seen.add(task.prompt_id)
        store.submit_ranking(ids["ann"], task.prompt_id, [], f"ann-skip-{task.prompt_id}", skipped=True)
    assert len(seen) == 3


def test_recent_rankings_and_a_correction_that_supersedes(store: Store, add_annotators, samples) -> None:
    for uri in (A, B):
        store.import_samples(uri, samples(uri, 3))
    ann = add_annotators(store, ["ann"])["ann"]
    made = []
    for n in range(3):
        task = store.next_task(ann, seed=n)
        shown = _ids(task)
        made.append(store.submit_ranking(ann, task.prompt_id, [[shown[0]], [shown[1]]], f"t{n}", shown=shown))
    recent = store.recent_rankings(ann, limit=2)
    assert [r.id for r in recent] == made[:0:-1]  # newest first, two of them
    last = recent[0]
    order = [r.id for r in last.task.responses]
    assert last.ranking == [[order[0]], [order[1]]] and not last.skipped
    fixed = store.submit_ranking(ann, last.task.prompt_id, [[order[1]], [order[0]]], "fix", shown=order,
                                 supersedes=last.id)  # fmt: skip
    now = store.recent_rankings(ann)
    assert [r.id for r in now] == [fixed, made[1], made[0]]  # the corrected row is no longer current
    assert now[0].ranking == [[order[1]], [order[0]]]
    with pytest.raises(StaleTask, match="already corrected"):  # the same correction from another tab
        store.submit_ranking(ann, last.task.prompt_id, [[order[0]], [order[1]]], "fix-2", shown=order,
                             supersedes=last.id)  # fmt: skip


def test_rate_skips_and_counts_what_remains(store: Store, add_annotators, samples) -> None:
    for uri in (A, B):
        store.import_samples(uri, samples(uri, 2))
    ann = add_annotators(store, ["ann"])["ann"]
    assert store.remaining_ratings(ann) == 4
    skipped: list[int] = []
    for _ in range(4):
        task = store.next_rating_task(ann, exclude=skipped)
        assert task.response.id not in skipped
        skipped.append(task.response.id)
    assert store.next_rating_task(ann, exclude=skipped) is None
    store.submit_rating(ann, skipped[0], GOOD, "r0")
    assert store.remaining_ratings(ann) == 3  # a skip does not count as done, a rating does


def test_recent_ratings_and_a_correction_that_supersedes(store: Store, add_annotators, samples) -> None:
    for uri in (A, B):
        store.import_samples(uri, samples(uri, 1))
    ann = add_annotators(store, ["ann"])["ann"]
    first = store.next_rating_task(ann, seed=0)
    old = store.submit_rating(ann, first.response.id, GOOD, "r1", comment="fine")
    second = store.next_rating_task(ann, seed=0)
    newer = store.submit_rating(ann, second.response.id, GOOD, "r2")
    recent = store.recent_ratings(ann)
    assert [r.id for r in recent] == [newer, old]  # newest first
    assert recent[1].task == first and recent[1].scores == GOOD and recent[1].comment == "fine"
    fixed = store.submit_rating(ann, first.response.id, {**GOOD, "correct": 1}, "r3", supersedes=old)
    assert [(r.id, r.scores["correct"]) for r in store.recent_ratings(ann)] == [(fixed, 1), (newer, 4)]
