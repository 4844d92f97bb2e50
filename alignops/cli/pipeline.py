"""The commands that chain stages: `alignops run` (the pipeline), `alignops experiment sentiment`, `alignops
feedback`, `alignops schedule`, and the registry's `alignops promote` / `rollback`."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from alignops.cli.common import (
    Overrides,
    Preset,
    app,
    echo,
    experiment_app,
    load,
    user_errors,
)


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
    with user_errors():
        cfg = load(preset, overrides)  # a bad preset fails here, before Prefect starts; the flow's log shows progress
        from flows.pipeline import pipeline, stage_range

        stage_range(start, to)  # before Prefect starts its server
        started = time.perf_counter()
        result = pipeline(preset, overrides or [], start=start, to=to)
    ran, reused = ", ".join(result["ran"]) or "nothing", ", ".join(result["cached"]) or "nothing"
    echo(f"\nran {ran}; reused from cache: {reused}")
    echo(f"finished in {time.perf_counter() - started:.0f} s")
    _print_where_to_look(cfg, result)


@experiment_app.command("sentiment")
def experiment_sentiment(
    preset: Preset = "tiny",
    overrides: Overrides = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="The main method on the first seed alone (no controls, no second method), with experiment.quick's "
            "fields over the experiment section.",
        ),
    ] = False,
) -> None:
    """Ziegler et al.'s sentiment-continuation experiment: RL on the SFT policy against a reward model trained on
    English VADER rankings, with a negated-reward and a shuffled-reward control, judged on held-out prefixes by
    VADER and AFINN against the SFT policy (the experiment section of the config)."""
    with user_errors():
        load(preset, overrides)  # a bad preset fails here, before Prefect starts
        from flows.experiment import sentiment_experiment

        started = time.perf_counter()
        result = sentiment_experiment(preset, overrides or [], quick=quick)
    echo(result["table"])
    echo("targets: all met" if not result["missed"] else "targets missed:\n  " + "\n  ".join(result["missed"]))
    echo(f"finished in {time.perf_counter() - started:.0f} s; MLflow parent run {result['parent_run_id']}")


def _print_where_to_look(cfg, result: dict) -> None:
    from alignops import tracking

    for key in ("data_version", "tokenizer", "base", "ner", "sft", "reward", "policy"):
        if result.get(key):
            echo(f"  {key:<13} {result[key]}")
    if "promoted" in result:
        verdict = "promoted to champion" if result["promoted"] else "kept as challenger (the gate said no)"
        echo(f"  {'promotion':<13} {result.get('policy')} {verdict}; champion: {result['champion']}")
    uri = tracking.tracking_uri()
    echo(f"MLflow: parent run {result['parent_run_id']} in experiment '{cfg.tracking.experiment}'")
    if uri.startswith("sqlite:"):
        echo(f"  see it:     mlflow ui --backend-store-uri {uri}")
    else:
        echo(f"  see it:     {uri}")
    echo("  dashboard:  alignops dashboard")


@app.command("feedback")
def feedback_cmd(preset: Preset = "tiny", overrides: Overrides = None) -> None:
    """Run the feedback loop: new dashboard rankings -> rankings data -> reward model -> PPO -> evaluate ->
    promote. Does nothing when fewer than feedback.min_new_labels rankings are new."""
    with user_errors():
        cfg = load(preset, overrides)
        from flows.feedback import feedback

        result = feedback(preset, overrides or [])
    echo(result["message"])
    if result["retrained"]:
        _print_where_to_look(cfg, result)


@app.command("schedule")
def schedule(
    only: Annotated[list[str] | None, typer.Option("--only", help="Serve only these deployments (by name).")] = None,
) -> None:
    """Serve the deployments of prefect.yaml (the weekly pipeline, the nightly feedback loop) from this process,
    on their schedules, without a Prefect server or worker. Ctrl-C stops."""
    with user_errors():
        from flows.schedule import deployments, serve

        chosen = deployments(only or None)
        for d in chosen:
            echo(f"serving {d.name}: {d.describe}")
        serve(chosen)


# ---- preference store: dashboard users and the labels they submit (alignops/feedback/)
@app.command("promote")
def promote(
    model: Annotated[str, typer.Option(help="The challenger, evaluated first: models:/<name>/<version>.")],
    preset: Preset = "small",
    overrides: Overrides = None,
) -> None:
    """Make a registered version champion if it passes the gate against the current champion (exit 1 if not)."""
    from alignops.stages import promote as stage

    with user_errors():
        result = stage.run(load(preset, overrides), model)
    for check in result.checks:
        echo(f"  {check.status:<8}{check.name:<16}{check.detail}")
    if not result.passed:
        echo(f"not promoted: {model} keeps the challenger alias; the champion stays {result.champion_before}; "
              f"MLflow run {result.run_id}")  # fmt: skip
        raise typer.Exit(1)
    echo(f"promoted: {result.champion_after} is champion (was {result.champion_before}); MLflow run {result.run_id}")


@app.command("rollback")
def rollback(
    name: Annotated[str, typer.Option(help="Registered model, e.g. alignops-policy.")],
    preset: Preset = "small",
    overrides: Overrides = None,
) -> None:
    """Move a registered model's champion alias back to the previous champion."""
    from alignops.stages import promote as stage

    with user_errors():
        result = stage.rollback(load(preset, overrides), name)
    echo(f"rolled back: {result.champion_after} is champion again (was {result.champion_before}); "
          f"MLflow run {result.run_id}")  # fmt: skip
