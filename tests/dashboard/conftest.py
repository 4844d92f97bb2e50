"""A small project for the dashboard to show, built once per test module in real systems: a git repository with
two data versions in data.dvc, an MLflow store (SQLite) with a pipeline run and its stage runs, registered
model versions with lineage tags, evaluation runs in the evaluate stage's format (metrics, figures,
samples.jsonl), and a preference store (SQLite) with the samples imported and an admin.

Nothing here trains: the dashboard reads records and never loads a model, so the registered versions are one
untrained, very small GPT (real enough for MLflow to serve its input example at registration). Building it takes
about 30 s on 2 busy cores, once per test session (MLflow's first start on a new store and the registrations)."""

from __future__ import annotations

import io
import json
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from alignops import tracking
from alignops.config import load_config
from alignops.evaluation.metrics import JUDGE_WIN_RATE, win_rate_of

APP = Path(__file__).parents[2] / "dashboard" / "app.py"
PASSWORD = "correct horse battery staple"
MD5 = ["0f" * 16 + ".dir", "a1" * 16 + ".dir"]  # two data versions, oldest first
# Text that would become markup if a page rendered it as HTML or Markdown.
HOSTILE = '<script>alert("x")</script> ![img](http://attacker.invalid/p.png) **bold**'
PROMPTS = ["Write a tweet about the sea.", "Review a film you liked.", "写一句关于春天的话。", "Describe a morning."]


@dataclass
class Project:
    home: Path
    repo: Path
    store_url: str
    versions: dict[str, str]  # role -> models:/name/version
    run_ids: dict[str, str]  # stage -> run id
    admin: str = "ada"

    def store(self):
        from alignops.feedback.store import Store

        return Store(self.store_url)

    def account(self, role: str = "labeler") -> str:
        """A fresh annotator (so tests do not share progress); returns the name, password PASSWORD."""
        name = f"{role}-{uuid.uuid4().hex[:8]}"
        with self.store() as store:
            store.add_annotator(name, PASSWORD, role=role)
        return name


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (48, 32), (40, 120, 200)).save(buf, "PNG")
    return buf.getvalue()


def _git_repo(repo: Path) -> None:
    """Two committed data versions: data.dvc and data/datasheet.md changed together, like `alignops data build`."""
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    (repo / "data").mkdir()
    for n, md5 in enumerate(MD5, 1):
        (repo / "data.dvc").write_text(
            f"outs:\n- md5: {md5}\n  size: {n * 1_000_000}\n  nfiles: {10 + n}\n  hash: md5\n  path: data\n",
            encoding="utf-8",
        )
        (repo / "data" / "datasheet.md").write_text(f"# Datasheet\n\nversion {n} of the data\n", encoding="utf-8")
        subprocess.run([*git, "add", "data.dvc"], cwd=repo, check=True)
        subprocess.run([*git, "commit", "-q", "-m", f"data version {n}"], cwd=repo, check=True)


def _untrained_model(folder: Path) -> Path:
    """A model folder as the training stages write it, of a GPT that never saw a gradient."""
    from alignops.artifacts import ModelMeta, save_model
    from alignops.data.tokenizer import train_tokenizer
    from models.gpt import GPT, GPTConfig

    tokenizer = train_tokenizer(PROMPTS * 4, vocab_size=300, min_frequency=1, out_dir=folder.with_name("tokenizer"))
    gpt = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16))
    return save_model(folder, gpt, tokenizer.path, ModelMeta(kind="causal_lm", stage="sft"))


def _register(cfg, stage: str, registered: str, folder: Path, parent: str | None, lr: float) -> tuple[str, str]:
    """A stage run with a loss curve that registers a model version, as the training stages do; its config
    differs from the others' in the stage's learning rate."""
    section = getattr(cfg, stage).model_copy(update={"lr": lr})
    cfg = cfg.model_copy(update={stage: section})
    with tracking.stage_run(stage, cfg, section) as run:
        for step in range(12):
            run.log_metrics({"train/loss": 3.0 / (1 + step * lr * 100), "train/lr": lr}, step=step)
            if stage == "ppo":  # the RL trade-off: reward rises as the policy moves away from the reference
                run.log_metrics({"ppo/reward": step * lr * 100, "ppo/kl": step * lr * 50}, step=step)
        run.log_metrics({"val/loss": 2.0 + lr}, step=11)
        uri, _ = tracking.register_model(folder, f"{cfg.tracking.model_prefix}-{registered}",
                                         tracking.lineage_tags(stage, cfg, section), parent)  # fmt: skip
        return uri, run.run_id


