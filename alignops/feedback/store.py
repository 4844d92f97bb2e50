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

Each write is one transaction, retried when the database says it is busy: on SQLite writers take the lock up
front (BEGIN IMMEDIATE, WAL mode, a busy timeout) so they queue instead of failing; on Postgres unique
constraints settle races and serialization failures or deadlocks are retried. Invalid input raises StoreError
(a ValueError) saying what was wrong, where, and how to fix it.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, func, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from alignops import settings
from alignops.config import FeedbackConfig
from alignops.errors import StoreError, store_error
from alignops.feedback import auth, db
from alignops.feedback.db import CRITERIA, ROLES
from alignops.jsonl import write_jsonl  # re-exported: callers import it from here

__all__ = [
    "Annotator",
    "Judgment",
    "RatingRow",
    "RatingTask",
    "RecentRanking",
    "RecentRating",
    "Response",
    "Store",
    "StaleTask",
    "StoreError",
    "Task",
    "database_url",
    "uncertainty",
    "write_jsonl",
]

T = TypeVar("T")

BUSY_TIMEOUT_S = 30  # how long a SQLite writer waits for the lock before "database is locked"
ATTEMPTS = 6  # tries of one write transaction while the database reports it busy or a race
MAX_TEXT_CHARS = 4_000  # reasons and comments
SOURCE = "dashboard"  # the `source` of exported rankings
_TRANSIENT_SQLSTATES = {"40001", "40P01"}  # Postgres: serialization failure, deadlock detected


class StaleTask(StoreError):
    """The task on a page no longer stands: the annotator labeled it elsewhere (another tab), or its prompt or
    responses are gone. A page drops it with a plain message and loads the next one."""


OVERLAP = FeedbackConfig.model_fields["overlap"].default  # labelers each prompt reaches before new prompts


@dataclass(frozen=True)
class Annotator:
    id: int
    name: str
    role: str  # "labeler" or "admin"


@dataclass(frozen=True)
class Response:
    id: int
    text: str


@dataclass(frozen=True)
class Task:
    """One prompt to rank and its responses, shuffled; which model wrote which stays hidden."""

    prompt_id: int
    prompt: str
    responses: list[Response]


@dataclass(frozen=True)
class RatingTask:
    """One response to rate, with the prompt it answers; which model wrote it stays hidden."""

    prompt_id: int
    prompt: str
    response: Response


@dataclass(frozen=True)
class RecentRanking:
    """One of an annotator's current rankings (or skips), newest first: what a correction starts from."""

    id: int
    task: Task  # the prompt and the responses in the order they were shown
    ranking: list[list[int]]  # response ids best first, ties grouped; [] for a skip
    skipped: bool
    reason: str


@dataclass(frozen=True)
class RecentRating:
    """One of an annotator's current ratings, newest first: what a correction starts from."""

    id: int
    task: RatingTask
    scores: dict[str, int]  # criterion -> 1..5
    comment: str


@dataclass(frozen=True)
class RatingRow:
    annotator: str
    model_uri: str
    response_id: int
    prompt_id: int
    scores: dict[str, int]  # criterion -> 1..5
    comment: str = ""
    id: int = 0  # the rating's row id


@dataclass(frozen=True)
class Judgment:
    """One pairwise outcome from a ranking: model_uri's response against other_uri's, on one prompt."""

    annotator: str
    prompt_id: int
    model_uri: str
    other_uri: str
    outcome: float  # 1 win, 0.5 tie, 0 loss (for model_uri)


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


def database_url() -> str:
    """ALIGNOPS_DATABASE_URL when set (e.g. postgresql+psycopg://user@host/db), else SQLite under ALIGNOPS_HOME."""
    return os.environ.get("ALIGNOPS_DATABASE_URL") or f"sqlite:///{settings.home() / 'feedback.db'}"


