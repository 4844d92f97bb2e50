"""The on-disk format of a trained model: what gets logged to MLflow, registered, downloaded and served.

folder/
  config.json, model.safetensors   the GPT in Hugging Face GPT-2 layout (GPT.save_hf): loads in transformers too
  tokenizer.json                   the tokenizer it was trained with
  head.safetensors                 the class head (classifiers only)
  alignops.json                    kind, labels, lineage (data version, tokenizer hash, parent model)

save_model(folder, gpt, tokenizer_path, ModelMeta(kind="causal_lm", stage="pretrain"))
loaded = load_model(folder)
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

META_FILE = "alignops.json"
HEAD_FILE = "head.safetensors"
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class ModelMeta:
    kind: str  # "causal_lm", "classifier" or "reward"
    stage: str  # the stage that made it: pretrain, sft, classify, ...
    labels: list[str] | None = None  # classifiers: class names in head order
    data_version: str | None = None
    tokenizer_sha256: str | None = None
    parent: str | None = None  # the model URI this one was initialised from
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadedModel:
    gpt: Any  # models.gpt.GPT
    tokenizer: Any  # tokenizers.Tokenizer
    meta: ModelMeta
    head: Any = None  # models.heads.ClassificationHead for classifiers, ScalarHead for reward models


def save_model(folder: Path, gpt, tokenizer_path: Path, meta: ModelMeta, head=None) -> Path:
    """Write a model folder; written into a temp sibling and renamed, so a crash leaves no half model."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    gpt.save_hf(tmp)
    shutil.copyfile(tokenizer_path, tmp / TOKENIZER_FILE)
    if head is not None:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, str(tmp / HEAD_FILE))
    (tmp / META_FILE).write_text(json.dumps(asdict(meta), indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def load_model(folder: Path, dropout: float = 0.0) -> LoadedModel:
    """Load a model folder written by save_model (or downloaded from the registry)."""
    from alignops.data.tokenizer import load_tokenizer
    from models.gpt import GPT

    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder} is not an alignops model folder (no {META_FILE}).")
    meta = ModelMeta(**json.loads(meta_path.read_text(encoding="utf-8")))
    gpt = GPT.from_hf(folder, dropout=dropout)
    head = None
    if meta.kind in ("classifier", "reward"):
        from safetensors.torch import load_file

        from models.heads import ClassificationHead, ScalarHead

        if meta.kind == "classifier":
            head = ClassificationHead(gpt.config.n_embd, len(meta.labels or []))
        else:
            head = ScalarHead(gpt.config.n_embd)
        head.load_state_dict(load_file(str(folder / HEAD_FILE)))
    return LoadedModel(gpt, load_tokenizer(folder / TOKENIZER_FILE), meta, head)