def _evaluate(cfg, uri: str, baseline: str | None, quality: float, style: str) -> str:
    """An evaluate run in the evaluate stage's format, and the version's tags pointing at it: both written by
    the tracking package's evaluation record, as the evaluate stage writes them."""
    with tracking.stage_run("evaluate", cfg) as run:
        run.set_tags(tracking.evaluation_run_tags(uri, "causal_lm", baseline))
        wins = round(40 * (0.5 + quality / 5))  # of 40 judged prompts, no ties: the judge's counts and intervals
        judged = win_rate_of([1] * wins + [0] * (40 - wins)).as_metrics(JUDGE_WIN_RATE)
        run.log_metrics({"eval/ppl": 40.0 - 10 * quality, "eval/f1": 0.4 + quality / 4, "eval/reward": quality,
                         "human/judgments": 0.0} | judged)  # fmt: skip
        # the texts name no model: the Rank page must not give the writer away before the submit
        samples = [
            {"sample_id": f"s{i}", "prompt": prompt, "completion": f"{style} answer {i}: " + "sunny " * (i + 1),
             "model_uri": uri, "reward": quality + i / 10, "judge": 0.1 * i, "length": 3 + i, "eos": True,
             "lang": "zh" if i == 2 else "en", "source": "eval-chat" if i % 2 else "eval-tweets"}
            for i, prompt in enumerate(PROMPTS)
        ]  # fmt: skip
        if baseline:  # the evaluate stage writes the baseline's answer to each prompt beside the model's
            for sample in samples:
                sample.update(baseline_uri=baseline, baseline_completion=f"baseline's answer {sample['sample_id']}",
                              baseline_reward=0.0, baseline_judge=0.0)  # fmt: skip
        samples[0]["completion"] = f"{HOSTILE} ({style})"
        run.log_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples), "samples.jsonl")
        with tempfile.TemporaryDirectory() as tmp:
            figure = Path(tmp) / "response_lengths.png"
            figure.write_bytes(_png())
            run.log_artifact(figure, "figures")
    tracking.mark_evaluated(uri, run.run_id, baseline)
    return run.run_id


def build_project(root: Path) -> Project:
    """Everything above, under root; call with ALIGNOPS_HOME=root/home and the working directory root/repo."""
    from alignops.feedback.store import Store, database_url

    repo, home = root / "repo", root / "home"
    _git_repo(repo)
    cfg = load_config("tiny")
    folder = _untrained_model(root / "model")
    runs: dict[str, str] = {}
    versions: dict[str, str] = {}
    with tracking.pipeline_run(cfg) as parent:
        runs["pipeline"] = parent
        for md5, sheet in zip(MD5, ("version 1 of the data, as logged", "version 2 as logged"), strict=True):
            with tracking.stage_run("data-build", cfg, cfg.data) as run:
                run.set_tags({tracking.DATA_VERSION_TAG: md5})
                run.log_text(f"# Datasheet\n\n{sheet}\n", "datasheet/datasheet.md")
                runs["data-build"] = run.run_id
        with tracking.stage_run("data-validate", cfg, cfg.validation) as run:
            run.log_metrics({"validation/success": 1.0, "validation/failed_expectations": 0})
            run.log_text("all 5 datasets passed their suites (42 expectations)\n", "validation/report.txt")
            runs["data-validate"] = run.run_id
        versions["sft"], runs["sft"] = _register(cfg, "sft", "sft", folder, None, lr=0.001)
        versions["champion"], runs["policy-1"] = _register(cfg, "ppo", "policy", folder, versions["sft"], lr=0.0003)
        versions["challenger"], runs["policy-2"] = _register(cfg, "ppo", "policy", folder, versions["sft"], lr=0.003)
    for role, quality, style in (("sft", 0.1, "plain"), ("champion", 0.5, "warm"), ("challenger", 0.7, "bright")):
        baseline = versions["champion"] if role == "challenger" else versions["sft"] if role == "champion" else None
        runs[f"evaluate-{role}"] = _evaluate(cfg, versions[role], baseline, quality, style)
    tracking.set_alias(versions["champion"], "champion")
    tracking.set_alias(versions["challenger"], "challenger")

    project = Project(home, repo, database_url(), versions, runs)
    with Store(project.store_url) as store:
        store.add_annotator(project.admin, PASSWORD, role="admin")
        for uri in versions.values():
            store.import_samples(uri, tracking_samples(uri))
    return project


def tracking_samples(uri: str) -> list[dict]:
    run_id = tracking.evaluation_of(uri)["run_id"]
    return [json.loads(line) for line in tracking.read_artifact(run_id, "samples.jsonl").decode().splitlines()]


@pytest.fixture(scope="session")
def built_project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The project, built once per test session; the environment is restored right after building."""
    root = tmp_path_factory.mktemp("dashboard")
    with pytest.MonkeyPatch.context() as mp:
        _environment(mp, root / "home")
        return build_project(root)


def _environment(mp: pytest.MonkeyPatch, home: Path) -> None:
    mp.setenv("ALIGNOPS_HOME", str(home))
    for key in ("MLFLOW_TRACKING_URI", "ALIGNOPS_DATABASE_URL", "ALIGNOPS_ADMIN_PASSWORD", "ALIGNOPS_ADMIN_USER"):
        mp.delenv(key, raising=False)


@pytest.fixture(scope="module")
def project(built_project: Project) -> Iterator[Project]:
    """The project with ALIGNOPS_HOME and the working directory pointing at it, for one test module."""
    with pytest.MonkeyPatch.context() as mp:
        _environment(mp, built_project.home)
        mp.chdir(built_project.repo)
        yield built_project
