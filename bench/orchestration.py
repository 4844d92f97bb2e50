"""Where the tiny pipeline's wall time goes: training and evaluation against orchestration (Prefect) and tracking
(MLflow), measured by sampling the running pipeline's main thread with py-spy (idle samples included, so waiting
on a server or a lock counts as the wall time it is).

Each sample is charged to a part (GROUPS): tracking when MLflow is anywhere on its stack (torch.save under MLflow's
model logging is tracking); else the innermost frame that belongs to a part: Prefect's own code is orchestration,
a stage's code or torch under it is compute. Imports are charged to the package imported (its module code runs);
what matches nothing (the interpreter's start, the CLI) is "other".

    pip install py-spy                                  # not a project dependency: a profiler binary
    python bench/orchestration.py                       # alignops run --preset tiny, in a scratch ALIGNOPS_HOME
    python bench/orchestration.py --set pretrain.max_steps=100 --rate 100

Prints one JSON object: wall seconds, samples, and each part's share of the main thread's samples; "overhead" is
orchestration + tracking. The pipeline's own output goes to --log (default: a file beside the raw profile).
"""

from __future__ import annotations

# Runnable as `python bench/orchestration.py` from the repo root: put the repo root on sys.path.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# part -> path fragments of its frames' files; the first part whose fragment matches a frame wins, in this order
GROUPS = {
    # MLflow's own SQLAlchemy and Alembic calls sit under mlflow frames; bare SQLAlchemy is the feedback store's
    "tracking": ("/mlflow/", "/alignops/tracking/"),
    "orchestration": ("/prefect/", "/flows/", "/anyio/", "/httpx/", "/httpcore/", "/uvicorn/"),
    "validation": ("/great_expectations/", "/alignops/data/validation", "/alignops/data/suites"),
    "versioning": ("/dvc/", "/alignops/data/versioning", "/scmrepo/", "/dulwich/"),
    "fetching": ("/alignops/base_models.py", "/alignops/data/sources.py", "/pip/"),  # pinned packages, first run
    "compute": (
        "/torch/",
        "/lightning/",
        "/lightning_fabric/",
        "/transformers/",
        "/peft/",
        "/models/",
        "/alignops/",
    ),  # fmt: skip
}
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*):\d+\)$")


def _part(frame: str) -> str | None:
    match = FRAME.match(frame)
    path = match["file"] if match else frame
    if "/alignops/cli/" in path:
        return None  # the command line only wires: what it calls decides
    return next((part for part, fragments in GROUPS.items() if any(f in path for f in fragments)), None)


def part_of(stack: list[str]) -> str:
    """The part charged with one sample (stack: root first): tracking when MLflow is anywhere on it (MLflow never
    calls a stage, so whatever runs under it, torch.save included, is tracking's); else its innermost frame that
    belongs to a part (Prefect is an ancestor of every stage: only its own code is orchestration)."""
    parts = [_part(frame) for frame in stack]
    if "tracking" in parts:
        return "tracking"
    return next((part for part in reversed(parts) if part is not None), "other")


def main_thread_samples(raw: Path) -> Counter:
    """Samples per part of the profiled process's MainThread (py-spy --format raw --threads)."""
    parts: Counter = Counter()
    for line in raw.read_text(encoding="utf-8").splitlines():
        head, _, count = line.rpartition(" ")
        frames = head.split(";")
        if len(frames) < 2 or not frames[0].endswith("MainThread"):
            continue
        parts[part_of(frames[1:])] += int(count)
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="config override, repeatable")
    parser.add_argument("--rate", type=int, default=50, help="samples per second")
    parser.add_argument("--py-spy", default=shutil.which("py-spy"), help="the py-spy binary (default: on PATH)")
    parser.add_argument("--out", type=Path, default=None, help="folder for the raw profile and the log")
    args = parser.parse_args()
    if not args.py_spy:
        raise SystemExit("py-spy not found: pip install py-spy (or pass --py-spy PATH)")

    out = args.out or Path(tempfile.mkdtemp(prefix="alignops-orchestration-"))
    out.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="alignops-home-"))  # a fresh home: nothing cached, as a first run
    env = {**os.environ, "ALIGNOPS_HOME": str(home)}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-m", "alignops.cli", "run", "--preset", args.preset,
               *(a for s in args.overrides for a in ("--set", s))]  # fmt: skip
    raw = out / "profile.raw"
    profiler = [args.py_spy, "record", "--format", "raw", "--threads", "--idle", "--full-filenames",
                "--rate", str(args.rate), "--output", str(raw), "--", *command]  # fmt: skip
    started = time.perf_counter()
    with open(out / "pipeline.log", "w", encoding="utf-8") as log:
        proc = subprocess.run(profiler, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"the pipeline failed (exit {proc.returncode}): see {out / 'pipeline.log'}")

    parts = main_thread_samples(raw)
    total = sum(parts.values())
    shares = {part: round(parts[part] / total, 4) for part in (*GROUPS, "other")}
    record = {"benchmark": "orchestration", "preset": args.preset, "overrides": args.overrides,
              "wall_s": round(wall, 1), "samples": total, "rate": args.rate, "shares": shares,
              "overhead": round(shares["orchestration"] + shares["tracking"], 4), "profile": str(raw)}  # fmt: skip
    print(json.dumps(record), flush=True)
    shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
