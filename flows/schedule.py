"""Serve the deployments of prefect.yaml from one process, for a machine without a Prefect server or worker:

    alignops schedule                 # both deployments, on their schedules; Ctrl-C stops
    alignops schedule --only nightly-feedback

prefect.yaml is the one place the deployments are written down: `prefect deploy --all` reads it for a server
with work pools, and this module reads it to serve the same flows, parameters and schedules locally.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from alignops.config import ConfigError

ROOT = Path(__file__).resolve().parent.parent  # the checkout (or site-packages, for an installed wheel)


def prefect_yaml(folders: tuple[Path, ...] | None = None) -> Path:
    """prefect.yaml of the folder you run in (where `prefect deploy` reads it too), else the checkout's."""
    folders = folders or (Path.cwd(), ROOT)
    for folder in folders:
        if (folder / "prefect.yaml").is_file():
            return folder / "prefect.yaml"
    raise FileNotFoundError(
        f"No prefect.yaml in {' or '.join(map(str, folders))}: run `alignops schedule` in a checkout of alignops, "
        "whose prefect.yaml holds the deployments and their schedules."
    )


@dataclass(frozen=True)
class Deployment:
    name: str
    entrypoint: str  # path/to/file.py:flow_function, relative to the repo root
    parameters: dict[str, Any]
    crons: tuple[str, ...]
    timezone: str | None

    @property
    def describe(self) -> str:
        return f"{self.entrypoint} {self.parameters} cron {', '.join(self.crons)} ({self.timezone or 'UTC'})"

    def flow(self):
        """Import the flow object named by the entrypoint."""
        file, sep, func = self.entrypoint.partition(":")
        path = ROOT / file
        if not sep or not path.is_file():
            raise FileNotFoundError(f"prefect.yaml: deployment {self.name!r} has entrypoint {self.entrypoint!r}, "
                                    "which is not an existing file:function.")  # fmt: skip
        module = importlib.import_module(".".join(Path(file).with_suffix("").parts))
        return getattr(module, func)


def deployments(only: list[str] | None = None, path: Path | None = None) -> list[Deployment]:
    """The deployments written in prefect.yaml (all, or those named in `only`)."""
    path = path or prefect_yaml()
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    found = []
    for d in spec.get("deployments", []):
        schedules = d.get("schedules") or []
        crons = tuple(s["cron"] for s in schedules if "cron" in s)
        timezone = next((s["timezone"] for s in schedules if s.get("timezone")), None)
        found.append(Deployment(d["name"], d["entrypoint"], d.get("parameters") or {}, crons, timezone))
    if only:
        unknown = sorted(set(only) - {d.name for d in found})
        if unknown:
            raise ConfigError(f"No deployment named {unknown} in {path}; it has {[d.name for d in found]}.")
        found = [d for d in found if d.name in only]
    return found


def runner_deployments(chosen: list[Deployment]) -> list:
    """Prefect RunnerDeployments for `chosen`, with their parameters and cron schedules."""
    from prefect.schedules import Cron

    return [
        d.flow().to_deployment(
            name=d.name, parameters=d.parameters, schedules=[Cron(c, timezone=d.timezone or "UTC") for c in d.crons]
        )
        for d in chosen
    ]


def serve(chosen: list[Deployment]) -> None:
    """Block, running each deployment's flow on its schedule in this process (flow.serve for several flows)."""
    from prefect import serve as prefect_serve

    prefect_serve(*runner_deployments(chosen))
