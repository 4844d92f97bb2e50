"""The `alignops` command line: each command parses options, calls one stage or flow, and prints the result.

common     the Typer apps, --preset/--set, config loading, user_errors (the one place errors meet the user)
data       data build|validate|status|push|pull|import|export, tokenizer train, config show
train      pretrain, sft, classify, ner, reward, ppo, dpo, evaluate, fewshot, compress, distill, generate, model
pipeline   run, experiment, feedback, schedule, promote, rollback
service    serve, dashboard, users, labels
"""

import importlib

from alignops.cli.common import app

# importing a module registers its commands, in this order in `alignops --help`
for _module in ("data", "train", "pipeline", "service"):
    importlib.import_module(f"alignops.cli.{_module}")

__all__ = ["app"]
