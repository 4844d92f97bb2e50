"""What every command shares: the Typer apps, the --preset/--set options, loading the config, and the one place
errors meet the user (user_errors). Heavy libraries (torch, mlflow, great_expectations, dvc) are imported inside
commands, so `alignops --help` answers at once.
"""

from __future__ import annotations

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

users_app = typer.Typer(help="Dashboard users: labelers and admins.", no_args_is_help=True)
labels_app = typer.Typer(help="Rankings and ratings collected in the dashboard.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(labels_app, name="labels")

Preset = Annotated[str, typer.Option("--preset", "-p", help="Preset name under configs/ or a YAML path.")]
Overrides = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="Override a field, e.g. --set tokenizer.vocab_size=1024.")
]

PRECISION_HELP = (
    "auto: bf16 autocast where the CPU or GPU has native bf16, else fp32 (alignops.precision); 32-true: fp32; "
    "or another of trainer.precision's values. An int8 model always runs in fp32."
)


def echo(message: str, err: bool = False) -> None:
    typer.echo(message, err=err)


def load(preset: str, overrides: list[str] | None, tracked: bool = True):
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
def user_errors() -> Iterator[None]:
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
        echo(f"{known.heading}{separator}{errors.message(known)}", err=True)
        raise typer.Exit(known.exit_code) from None


@contextmanager
def progress() -> Iterator[Callable[[str], None]]:
    """A spinner with the current step and the time spent so far."""
    from rich.console import Console

    console = Console(stderr=True)
    start = time.perf_counter()
    with console.status("starting") as status:

        def step(message: str) -> None:
            console.log(f"{message} ({time.perf_counter() - start:.0f} s)")
            status.update(message)

        yield step


def print_train(result) -> None:
    if result.run_id is None:  # a non-zero rank of distributed training: rank 0 tracks, registers and reports
        return
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(result.metrics.items()))
    echo(f"registered {result.model_uri}; {metrics}; MLflow run {result.run_id}")
