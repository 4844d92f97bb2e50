"""`alignops data ...`, `alignops tokenizer train` and `alignops config show`: the datasets, the tokenizer, the
typed configs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alignops.cli.common import (
    Overrides,
    Preset,
    config_app,
    data_app,
    echo,
    load,
    progress,
    tokenizer_app,
    user_errors,
)


def _print_build(result) -> None:
    echo(f"data version {result.data_version} (data.dvc) built in {result.seconds:.0f} s; MLflow run {result.run_id}")
    for name, splits in result.counts.items():
        echo(f"  {name:<15} " + "  ".join(f"{s}={n}" for s, n in splits.items()))


@data_app.command("build")
def data_build(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Fetch the pinned source packages, clean, deduplicate, split, write data/, record the version in data.dvc."""
    from alignops.stages import data

    with user_errors(), progress() as step:
        result = data.build(load(preset, overrides), progress=step)
    _print_build(result)


@data_app.command("validate")
def data_validate(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Run the Great Expectations suite of every dataset; exit 1 with a report when one fails."""
    from alignops.stages import data

    with user_errors():
        result = data.validate(load(preset, overrides))
    echo(f"all datasets passed their suites; data docs: {result.docs_index}; MLflow run {result.run_id}")


@data_app.command("status")
def data_status(remote: Annotated[bool, typer.Option(help="Also check the DVC remote.")] = False) -> None:
    """Does data/ match the version in data.dvc (and the remote)?"""
    from alignops.data import versioning

    with user_errors():
        status = versioning.status(check_remote=remote)
    echo(f"version  {status.version}\nstatus   {status.details}")
    if status.in_remote is not None:
        echo(f"remote   {'has this version' if status.in_remote else 'does not have this version: alignops data push'}")
    if not status.workspace_matches:
        raise typer.Exit(1)


@data_app.command("push")
def data_push() -> None:
    """Upload the current data version to the DVC remote (ALIGNOPS_DVC_REMOTE, default a folder in home)."""
    from alignops.data import versioning

    with user_errors():
        versioning.push()
    echo(f"pushed {versioning.data_version()} to {versioning.remote_url()}")


@data_app.command("pull")
def data_pull() -> None:
    """Fetch the data version recorded in data.dvc from the DVC remote."""
    from alignops.data import versioning

    with user_errors():
        versioning.pull()
    echo(f"pulled {versioning.data_version()} from {versioning.remote_url()}")


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

    from alignops.data import imports, shapes

    with user_errors():
        cfg = load(preset, overrides)
        for path in paths:
            result = imports.import_file(cfg, Path(path), as_set, fmt, source, shapes.parse_mapping(mapping), split)
            added = "  ".join(f"{s}={n}" for s, n in result.counts.items())
            dropped = "; ".join(f"{why}: {n}" for why, n in result.dropped.items()) or "none"
            echo(f"imported {path} ({result.shape}, sha256 {result.sha256[:16]}...) into {result.set_name}: {added}")
            echo(f"  dropped: {dropped}; data version {result.data_version}")
    echo(f"datasheet: {cfg.data.data_dir / 'datasheet.md'}")


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

    from alignops.data import exports

    with user_errors():
        written = exports.export_set(load(preset, overrides).data.data_dir, set_name, fmt, Path(out), source)
    echo("\n".join(f"{split}: {path}" for split, path in written.items()))


@tokenizer_app.command("train")
def tokenizer_train(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Train the byte-level BPE on the validated corpus train split."""
    from alignops.stages import tokenizer

    with user_errors():
        result = tokenizer.run(load(preset, overrides))
    cpt = ", ".join(f"{k} {v:.2f}" for k, v in result.chars_per_token.items())
    echo(
        f"tokenizer {result.info.path} (sha256 {result.info.sha256[:12]}, vocab {result.info.vocab_size}); "
        f"chars/token on val: {cpt}; MLflow run {result.run_id}"
    )


@config_app.command("show")
def config_show(preset: Preset = "small", overrides: Overrides = None) -> None:
    """Print the resolved config of a preset with overrides applied."""
    from alignops.config import config_hash, to_yaml

    with user_errors():
        cfg = load(preset, overrides, tracked=False)
    echo(f"# preset {cfg.name}, config hash {config_hash(cfg)}\n{to_yaml(cfg)}")
