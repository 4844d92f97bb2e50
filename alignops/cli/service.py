"""What runs beside training: `alignops serve` (a registered model over HTTP), `alignops dashboard`, and the
dashboard's users and labels (`alignops users add`, `alignops labels export|stats`)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from alignops.cli.common import (
    PRECISION_HELP,
    app,
    echo,
    labels_app,
    user_errors,
    users_app,
)

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

    with user_errors():
        password = os.environ.get(PASSWORD_ENV) or typer.prompt("password", hide_input=True, confirmation_prompt=True)
        with Store() as store:
            user = store.add_annotator(name, password, role)
    echo(f"added {user.role} {user.name} (id {user.id}) to {store.location}")


@labels_app.command("export")
def labels_export(
    after: Annotated[int, typer.Option(help="Only rankings with an id above this (the last export's watermark).")] = 0,
    out: Annotated[str | None, typer.Option(help="JSONL file to write (all or nothing); default stdout.")] = None,
) -> None:
    """Export current rankings as the rankings data contract (JSONL), and print the watermark for --after."""
    import json

    from alignops.feedback.store import Store, write_jsonl

    with user_errors(), Store() as store:
        records, highest = store.export_rankings(after_id=after)
        if out:
            write_jsonl(records, out)
        else:
            sys.stdout.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    where = f" to {out}" if out else ""
    echo(f"exported {len(records)} ranking(s) with id > {after}{where}; next time: --after {highest}", err=True)


@labels_app.command("stats")
def labels_stats() -> None:
    """Rankings, skips and ratings per annotator and per model version."""
    from alignops.feedback.store import Store

    with user_errors(), Store() as store:
        counts = store.counts()
    totals = counts["totals"]
    echo(f"{store.location}: " + ", ".join(f"{n} {what}" for what, n in totals.items()))
    echo(f"\n{'annotator':<24}{'rankings':>10}{'skipped':>10}{'ratings':>10}")
    for name, c in counts["by_annotator"].items():
        echo(f"{name:<24}{c['rankings']:>10}{c['skipped']:>10}{c['ratings']:>10}")
    echo(f"\n{'model version':<40}{'responses':>10}{'rankings':>10}{'ratings':>10}")
    for uri, c in counts["by_model"].items():
        echo(f"{uri:<40}{c['responses']:>10}{c['rankings']:>10}{c['ratings']:>10}")


@app.command("serve")
def serve(
    model: Annotated[str, typer.Option(help="models:/<name>@champion, models:/<name>/<version>, ...")],
    host: Annotated[str, typer.Option(help="Interface to listen on; 0.0.0.0 for every one.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 5000,
    precision: Annotated[str, typer.Option(help=PRECISION_HELP)] = "auto",
) -> None:
    """Serve a registered model over HTTP with MLflow's scoring server (POST /invocations) until Ctrl-C."""
    from alignops import settings

    with user_errors():  # an unusable ALIGNOPS_HOME is a user error here too
        settings.apply_offline_env()
    from alignops import tracking
    from alignops.config import check_precision
    from alignops.errors import ConfigError, ModelError
    from alignops.tracking_server import require_reachable

    with user_errors():
        try:
            check_precision(precision)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None  # a usage error, exit 2, before a server starts
        require_reachable()
        version = tracking.version_uri(model)
        if version.startswith("models:/") and not tracking.model_version_exists(version):
            raise ModelError(f"{model}: no such registered version; `alignops evaluate`/the MLflow UI list them.")
    request = '{"inputs": ["Write a tweet."], "params": {"strategy": "sample", "max_new_tokens": 32, "top_p": 0.9}}'
    echo(f"serving {model} ({version}) on http://{host}:{port}; Ctrl-C stops it. Ask it:\n"
          f"  curl -s http://{host}:{port}/invocations -H 'Content-Type: application/json' -d '{request}'")  # fmt: skip
    raise typer.Exit(tracking.serve(model, host, port, precision))


@app.command("dashboard")
def dashboard(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8501,
    host: Annotated[str, typer.Option(help="Interface to listen on; 0.0.0.0 for every one.")] = "127.0.0.1",
) -> None:
    """Open the dashboard (Streamlit): compare runs and models, rank and rate responses, export labels."""
    import subprocess

    from alignops import settings

    with user_errors():  # an unusable ALIGNOPS_HOME is a user error here too
        settings.apply_offline_env()
    import dashboard as package  # the dashboard/ folder, installed beside alignops

    # headless: Streamlit neither opens a browser nor asks for an e-mail address on its first run; we print the URL
    command = [sys.executable, "-m", "streamlit", "run", str(Path(package.__file__).parent / "app.py"),
               "--server.port", str(port), "--server.address", host, "--server.headless", "true",
               "--client.toolbarMode", "viewer"]  # fmt: skip  # no Deploy / Clear cache for labelers
    echo(f"dashboard on http://{host}:{port}; Ctrl-C stops it. Sign in as a user from `alignops users add`, or as "
          "ALIGNOPS_ADMIN_USER (default admin) with ALIGNOPS_ADMIN_PASSWORD from the environment.")  # fmt: skip
    try:
        code = subprocess.run(command, check=False).returncode
    except KeyboardInterrupt:  # Ctrl-C reached Streamlit too (same process group); it stops by itself
        code = 0
    raise typer.Exit(code)
