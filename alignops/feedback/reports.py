"""What the store reports: current ratings, pairwise judgments per model version, label counts, and the
rankings exported as records of the rankings data contract (the feedback loop's new data).
"""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from alignops.feedback import db
from alignops.feedback.db import CRITERIA
from alignops.feedback.engine import StoreEngine
from alignops.feedback.rows import Judgment, RatingRow, checked_id, pairs

SOURCE = "dashboard"  # the `source` of exported rankings


class Reports(StoreEngine):
    """The store's reads for evaluation, the dashboard and the export."""

    def ratings(self, model_uri: str | None = None) -> list[RatingRow]:
        """Current ratings (corrections applied), optionally of one model version's responses, oldest first."""
        query = (
            select(db.Rating, db.Annotator.name, db.Response.model_uri, db.Response.prompt_id)
            .join(db.Annotator, db.Rating.annotator_id == db.Annotator.id)
            .join(db.Response, db.Rating.response_id == db.Response.id)
            .where(db.Rating.id.not_in(self._superseded(db.Rating)))
            .order_by(db.Rating.id)
        )
        if model_uri is not None:
            query = query.where(db.Response.model_uri == model_uri)
        rows = self._read(lambda s: s.execute(query).all())
        return [
            RatingRow(name, uri, r.response_id, pid, {c: getattr(r, c) for c in CRITERIA}, r.comment, r.id)
            for r, name, uri, pid in rows
        ]

    def _current_rankings(self, session: Session, query=None) -> list[tuple[db.Ranking, str]]:
        """Current (not superseded, not skipped) rankings with their annotator's name, oldest first."""
        query = select(db.Ranking, db.Annotator.name) if query is None else query
        query = (
            query.join(db.Annotator, db.Ranking.annotator_id == db.Annotator.id)
            .where(db.Ranking.skipped.is_(False), db.Ranking.id.not_in(self._superseded(db.Ranking)))
            .order_by(db.Ranking.id)
        )
        return [(r, name) for r, name in session.execute(query)]

    def judgments(self, model_uri: str) -> list[Judgment]:
        """Pairwise outcomes of model_uri's responses against other versions' responses in the same rankings."""

        def read(session: Session) -> list[Judgment]:
            prompts = select(db.Response.prompt_id).where(db.Response.model_uri == model_uri)
            rankings = self._current_rankings(
                session, select(db.Ranking, db.Annotator.name).where(db.Ranking.prompt_id.in_(prompts))
            )
            ids = {i for r, _ in rankings for group in r.ranking for i in group}
            models = pairs(
                session.execute(select(db.Response.id, db.Response.model_uri).where(db.Response.id.in_(ids)))
            )
            out = []
            for row, name in rankings:
                place = {i: p for p, group in enumerate(row.ranking) for i in group}
                mine = [i for i in place if models[i] == model_uri]
                others = [i for i in place if models[i] != model_uri]
                for i in mine:
                    for j in others:
                        outcome = 1.0 if place[i] < place[j] else 0.5 if place[i] == place[j] else 0.0
                        out.append(Judgment(name, row.prompt_id, model_uri, models[j], outcome))
            return out

        return self._read(read)

    def counts(self) -> dict:
        """Current labels per annotator and per model version:
        {"by_annotator": {name: {"rankings", "skipped", "ratings"}},
         "by_model": {uri: {"responses", "rankings", "ratings"}}, "totals": {...}}."""

        def read(session: Session) -> dict:
            by_annotator = {
                name: {"rankings": 0, "skipped": 0, "ratings": 0}
                for name in session.scalars(select(db.Annotator.name).order_by(db.Annotator.name))
            }
            by_model: dict[str, dict[str, int]] = {}
            query = select(db.Response.model_uri, func.count()).group_by(db.Response.model_uri)
            for uri, n in session.execute(query.order_by(db.Response.model_uri)):
                by_model[uri] = {"responses": n, "rankings": 0, "ratings": 0}
            current = db.Ranking.id.not_in(self._superseded(db.Ranking))
            query = (
                select(db.Annotator.name, db.Ranking.skipped, func.count())
                .join(db.Annotator, db.Ranking.annotator_id == db.Annotator.id)
                .where(current)
                .group_by(db.Annotator.name, db.Ranking.skipped)
            )
            for name, skipped, n in session.execute(query):
                by_annotator[name]["skipped" if skipped else "rankings"] = n
            models = pairs(session.execute(select(db.Response.id, db.Response.model_uri)))
            rankings = session.scalars(select(db.Ranking.ranking).where(current, db.Ranking.skipped.is_(False)))
            for ranking in rankings:
                for uri in {models[i] for group in ranking for i in group}:
                    by_model[uri]["rankings"] += 1
            query = (
                select(db.Annotator.name, db.Response.model_uri)
                .select_from(db.Rating)
                .join(db.Annotator, db.Rating.annotator_id == db.Annotator.id)
                .join(db.Response, db.Rating.response_id == db.Response.id)
                .where(db.Rating.id.not_in(self._superseded(db.Rating)))
            )
            for name, uri in session.execute(query):
                by_annotator[name]["ratings"] += 1
                by_model[uri]["ratings"] += 1
            totals = {
                "prompts": session.scalar(select(func.count()).select_from(db.Prompt)),
                "responses": len(models),
                "rankings": sum(a["rankings"] for a in by_annotator.values()),
                "skipped": sum(a["skipped"] for a in by_annotator.values()),
                "ratings": sum(a["ratings"] for a in by_annotator.values()),
            }
            return {"by_annotator": by_annotator, "by_model": by_model, "totals": totals}

        return self._read(read)

    def export_rankings(self, after_id: int = 0) -> tuple[list[dict], int]:
        """Current, non-skipped rankings with id > after_id as records of the rankings data contract, and the
        highest ranking id seen (the next call's after_id). Responses are in the order they were shown; ranking
        holds indices into them, best first, a tie as a nested list and a lone response as a plain int."""
        after_id = checked_id(after_id, "after_id")

        def read(session: Session) -> tuple[list[dict], int]:
            if self.dialect == "postgresql":
                # Ids are drawn when a row is inserted, not when it commits: a slower transaction could commit
                # id 9 after we saw 10 and the watermark would pass it forever. SHARE mode waits for every
                # transaction that has inserted a ranking to finish and holds new ones back while we read, so
                # every id drawn later is higher than any we see. First statement: the snapshot follows the lock.
                session.execute(text("LOCK TABLE rankings IN SHARE MODE"))
            highest = session.scalar(select(func.max(db.Ranking.id)).where(db.Ranking.id > after_id))
            query = select(db.Ranking, db.Annotator.name).where(db.Ranking.id > after_id)
            records = self._records(session, self._current_rankings(session, query))
            return records, highest if highest is not None else after_id

        return self._read(read)

    def shared_rankings(self) -> list[dict]:
        """The current rankings of prompts that two or more annotators ranked, as export_rankings records: what
        inter-annotator agreement is computed from. A plain read, without the export's table lock (a page may
        call it on every render)."""

        def read(session: Session) -> list[dict]:
            current = db.Ranking.skipped.is_(False) & db.Ranking.id.not_in(self._superseded(db.Ranking))
            shared = (
                select(db.Ranking.prompt_id)
                .where(current)
                .group_by(db.Ranking.prompt_id)
                .having(func.count(func.distinct(db.Ranking.annotator_id)) >= 2)
            )
            query = select(db.Ranking, db.Annotator.name).where(db.Ranking.prompt_id.in_(shared))
            return self._records(session, self._current_rankings(session, query))

        return self._read(read)

    @staticmethod
    def _records(session: Session, rankings: list[tuple[db.Ranking, str]]) -> list[dict]:
        """Rankings with their annotators' names as records of the rankings data contract."""
        prompt_ids = {r.prompt_id for r, _ in rankings}
        query = select(db.Prompt.id, db.Prompt.text).where(db.Prompt.id.in_(prompt_ids))
        prompts = pairs(session.execute(query))
        response_ids = {i for r, _ in rankings for i in r.responses}
        query = select(db.Response.id, db.Response.text).where(db.Response.id.in_(response_ids))
        texts = pairs(session.execute(query))
        records = []
        for row, name in rankings:
            index = {rid: n for n, rid in enumerate(row.responses)}
            ranking = [index[group[0]] if len(group) == 1 else sorted(index[i] for i in group) for group in row.ranking]
            records.append(
                {
                    "prompt": prompts[row.prompt_id],
                    "responses": [texts[i] for i in row.responses],
                    "ranking": ranking,
                    "annotator": name,
                    "source": SOURCE,
                    "derived": False,  # a person compared these responses
                    "agreement": None,  # unknown for one labeler's ranking
                }
            )
        return records
