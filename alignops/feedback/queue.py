"""What to label next: the samples models wrote become responses to rank and rate, and each annotator is
handed the next prompt (least-ranked first, up to the overlap agreement needs, optionally where the reward model
is least sure) or the next response to rate; plus each annotator's progress counters.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from alignops.config import FeedbackConfig
from alignops.errors import StoreError
from alignops.feedback import db
from alignops.feedback.engine import StoreEngine
from alignops.feedback.rows import (
    RatingTask,
    Response,
    Task,
    checked_id,
    checked_reward,
    checked_text,
    pairs,
    sha256_hex,
)

OVERLAP = FeedbackConfig.model_fields["overlap"].default  # labelers each prompt reaches before new prompts


def uncertainty(rewards: Sequence[float]) -> float | None:
    """How unsure the reward model is about the order of responses it scored `rewards`, from 0 (sure) to 1 (a
    coin flip): the entropy, in bits, of the Bradley-Terry probability sigmoid(r_a - r_b) that a beats b,
    averaged over every pair. Equal scores give 1; scores far apart give almost 0. None for fewer than two."""
    scores = [float(r) for r in rewards]
    if not all(math.isfinite(r) for r in scores):
        raise ValueError(f"reward scores {scores} include a NaN or infinity; every score must be a finite number")
    if len(scores) < 2:
        return None
    pairs = list(itertools.combinations(scores, 2))
    return sum(_pair_entropy(a - b) for a, b in pairs) / len(pairs)


def _pair_entropy(difference: float) -> float:
    """The binary entropy in bits of p = sigmoid(difference), stable for any difference: with d = |difference|
    and q = sigmoid(-d), H = ln(1 + e^-d) + q d nats (no exp of a large number, no log of 0)."""
    d = abs(difference)
    tail = math.exp(-d)
    return (math.log1p(tail) + d * tail / (1 + tail)) / math.log(2)


class TaskQueue(StoreEngine):
    """The store's queue: samples in, tasks out."""

    def import_samples(self, model_uri: str, samples: list[dict]) -> int:
        """Store one model version's samples ({"sample_id", "prompt", "completion", "reward" (optional), ...})
        as responses; prompts are shared across versions by their text. "reward", the reward model's score of
        the completion (None or absent: unscored), is what next_task(prefer_uncertain=True) orders by.
        Idempotent per (model_uri, sample_id): a sample stored before is left as it is, except that a score
        it lacked (stored unscored, or before the store kept scores) is filled in. Returns rows added."""
        model_uri = checked_text(model_uri, "model_uri", 512)
        if not model_uri.strip():
            raise StoreError("model_uri is empty; pass the model version the samples came from (models:/name/3)")
        rows: dict[str, tuple[str, str, float | None]] = {}
        for i, sample in enumerate(samples):
            where = f"samples[{i}] of {model_uri}"
            if not isinstance(sample, dict):
                raise StoreError(f"{where} is a {type(sample).__name__}, not a dict with sample_id/prompt/completion")
            missing = [key for key in ("sample_id", "prompt", "completion") if key not in sample]
            if missing:
                raise StoreError(f"{where} lacks {missing}; each sample needs sample_id, prompt and completion")
            sample_id = sample["sample_id"]
            if isinstance(sample_id, bool) or not isinstance(sample_id, str | int) or not str(sample_id).strip():
                raise StoreError(f"{where}: sample_id {sample_id!r} must be a non-empty string")
            sample_id = checked_text(str(sample_id), f"{where}: sample_id", 256)
            prompt = checked_text(sample["prompt"], f"{where}: prompt", 100_000)
            if not prompt.strip():
                raise StoreError(f"{where}: the prompt is empty; drop the sample or fix the eval set")
            if sample_id in rows:
                raise StoreError(f"{where}: sample_id {sample_id!r} appears twice; sample ids must be unique")
            completion = checked_text(sample["completion"], f"{where}: completion", 100_000)
            rows[sample_id] = (prompt, completion, checked_reward(sample.get("reward"), where))

        def add(session: Session) -> int:
            query = select(db.Response.sample_id, db.Response.id, db.Response.reward)
            have = {
                sid: (rid, reward)
                for sid, rid, reward in session.execute(query.where(db.Response.model_uri == model_uri))
            }
            scored = [
                {"id": have[sid][0], "reward": reward}
                for sid, (_, _, reward) in rows.items()
                if sid in have and have[sid][1] is None and reward is not None
            ]
            if scored:
                session.execute(update(db.Response), scored)  # by primary key
            new = {sid: row for sid, row in rows.items() if sid not in have}
            prompt_ids = self._prompt_ids(session, [prompt for prompt, _, _ in new.values()])
            session.add_all(
                db.Response(
                    prompt_id=prompt_ids[prompt], model_uri=model_uri, sample_id=sid, text=completion, reward=reward
                )
                for sid, (prompt, completion, reward) in new.items()
            )
            return len(new)

        # A concurrent import of the same prompt or sample wins the unique constraint; a retry reads its row.
        return self._write(add, retry_conflicts=True)

    @staticmethod
    def _prompt_ids(session: Session, prompts: list[str]) -> dict[str, int]:
        """Prompt text -> id, created (in the order given) where missing."""
        by_hash = {sha256_hex(p): p for p in prompts}
        found: dict[str, int] = {}
        hashes = list(by_hash)
        for start in range(0, len(hashes), 500):  # bounded IN lists
            chunk = hashes[start : start + 500]
            query = select(db.Prompt.text_sha256, db.Prompt.id).where(db.Prompt.text_sha256.in_(chunk))
            found.update({by_hash[h]: pid for h, pid in session.execute(query)})
        for digest, prompt in by_hash.items():
            if prompt not in found:
                row = db.Prompt(text_sha256=digest, text=prompt)
                session.add(row)
                session.flush()
                found[prompt] = row.id
        return found

    def _candidates(self, session: Session, annotator_id: int) -> list[tuple[int, int]]:
        """(prompt id, current rankings) of prompts with non-blank responses from >= 2 model versions that this
        annotator has not ranked or skipped."""
        done = select(db.Ranking.prompt_id).where(db.Ranking.annotator_id == annotator_id)
        rankings = (
            select(func.count(db.Ranking.id))
            .where(db.Ranking.prompt_id == db.Response.prompt_id, db.Ranking.skipped.is_(False))
            .where(db.Ranking.id.not_in(self._superseded(db.Ranking)))
            .scalar_subquery()
        )
        query = (
            select(db.Response.prompt_id, rankings)
            .where(db.Response.prompt_id.not_in(done), func.trim(db.Response.text) != "")
            .group_by(db.Response.prompt_id)
            .having(func.count(func.distinct(db.Response.model_uri)) >= 2)
        )
        return [(pid, n) for pid, n in session.execute(query)]

    def next_task(
        self,
        annotator_id: int,
        k: int = 4,
        seed: int | None = None,
        priority: dict[int, float] | None = None,
        prefer_uncertain: bool = False,
        overlap: int = OVERLAP,
    ) -> Task | None:
        """The next prompt for this annotator: the least-ranked one they have not ranked or skipped, with up to
        k responses from at least two model versions (distinct, non-blank texts), shuffled. None when done.
        priority: prompt id -> score, higher first among prompts with equally few rankings; prompts it leaves
        out score 0. prefer_uncertain: among equally ranked prompts, those where the reward model is least
        certain come first (uncertainty() of the model versions' scores of their answers; a prompt without two
        scored versions after every scored one); an explicit `priority` of a prompt overrides its uncertainty.
        overlap: a prompt that others ranked fewer than `overlap` times comes before every new (unranked) prompt,
        the most-ranked of those first, so each prompt reaches `overlap` labelers and agreement can be computed."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 2:
            raise StoreError(f"k={k!r}: a ranking compares at least 2 responses; pass k >= 2")
        rng = random.Random(seed)

        def pick(session: Session) -> Task | None:
            self._annotator(session, annotator_id)
            scores = self._uncertainties(session) if prefer_uncertain else {}
            scores.update(priority or {})
            unscored = -1.0 if prefer_uncertain else 0.0  # uncertainty is 0..1: below every scored prompt

            def order(candidate: tuple[int, int]) -> tuple[int, int, float, float]:
                prompt_id, rankings = candidate
                # Prompts short of the overlap that someone started first (closest to it first), then new ones,
                # then the rest by fewest rankings; a random order among equals spreads concurrent labelers.
                started = 0 < rankings < overlap
                first = (0, -rankings) if started else (1, rankings)
                return *first, -scores.get(prompt_id, unscored), rng.random()

            candidates = sorted(self._candidates(session, annotator_id), key=order)
            for prompt_id, _ in candidates:
                query = select(db.Response).where(db.Response.prompt_id == prompt_id).order_by(db.Response.id)
                chosen = self._choose(session.scalars(query).all(), k, rng)
                if chosen:
                    prompt = session.get(db.Prompt, prompt_id)
                    return Task(prompt_id, prompt.text, [Response(r.id, r.text) for r in chosen])
            return None

        return self._read(pick)

    @staticmethod
    def _uncertainties(session: Session) -> dict[int, float]:
        """Prompt id -> uncertainty() of the reward scores of its answers, one score per model version (the mean
        of that version's scored, non-blank responses to it): what a task would compare. Prompts with fewer
        than two scored versions are left out."""
        query = (
            select(db.Response.prompt_id, db.Response.model_uri, func.avg(db.Response.reward))
            .where(db.Response.reward.is_not(None), func.trim(db.Response.text) != "")
            .group_by(db.Response.prompt_id, db.Response.model_uri)
        )
        by_prompt: dict[int, list[float]] = defaultdict(list)
        for prompt_id, _, reward in session.execute(query):
            by_prompt[prompt_id].append(reward)
        found = {prompt_id: uncertainty(rewards) for prompt_id, rewards in by_prompt.items()}
        return {prompt_id: score for prompt_id, score in found.items() if score is not None}

    def has_rewards(self) -> bool:
        """Whether any response carries a reward model score (so prefer_uncertain can order by something)."""
        query = select(db.Response.id).where(db.Response.reward.is_not(None)).limit(1)
        return self._read(lambda s: s.scalar(query) is not None)

    @staticmethod
    def _choose(responses: list[db.Response], k: int, rng: random.Random) -> list[db.Response]:
        """Up to k responses, one model version at a time in turn so as many versions as possible are compared,
        skipping blank and repeated texts; [] unless two versions remain."""
        by_model: dict[str, list[db.Response]] = defaultdict(list)
        for response in responses:
            if response.text.strip():
                by_model[response.model_uri].append(response)
        queues = [rng.sample(group, len(group)) for _, group in sorted(by_model.items())]
        rng.shuffle(queues)
        chosen, texts = [], set()
        while len(chosen) < k and any(queues):
            for queue in queues:
                while queue and len(chosen) < k:
                    response = queue.pop()
                    if response.text not in texts:
                        chosen.append(response)
                        texts.add(response.text)
                        break
        if len({r.model_uri for r in chosen}) < 2:
            return []
        rng.shuffle(chosen)
        return chosen

    def open_tasks(self, annotator_id: int) -> int:
        """How many prompts this annotator can still rank (for a progress counter)."""
        return self.progress(annotator_id)["open_tasks"]

    @staticmethod
    def _open_tasks(session: Session, annotator_id: int) -> int:
        """The number of next_task's candidates, counted in the database (no per-prompt ranking counts)."""
        done = select(db.Ranking.prompt_id).where(db.Ranking.annotator_id == annotator_id)
        prompts = (
            select(db.Response.prompt_id)
            .where(db.Response.prompt_id.not_in(done), func.trim(db.Response.text) != "")
            .group_by(db.Response.prompt_id)
            .having(func.count(func.distinct(db.Response.model_uri)) >= 2)
            .subquery()
        )
        return session.scalar(select(func.count()).select_from(prompts))

    def progress(self, annotator_id: int) -> dict[str, int]:
        """One annotator's progress, for the Rank and Rate pages' counters: {"rankings": current rankings,
        "skipped": current skips, "ratings": current ratings, "open_tasks": prompts still to rank}. Counts in
        the database through the annotator_id indexes, however many labels others have written."""

        def read(session: Session) -> dict[str, int]:
            self._annotator(session, annotator_id)

            def current(table):  # this annotator's rows that no later row of theirs corrects
                corrected = select(table.supersedes).where(
                    table.annotator_id == annotator_id, table.supersedes.is_not(None)
                )
                return (table.annotator_id == annotator_id) & table.id.not_in(corrected)

            query = select(db.Ranking.skipped, func.count()).where(current(db.Ranking)).group_by(db.Ranking.skipped)
            rankings = pairs(session.execute(query))
            ratings = session.scalar(select(func.count()).select_from(db.Rating).where(current(db.Rating)))
            return {
                "rankings": rankings.get(False, 0),
                "skipped": rankings.get(True, 0),
                "ratings": ratings,
                "open_tasks": self._open_tasks(session, annotator_id),
            }

        return self._read(read)

    def remaining_ratings(self, annotator_id: int) -> int:
        """How many non-blank responses this annotator has not rated yet (the Rate page's counter)."""

        def read(session: Session) -> int:
            rated = select(db.Rating.response_id).where(db.Rating.annotator_id == annotator_id)
            query = select(func.count()).where(db.Response.id.not_in(rated), func.trim(db.Response.text) != "")
            return session.scalar(query.select_from(db.Response))

        return self._read(read)

    def next_rating_task(
        self, annotator_id: int, seed: int | None = None, exclude: Sequence[int] = ()
    ) -> RatingTask | None:
        """One response for this annotator to rate, with its prompt: of the non-blank responses they have not
        rated, one with the fewest current ratings (drawn at random among those, `seed` for a fixed draw).
        Ranking a prompt does not take its responses off this list. `exclude`: response ids to leave out (the
        ones skipped in this session). None when they have rated every one."""
        rng = random.Random(seed)
        skipped = [checked_id(i, "exclude") for i in exclude]

        def pick(session: Session) -> RatingTask | None:
            self._annotator(session, annotator_id)
            rated = select(db.Rating.response_id).where(db.Rating.annotator_id == annotator_id)
            current = (
                select(db.Rating.response_id, func.count().label("n"))
                .where(db.Rating.id.not_in(self._superseded(db.Rating)))
                .group_by(db.Rating.response_id)
                .subquery()
            )
            ratings = func.coalesce(current.c.n, 0)
            query = (
                select(db.Response.id, ratings)
                .outerjoin(current, current.c.response_id == db.Response.id)
                .where(db.Response.id.not_in(rated), db.Response.id.not_in(skipped), func.trim(db.Response.text) != "")
                .order_by(db.Response.id)
            )
            todo = session.execute(query).all()
            if not todo:
                return None
            fewest = min(n for _, n in todo)
            response = session.get(db.Response, rng.choice([rid for rid, n in todo if n == fewest]))
            prompt = session.get(db.Prompt, response.prompt_id)
            return RatingTask(prompt.id, prompt.text, Response(response.id, response.text))

        return self._read(pick)

    def response_models(self, response_ids: list[int]) -> dict[int, str]:
        """Response id -> the model version that wrote it (models:/name/3): what a page reveals once the
        annotator has submitted their label. StoreError names any id the store does not have."""
        ids = [checked_id(i, "response id") for i in response_ids]

        def read(session: Session) -> dict[int, str]:
            found: dict[int, str] = {}
            unique = sorted(set(ids))
            for start in range(0, len(unique), 500):  # bounded IN lists
                query = select(db.Response.id, db.Response.model_uri).where(
                    db.Response.id.in_(unique[start : start + 500])
                )
                found.update(pairs(session.execute(query)))
            return found

        found = self._read(read)
        unknown = [i for i in ids if i not in found]
        if unknown:
            raise StoreError(f"there is no response with id(s) {unknown}; pass ids of responses a task showed")
        return {i: found[i] for i in ids}