def _sqlite_engine(url: str) -> Engine:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise StoreError(
            f"{url}: an in-memory SQLite database is private to one connection, so labelers would not share it; "
            "use a file (sqlite:////path/feedback.db) or leave ALIGNOPS_DATABASE_URL unset for the default"
        )
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False}, pool_size=10, max_overflow=20
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        # Let SQLAlchemy's "begin" below start transactions, not the sqlite3 module (which defers BEGIN until
        # the first write and so turns a read-then-write into a lock upgrade that fails without waiting).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them
        cursor.execute("PRAGMA foreign_keys=ON")
        # synchronous stays FULL (the default): a label acknowledged to a labeler survives a power cut too
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        # Writers take the write lock first, so they wait their turn (busy_timeout) instead of failing midway.
        write = connection.get_execution_options().get("write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except Exception:  # the text is not echoed: it may hold a password
        raise StoreError(
            "the database URL is not a URL; e.g. sqlite:////abs/path.db or postgresql+psycopg://..."
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":  # plain postgresql:// means psycopg2 to SQLAlchemy; psycopg 3 is ours
            parsed = parsed.set(drivername="postgresql+psycopg")
        try:
            return create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
        except ImportError as exc:
            raise StoreError(
                f"{exc}: the Postgres driver is missing; pip install 'alignops[server]' (psycopg 3)"
            ) from None
    raise StoreError(
        f"the database URL {parsed.render_as_string(hide_password=True)} is neither SQLite nor Postgres; "
        "use sqlite:///<file> or postgresql+psycopg://user@host/db (ALIGNOPS_DATABASE_URL)"
    )


def _transient(exc: DBAPIError) -> bool:
    """A failure that the same transaction, tried again, can get past."""
    if getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES:
        return True
    message = str(exc.orig).lower()
    return "database is locked" in message or "database is busy" in message


def _mapping(result) -> dict:
    """{first column: second column} of a two-column result (dict(result) would take it for a mapping)."""
    return {key: value for key, value in result}


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _text(value: Any, what: str, limit: int = MAX_TEXT_CHARS) -> str:
    if not isinstance(value, str):
        raise StoreError(f"{what} must be text, got {type(value).__name__}")
    if len(value) > limit:
        raise StoreError(f"{what} has {len(value)} characters; shorten it to at most {limit}")
    return value


def _token(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise StoreError(
            f"client_token {value!r} is not a token: give each submission its own non-empty string of at most "
            "200 characters (uuid.uuid4().hex), and reuse it only when retrying that same submission"
        )
    return value


def _reward(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StoreError(
            f"{where}: reward {value!r} is not a finite number; give the reward model's score of the completion, "
            'or null (or no "reward" key) when it was not scored'
        )
    return float(value)


def _int_id(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StoreError(f"{what} must be an integer id, got {value!r}")
    return value


class Store:
    """The preference database. Thread-safe: one Store may serve many threads (the dashboard keeps one)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or database_url()
        self._engine = _engine(self.url)
        self._writer = self._engine.execution_options(write=True)
        # A read (counts, export) is one snapshot: SQLite's read transactions are; Postgres's default READ
        # COMMITTED gives each statement its own, REPEATABLE READ one for the transaction (reads never conflict).
        self._reader = (
            self._engine.execution_options(isolation_level="REPEATABLE READ")
            if self._engine.dialect.name == "postgresql"
            else self._engine
        )
        self._migrate()

    # ------------------------------------------------------------------------------------------- plumbing

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._engine.dispose()

    @property
    def location(self) -> str:
        """The database URL with any password masked, for messages."""
        return make_url(self.url).render_as_string(hide_password=True)

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self._engine.dialect.name

    def _migrate(self) -> None:
        from alembic.util import CommandError

        def upgrade(session: Session) -> None:
            connection = session.connection()
            if self.dialect == "postgresql":
                # Two processes opening a new database at once: one migrates, the other waits and finds it done.
                connection.execute(text("SELECT pg_advisory_xact_lock(7270117)"))
            db.upgrade(connection)

        try:
            with self._reader.connect() as connection:
                if db.at_head(connection):  # migrate once: a read, so opening never queues behind a writer
                    return
            self._write(upgrade)
        except CommandError as exc:  # e.g. the database is at a revision this code does not know
            self.close()
            raise StoreError(
                f"cannot migrate the preference store at {self.location}: {exc}. A database written by a newer "
                "alignops needs that version (pip install -U alignops); otherwise point ALIGNOPS_DATABASE_URL at "
                "the right database"
            ) from None
        except DBAPIError as exc:
            self.close()
            raise store_error(exc, f"the preference store at {self.location}") from None

    def _write(self, work: Callable[[Session], T], retry_conflicts: bool = False) -> T:
        """Run `work` in one write transaction, committed if it returns; tried again while the database is busy
        (and, with retry_conflicts, after a unique-constraint race that a fresh read resolves)."""
        for attempt in range(ATTEMPTS):
            try:
                with Session(self._writer, expire_on_commit=False) as session, session.begin():
                    return work(session)
            except IntegrityError:
                if not retry_conflicts or attempt == ATTEMPTS - 1:
                    raise
            except DBAPIError as exc:
                if not _transient(exc) or attempt == ATTEMPTS - 1:
                    raise
            time.sleep(random.uniform(0.01, 0.05) * 2**attempt)  # jitter: retried writers do not collide again
        raise AssertionError("unreachable")

    def _read(self, work: Callable[[Session], T]) -> T:
        """Run `work` in one read transaction (one consistent snapshot)."""
        with Session(self._reader, expire_on_commit=False) as session, session.begin():
            return work(session)

    @staticmethod
    def _annotator(session: Session, annotator_id: Any) -> db.Annotator:
        row = session.get(db.Annotator, _int_id(annotator_id, "annotator_id"))
        if row is None:
            raise StoreError(f"there is no annotator with id {annotator_id}; sign in again (or add the user)")
        return row

    # ------------------------------------------------------------------------------------------- identity

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

    # -------------------------------------------------------------------------------------- what to label

    def import_samples(self, model_uri: str, samples: list[dict]) -> int:
        """Store one model version's samples ({"sample_id", "prompt", "completion", "reward" (optional), ...})
        as responses; prompts are shared across versions by their text. "reward", the reward model's score of
        the completion (None or absent: unscored), is what next_task(prefer_uncertain=True) orders by.
        Idempotent per (model_uri, sample_id): a sample stored before is left as it is, except that a score
        it lacked (stored unscored, or before the store kept scores) is filled in. Returns rows added."""
        model_uri = _text(model_uri, "model_uri", 512)
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
            sample_id = _text(str(sample_id), f"{where}: sample_id", 256)
            prompt = _text(sample["prompt"], f"{where}: prompt", 100_000)
            if not prompt.strip():
                raise StoreError(f"{where}: the prompt is empty; drop the sample or fix the eval set")
            if sample_id in rows:
                raise StoreError(f"{where}: sample_id {sample_id!r} appears twice; sample ids must be unique")
            completion = _text(sample["completion"], f"{where}: completion", 100_000)
            rows[sample_id] = (prompt, completion, _reward(sample.get("reward"), where))

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
        by_hash = {_sha256(p): p for p in prompts}
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

    @staticmethod
    def _superseded(table):
        """Ids that a later row of `table` replaces."""
        return select(table.supersedes).where(table.supersedes.is_not(None))

    def annotator(self, annotator_id: int) -> Annotator | None:
        """The annotator with this id (to re-check a signed-in session's role), or None."""
        row = self._read(lambda s: s.get(db.Annotator, _int_id(annotator_id, "annotator_id")))
        return None if row is None else Annotator(row.id, row.name, row.role)

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
            rankings = _mapping(session.execute(query))
            ratings = session.scalar(select(func.count()).select_from(db.Rating).where(current(db.Rating)))
            return {
                "rankings": rankings.get(False, 0),
                "skipped": rankings.get(True, 0),
                "ratings": ratings,
                "open_tasks": self._open_tasks(session, annotator_id),
            }

        return self._read(read)

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
                texts = _mapping(session.execute(select(db.Response.id, db.Response.text).where(
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
        skipped = [_int_id(i, "exclude") for i in exclude]

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
        ids = [_int_id(i, "response id") for i in response_ids]

        def read(session: Session) -> dict[int, str]:
            found: dict[int, str] = {}
            unique = sorted(set(ids))
            for start in range(0, len(unique), 500):  # bounded IN lists
                query = select(db.Response.id, db.Response.model_uri).where(
                    db.Response.id.in_(unique[start : start + 500])
                )
                found.update(_mapping(session.execute(query)))
            return found

        found = self._read(read)
        unknown = [i for i in ids if i not in found]
        if unknown:
            raise StoreError(f"there is no response with id(s) {unknown}; pass ids of responses a task showed")
        return {i: found[i] for i in ids}

    # ----------------------------------------------------------------------------------------- submitting

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
        old = session.get(table, _int_id(old_id, "supersedes"))
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
        token = _token(client_token)
        reason = _text(reason, "reason")
        if not isinstance(skipped, bool):
            raise StoreError(f"skipped must be True or False, got {skipped!r}")

        def insert(session: Session) -> int:
            annotator = self._annotator(session, annotator_id)
            prompt = session.get(db.Prompt, _int_id(prompt_id, "prompt_id"))
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
        token = _token(client_token)
        comment = _text(comment, "comment")
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
            response = session.get(db.Response, _int_id(response_id, "response_id"))
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

    # ------------------------------------------------------------------------------------------- reading

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
            models = _mapping(
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
            models = _mapping(session.execute(select(db.Response.id, db.Response.model_uri)))
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
        after_id = _int_id(after_id, "after_id")

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
        prompts = _mapping(session.execute(query))
        response_ids = {i for r, _ in rankings for i in r.responses}
        query = select(db.Response.id, db.Response.text).where(db.Response.id.in_(response_ids))
        texts = _mapping(session.execute(query))
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
