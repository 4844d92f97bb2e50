"""bench/orchestration.py's attribution of profile samples to parts (its figures are only as right as this)."""

from __future__ import annotations

from pathlib import Path

from bench.orchestration import main_thread_samples, part_of

SITE = "/venv/lib/python3.11/site-packages"


def test_samples_are_charged_to_the_part_doing_the_work() -> None:
    cli = "main (/repo/alignops/cli/__main__.py:6)"
    flow = f"call (/{SITE}/prefect/flow_engine.py:1350)"
    stage = "run (/repo/alignops/stages/sft.py:40)"
    assert part_of([cli, flow, stage, f"fit ({SITE}/lightning/pytorch/trainer/trainer.py:1)"]) == "compute"
    # torch under MLflow's model logging is tracking; MLflow under Lightning's logger too
    assert part_of([cli, flow, stage, f"log_model ({SITE}/mlflow/pyfunc/__init__.py:1)",
                    f"save ({SITE}/torch/serialization.py:1)"]) == "tracking"  # fmt: skip
    # Prefect's own code (here waiting on its server) is orchestration, though it is every stage's ancestor
    assert part_of([cli, flow, "wait (/usr/lib/python3.11/threading.py:320)"]) == "orchestration"
    assert part_of([cli]) == "other" and part_of([]) == "other"
    # SQLAlchemy is MLflow's under mlflow frames, but the feedback store's when the label step queues answers
    store = [cli, flow, "queue (/repo/alignops/feedback/queue.py:9)", f"execute ({SITE}/sqlalchemy/engine/base.py:1)"]
    assert part_of(store) == "compute"


def test_only_the_main_threads_samples_count(tmp_path: Path) -> None:
    raw = tmp_path / "profile.raw"
    raw.write_text(
        "thread (1): MainThread;main (/repo/alignops/cli/__main__.py:6);run (/repo/alignops/stages/sft.py:4) 30\n"
        f"thread (1): MainThread;main (/repo/alignops/cli/__main__.py:6);x ({SITE}/prefect/a.py:1) 10\n"
        f"thread (2): Thread-3;run ({SITE}/prefect/events/worker.py:9) 500\n",
        encoding="utf-8",
    )
    assert main_thread_samples(raw) == {"compute": 30, "orchestration": 10}
