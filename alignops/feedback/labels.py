"""Who labels and what they submit: annotators (argon2-hashed passwords), rankings and ratings, and corrections.

Labels are never updated or deleted: a correction is a new row whose `supersedes` names the old one, and every
reader skips superseded rows. A submission carries a client token; submitting the same token again (a double
click, a retried request, from any thread or process) returns the first row's id and writes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from alignops.errors import StoreError
from alignops.feedback import auth, db
from alignops.feedback.db import CRITERIA, ROLES
from alignops.feedback.engine import StoreEngine
from alignops.feedback.rows import (
    Annotator,
    RatingTask,
    RecentRanking,
    RecentRating,
    Response,
    Task,
    checked_id,
    checked_text,
    checked_token,
    pairs,
)


class StaleTask(StoreError):
    """The task on a page no longer stands: the annotator labeled it elsewhere (another tab), or its prompt or
    responses are gone. A page drops it with a plain message and loads the next one."""


class Labels(StoreEngine):
    """The store's annotators and the labels they submit."""

    def add_annotator(self, name: str, password: str, role: str = "labeler") -> Annotator:
        """A new labeler or admin; the password is stored as an argon2 hash."""
        if not isinstance(name, str) or not name.strip() or name != name.strip() or len(name) > 64:
            raise StoreError(f"user name {name!r}: use 1-64 characters without leading or trailing spaces")
        if not name.isprintable():
            raise StoreError(f"user name {name!r} contains control characters; use printable characters only")
        if role not in ROLES:
            raise StoreError(f"role {role!r} is not one of {', '.join(ROLES)}; pick one of them")
        problem = auth.password_problem(name, password if isinstance(password, str) else "")
        if problem:
            raise StoreError(f"password for {name!r}: {problem}")
        digest = auth.hash_password(password)  # slow on purpose: outside the transaction

        def add(session: Session) -> Annotator:
            if session.scalar(select(db.Annotator.id).where(db.Annotator.name == name)) is not None:
                raise StoreError(f"an annotator named {name!r} already exists; choose another name")
            row = db.Annotator(name=name, role=role, password_hash=digest)
            session.add(row)
            session.flush()
            return Annotator(row.id, row.name, row.role)

        try:
            return self._write(add)
        except IntegrityError:  # the same name added at the same moment elsewhere
            raise StoreError(f"an annotator named {name!r} already exists; choose another name") from None

    def authenticate(self, name: str, password: str) -> Annotator | None:
        """The annotator when name and password match, else None (the same time either way)."""
        if not isinstance(password, str) or len(password) > auth.MAX_PASSWORD_CHARS:
            return None  # never hash a megabyte
        row = self._read(lambda s: s.scalar(select(db.Annotator).where(db.Annotator.name == name)))
        if row is None:
            auth.verify_password(auth.dummy_hash(), password)
            return None
        if not auth.verify_password(row.password_hash, password):
            return None
        if auth.needs_rehash(row.password_hash):  # hashed under older parameters: upgrade it now we know it

            def rehash(session: Session) -> None:
                session.get(db.Annotator, row.id).password_hash = auth.hash_password(password)

            self._write(rehash)
        return Annotator(row.id, row.name, row.role)

    def annotators(self) -> list[Annotator]:
        """Everyone who can sign in, by name."""
        rows = self._read(lambda s: s.scalars(select(db.Annotator).order_by(db.Annotator.name)).all())
        return [Annotator(r.id, r.name, r.role) for r in rows]

    def annotator(self, annotator_id: int) -> Annotator | None:
        """The annotator with this id (to re-check a signed-in session's role), or None."""
        row = self._read(lambda s: s.get(db.Annotator, checked_id(annotator_id, "annotator_id")))
        return None if row is None else Annotator(row.id, row.name, row.role)

    def _submit(self, table, token: str, annotator_id: int, insert: Callable[[Session], int], what: str) -> int:
        """The idempotent, append-only write shared by rankings and ratings."""

        def existing(session: Session) -> int | None:
            row = session.scalar(select(table).where(table.client_token == token))
            if row is None:
                return None
            if row.annotator_id != annotator_id:
                raise StoreError(
                    f"client_token {token!r} already belongs to another annotator's {what} #{row.id}; generate a "
                    "fresh token (uuid.uuid4().hex) for every new submission"
                )
            return row.id

        def write(session: Session) -> int:
            found = existing(session)
            return found if found is not None else insert(session)

        try:
            return self._write(write)
        except (IntegrityError, StoreError) as exc:
            # A race: the same token submitted at the same moment from elsewhere committed first (then its row is
            # the answer, even where our checks now see that row as "already ranked"); or another submission for
            # the same prompt/response, or a correction of the same row, won a unique index.
            found = self._read(existing)
            if found is not None:
                return found
            if isinstance(exc, StoreError):
                raise
            raise StoreError(
                f"this {what} collides with one written at the same moment by the same annotator (for the same "
                "item, or correcting the same row); reload and submit again"
            ) from None

    def _check_supersedes(self, session: Session, table, old_id: Any, annotator: db.Annotator, what: str):
        old = session.get(table, checked_id(old_id, "supersedes"))
        if old is None:
            raise StoreError(f"supersedes={old_id}: there is no {what} #{old_id} to correct; pass the id it returned")
        if old.annotator_id != annotator.id:
            raise StoreError(
                f"supersedes={old_id}: {what} #{old_id} belongs to annotator #{old.annotator_id}; only its author "
                "can correct it"
            )
        newer = session.scalar(select(table.id).where(table.supersedes == old.id))
        if newer is not None:
            raise StaleTask(
                f"supersedes={old_id}: {what} #{old_id} was already corrected by #{newer}; supersede #{newer} instead"
            )
        return old

    def _current(self, session: Session, table, annotator_id: int, where) -> int | None:
        """The id of this annotator's current (not superseded) row matching `where`, if any."""
        query = select(table.id).where(table.annotator_id == annotator_id, where)
        return session.scalar(query.where(table.id.not_in(self._superseded(table))).limit(1))

    def submit_ranking(
        self,
        annotator_id: int,
        prompt_id: int,
        ranking: list[list[int]],
        client_token: str,
        reason: str = "",
        skipped: bool = False,
        supersedes: int | None = None,
        shown: list[int] | None = None,
    ) -> int:
        """Store one ranking (response ids best first, ties as groups: [[12], [10, 11], [13]]) or a skip
        (skipped=True, ranking=[]); returns its id. `shown`, the response ids the annotator saw (the Task's, in
        its order), makes the store check that the ranking places each of them exactly once. Idempotent on
        client_token; a correction is a new row with supersedes=<old id>."""
        token = checked_token(client_token)
        reason = checked_text(reason, "reason")
        if not isinstance(skipped, bool):
            raise StoreError(f"skipped must be True or False, got {skipped!r}")

        def insert(session: Session) -> int:
            annotator = self._annotator(session, annotator_id)
            prompt = session.get(db.Prompt, checked_id(prompt_id, "prompt_id"))
            if prompt is None:
                raise StaleTask(f"there is no prompt with id {prompt_id}; rank a task from next_task()")
            responses = {
                r.id: r for r in session.scalars(select(db.Response).where(db.Response.prompt_id == prompt.id))
            }
            shown_ids = self._check_shown(shown, responses, prompt.id)
            if skipped:
                if ranking:
                    raise StoreError(f"ranking {ranking!r} with skipped=True: a skip ranks nothing; pass ranking=[]")
                groups: list[list[int]] = []
            else:
                groups = self._check_ranking(ranking, responses, prompt.id, shown_ids)
            if supersedes is not None:
                old = self._check_supersedes(session, db.Ranking, supersedes, annotator, "ranking")
                if old.prompt_id != prompt.id:
                    raise StoreError(
                        f"supersedes={supersedes}: ranking #{old.id} is of prompt {old.prompt_id}, not {prompt.id}; "
                        "a correction re-ranks the same prompt"
                    )
            else:
                current = self._current(session, db.Ranking, annotator.id, db.Ranking.prompt_id == prompt.id)
                if current is not None:
                    raise StaleTask(
                        f"{annotator.name} already ranked or skipped prompt {prompt.id} (ranking #{current}); to "
                        f"change it, submit the new ranking with supersedes={current}"
                    )
            order = shown_ids or sorted(i for group in groups for i in group)
            row = db.Ranking(
                annotator_id=annotator.id, prompt_id=prompt.id, responses=order, ranking=groups, skipped=skipped,
                reason=reason, client_token=token, supersedes=supersedes,
            )  # fmt: skip
            session.add(row)
            session.flush()
            return row.id

        return self._submit(db.Ranking, token, annotator_id, insert, "ranking")

    @staticmethod
    def _check_shown(shown: Any, responses: dict[int, db.Response], prompt_id: int) -> list[int] | None:
        if shown is None:
            return None
        if not isinstance(shown, list) or any(isinstance(i, bool) or not isinstance(i, int) for i in shown):
            raise StoreError(f"shown={shown!r} must be the list of response ids the annotator saw")
        unknown = [i for i in shown if i not in responses]
        if unknown:
            raise StaleTask(f"shown: response(s) {unknown} are not responses to prompt {prompt_id}")
        if len(set(shown)) != len(shown):
            raise StoreError(f"shown={shown} lists a response twice; pass each shown response id once")
        return list(shown)

    @staticmethod
    def _check_ranking(
        ranking: Any, responses: dict[int, db.Response], prompt_id: int, shown: list[int] | None
    ) -> list[list[int]]:
        """The ranking as tie groups, or StoreError naming the offending response ids."""
        if not isinstance(ranking, list) or not ranking:
            raise StoreError(
                f"ranking {ranking!r} is not a ranking: pass response ids best first with ties as groups, e.g. "
                "[[12], [10, 11], [13]] (or skipped=True with ranking=[])"
            )
        groups = []
        for position, item in enumerate(ranking, start=1):
            group = item if isinstance(item, list) else [item]
            if not group or any(isinstance(i, bool) or not isinstance(i, int) for i in group):
                raise StoreError(f"ranking place {position}: {item!r} is not a response id or a non-empty group of ids")
            groups.append(list(group))
        flat = [i for group in groups for i in group]
        repeated = sorted({i for i in flat if flat.count(i) > 1})
        if repeated:
            raise StoreError(
                f"ranking lists response(s) {repeated} more than once; place each response exactly once "
                "(tied responses share one group)"
            )
        unknown = [i for i in flat if i not in responses]
        if unknown:
            raise StoreError(
                f"ranking: response(s) {unknown} are not responses to prompt {prompt_id} (its responses: "
                f"{sorted(responses)}); rank only the responses you were shown"
            )
        if shown is not None:
            missing = [i for i in shown if i not in flat]
            if missing:
                raise StoreError(
                    f"ranking misses shown response(s) {missing}; place every shown response once (ties share a "
                    "group), or skip the task"
                )
            extra = [i for i in flat if i not in shown]
            if extra:
                raise StoreError(f"ranking includes response(s) {extra} that were not shown; rank only {shown}")
        if len(flat) < 2:
            raise StoreError(f"ranking {ranking!r} orders one response; a ranking compares at least 2")
        texts = [responses[i].text for i in flat]
        if any(not t.strip() for t in texts) or len(set(texts)) < len(texts):
            raise StoreError(
                f"ranking of prompt {prompt_id}: some of responses {flat} are blank or identical in text, so the "
                "order says nothing; rank a task from next_task(), which leaves those out"
            )
        return groups

    def submit_rating(
        self,
        annotator_id: int,
        response_id: int,
        scores: dict[str, int],
        client_token: str,
        comment: str = "",
        supersedes: int | None = None,
    ) -> int:
        """Store one rating: 1..5 on each of helpful, correct, harmless, and a comment; returns its id.
        Idempotent on client_token; a correction is a new row with supersedes=<old id>."""
        token = checked_token(client_token)
        comment = checked_text(comment, "comment")
        if not isinstance(scores, dict):
            raise StoreError(
                f"scores must be a dict like {{'helpful': 4, 'correct': 5, 'harmless': 5}}; got {scores!r}"
            )
        unknown = sorted(set(scores) - set(CRITERIA))
        if unknown:
            raise StoreError(f"scores: unknown criteria {unknown}; rate exactly {', '.join(CRITERIA)}")
        missing = [c for c in CRITERIA if c not in scores]
        if missing:
            raise StoreError(f"scores miss {missing}; give each of {', '.join(CRITERIA)} a score from 1 to 5")
        for criterion in CRITERIA:
            value = scores[criterion]
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
                raise StoreError(f"score {criterion}={value!r} is out of range; use a whole number from 1 to 5")

        def insert(session: Session) -> int:
            annotator = self._annotator(session, annotator_id)
            response = session.get(db.Response, checked_id(response_id, "response_id"))
            if response is None:
                raise StaleTask(f"there is no response with id {response_id}; rate a response the page showed")
            if supersedes is not None:
                old = self._check_supersedes(session, db.Rating, supersedes, annotator, "rating")
                if old.response_id != response.id:
                    raise StoreError(
                        f"supersedes={supersedes}: rating #{old.id} is of response {old.response_id}, not "
                        f"{response.id}; a correction re-rates the same response"
                    )
            else:
                current = self._current(session, db.Rating, annotator.id, db.Rating.response_id == response.id)
                if current is not None:
                    raise StaleTask(
                        f"{annotator.name} already rated response {response.id} (rating #{current}); to change it, "
                        f"submit the new scores with supersedes={current}"
                    )
            row = db.Rating(
                annotator_id=annotator.id, response_id=response.id, comment=comment, client_token=token,
                supersedes=supersedes, **{c: scores[c] for c in CRITERIA},
            )  # fmt: skip
            session.add(row)
            session.flush()
            return row.id

        return self._submit(db.Rating, token, annotator_id, insert, "rating")

    def _recent(self, session: Session, table, annotator_id: int, limit: int) -> list:
        """This annotator's current (not superseded) rows of `table`, newest first."""
        self._annotator(session, annotator_id)
        query = select(table).where(table.annotator_id == annotator_id, table.id.not_in(self._superseded(table)))
        return list(session.scalars(query.order_by(table.id.desc()).limit(limit)))

    def recent_rankings(self, annotator_id: int, limit: int = 10) -> list[RecentRanking]:
        """This annotator's current rankings and skips (not yet corrected), newest first: the ones a labeler can
        correct, by submitting again with supersedes=<its id>."""

        def read(session: Session) -> list[RecentRanking]:
            found = []
            for row in self._recent(session, db.Ranking, annotator_id, limit):
                texts = pairs(session.execute(select(db.Response.id, db.Response.text).where(
                    db.Response.id.in_(row.responses))))  # fmt: skip
                task = Task(row.prompt_id, session.get(db.Prompt, row.prompt_id).text,
                            [Response(i, texts[i]) for i in row.responses if i in texts])  # fmt: skip
                found.append(RecentRanking(row.id, task, row.ranking, row.skipped, row.reason))
            return found

        return self._read(read)

    def recent_ratings(self, annotator_id: int, limit: int = 10) -> list[RecentRating]:
        """This annotator's current ratings (not yet corrected), newest first: the ones a labeler can correct,
        by submitting again with supersedes=<its id>."""

        def read(session: Session) -> list[RecentRating]:
            found = []
            for row in self._recent(session, db.Rating, annotator_id, limit):
                response = session.get(db.Response, row.response_id)
                prompt = session.get(db.Prompt, response.prompt_id)
                task = RatingTask(prompt.id, prompt.text, Response(response.id, response.text))
                found.append(RecentRating(row.id, task, {c: getattr(row, c) for c in CRITERIA}, row.comment))
            return found

        return self._read(read)
