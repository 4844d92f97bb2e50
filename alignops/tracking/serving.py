"""Serving: the served form of a model folder (an MLflow pyfunc: prompts plus decoding params in, completions
out), the decoding parameters it accepts, and `serve`, MLflow's scoring server on a registered model.

    alignops serve --model models:/alignops-policy@champion     # tracking.serve(uri): POST /invocations
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from alignops.tracking.backend import tracking_uri

# The precision a served model decodes at (alignops.precision: auto, 32-true, ...), set by `alignops serve
# --precision` for the scoring server it starts; unset: auto.
PRECISION_ENV = "ALIGNOPS_SERVE_PRECISION"


def pyfunc_model():
    """The served form of a model folder: predict(prompts, params) -> completions. Built lazily so that
    importing this module does not import mlflow. (MLflow's "add type hints" warning is expected: a hint would
    make it infer the signature from the hint, which cannot carry the decoding params register_model declares.)"""
    import mlflow.pyfunc

    class GenerativeModel(mlflow.pyfunc.PythonModel):
        def load_context(self, context) -> None:
            from alignops.artifacts import META_FILE
            from alignops.inference import Generator

            folder = Path(context.artifacts["model"])
            self.tagger = None  # a ner model answers each text with its entities, as JSON
            if json.loads((folder / META_FILE).read_text(encoding="utf-8"))["kind"] == "tagger":
                from alignops.evaluation.ner import Tagger

                self.tagger = Tagger.from_dir(folder)
                return
            self.generator = Generator.from_dir(folder, precision=served_precision())

        def predict(self, context, model_input, params: dict[str, Any] | None = None) -> list[str]:
            from alignops.tracking import served_input  # checks the request before anything is tokenized

            prompts = served_input.prompts(model_input)
            if self.tagger is not None:
                found = self.tagger.entities(prompts)
                return [json.dumps(entities, ensure_ascii=False) for entities in found]
            config = served_input.decoding_config(params)
            try:
                return self.generator.complete(prompts, config)
            except ValueError as exc:  # e.g. max_new_tokens leaving no room for a prompt
                raise served_input.invalid(str(exc)) from None

    return GenerativeModel()


def served_precision() -> str | None:
    """PRECISION_ENV's value, checked: a value alignops does not run at stops the server's start with the
    variable's name, rather than serving in a precision nobody asked for."""
    from alignops.config import check_precision

    value = os.environ.get(PRECISION_ENV) or None
    try:
        return check_precision(value)
    except ValueError as exc:
        raise ValueError(f"{PRECISION_ENV}: {exc}; unset it, or `alignops serve --precision auto`") from None


def set_served_model() -> None:
    """Hand the served form to MLflow; called by alignops/served_model.py, the models-from-code file MLflow
    runs when it loads a registered model (no pickled class: the code that serves is the installed alignops)."""
    from mlflow.models import set_model

    set_model(pyfunc_model())


# Decoding parameters a served model accepts, with their defaults (MLflow needs the types up front).
SERVING_PARAMS = {
    "strategy": "greedy",
    "max_new_tokens": 64,
    "temperature": 1.0,
    "top_k": 0,
    "top_p": 1.0,
    "repetition_penalty": 1.0,
    "num_beams": 1,
    "seed": 0,
}


def serve(model_uri: str, host: str = "127.0.0.1", port: int = 5000, precision: str | None = None) -> int:
    """Serve a registered model with MLflow's scoring server (POST /invocations) until interrupted; returns
    the server's exit code. In this environment (`--env-manager local`): the model needs alignops and torch,
    which a fresh virtualenv would have to install. precision: what it decodes at (None: auto, bf16 autocast where
    the hardware has it; alignops.precision)."""
    import sys

    # MLflow starts the server as `bash -c "exec uvicorn ..."`: uvicorn must be on PATH even when this Python's
    # environment was never activated (.venv/bin/alignops called by its path)
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri(), "PATH": path}
    if precision is not None:
        env[PRECISION_ENV] = precision
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
               "-h", host, "-p", str(port)]  # fmt: skip
    try:
        return subprocess.run(command, env=env, check=False).returncode
    except KeyboardInterrupt:  # Ctrl-C reached the server too (same process group); it stops by itself
        return 0
