"""The on-disk format of a trained model: what gets logged to MLflow, registered, downloaded and served.

folder/
  config.json, model.safetensors   the GPT in Hugging Face GPT-2 layout (GPT.save_hf): loads in transformers too
  model.int8.safetensors           instead of those two for an int8 model (alignops.json: quantization
                                   "int8-dynamic"): int8 weights and per-channel scales as plain tensors
                                   (models.compression.int8_state), the GPT config in the file's metadata
                                   (a "transformers" int8 folder: beside its config.json and tokenizer files)
  tokenizer.json                   the tokenizer it was trained with
  head.safetensors                 the class head (classifiers) or scalar head (reward models), either format
  alignops.json                    kind, labels, lineage (data version, tokenizer hash, parent model), quantization,
                                   format: "alignops-gpt" (the above) or "transformers"

A "transformers" folder is a plain Hugging Face causal-LM folder of any architecture (config.json, weights,
tokenizer files with the chat template) plus alignops.json (and head.safetensors for a reward model or classifier):
a base fetched or imported by alignops/base_models.py, or a stage's model trained on such a base (LoRA merged).

save_model(folder, gpt, tokenizer_path, ModelMeta(kind="causal_lm", stage="pretrain"))
save_model(folder, quantize_int8(gpt), tokenizer_path, ModelMeta(..., quantization="int8-dynamic"))
save_hf_model(folder, hf_folder, ModelMeta(kind="causal_lm", stage="base", format=HF_FORMAT))
save_model(folder, hf_causal_lm, hf_tokenizer, ModelMeta(kind="reward", ..., format=HF_FORMAT), head)
loaded = load_model(folder)     # any kind of folder; loaded.gpt is a models.base.CausalLM; int8 runs on the CPU
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alignops.errors import ModelError

META_FILE = "alignops.json"
HEAD_FILE = "head.safetensors"
INT8_FILE = "model.int8.safetensors"
WEIGHT_FILES = ("model.safetensors", INT8_FILE, HEAD_FILE)  # what a folder's size on disk counts
TOKENIZER_FILE = "tokenizer.json"
GPT_FORMAT = "alignops-gpt"  # ModelMeta.format: the project's GPT (models.gpt) with its BPE tokenizer
HF_FORMAT = "transformers"  # a plain Hugging Face causal-LM folder (models.base.HFCausalLM), any architecture


@dataclass(frozen=True)
class ModelMeta:
    kind: str  # "causal_lm", "classifier" or "reward"
    stage: str  # the stage that made it: pretrain, sft, classify, ...
    labels: list[str] | None = None  # classifiers: class names in head order
    data_version: str | None = None
    tokenizer_sha256: str | None = None
    parent: str | None = None  # the model URI this one was initialised from
    extra: dict[str, Any] = field(default_factory=dict)
    quantization: str | None = None  # None: fp32 weights in model.safetensors; "int8-dynamic": INT8_FILE
    format: str = GPT_FORMAT  # GPT_FORMAT or HF_FORMAT: which loader reads the weights and the tokenizer


@dataclass
class LoadedModel:
    gpt: Any  # models.gpt.GPT
    tokenizer: Any  # tokenizers.Tokenizer
    meta: ModelMeta
    head: Any = None  # models.heads.ClassificationHead for classifiers, ScalarHead for reward models


def model_format(model) -> str:
    """ModelMeta.format of an in-memory model: HF_FORMAT for a models.base.HFCausalLM, GPT_FORMAT otherwise."""
    from models.base import HFCausalLM

    return HF_FORMAT if isinstance(model, HFCausalLM) else GPT_FORMAT


def save_model(folder: Path, gpt, tokenizer, meta: ModelMeta, head=None) -> Path:
    """Write a model folder; written into a temp sibling and renamed, so a crash leaves no half model.

    gpt: the project's GPT (or int8 GPT, or encoder) with `tokenizer` the path of its tokenizer.json, copied byte
    for byte; or, with meta.format HF_FORMAT, a models.base.HFCausalLM with its transformers tokenizer: a plain
    Hugging Face folder (model.save + tokenizer.save_pretrained) that loads without alignops."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _write_model(tmp, gpt, tokenizer, meta, head)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-written stays behind
        raise
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def _write_model(tmp: Path, gpt, tokenizer, meta: ModelMeta, head) -> None:
    if meta.quantization is not None:
        _save_int8(tmp, gpt, meta.quantization)
    elif meta.format == HF_FORMAT:
        gpt.save(tmp)
    else:
        gpt.save_hf(tmp)
    if meta.format == HF_FORMAT:
        tokenizer.save_pretrained(str(tmp))
    else:
        shutil.copyfile(tokenizer, tmp / TOKENIZER_FILE)
    if head is not None:
        from safetensors.torch import save_file

        save_file({k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}, str(tmp / HEAD_FILE))
    (tmp / META_FILE).write_text(json.dumps(asdict(meta), indent=1) + "\n", encoding="utf-8")


def read_meta(path: Path) -> ModelMeta:
    """A model folder's alignops.json, or a ModelError naming the file, line and field that break it."""
    fix = "Restore the folder from the registry (alignops resolves models:/ URIs afresh) or re-run its stage."
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno}). {fix}") from None
    if not isinstance(raw, dict):
        raise ModelError(f"{path}:1: expected a JSON object of model metadata, found {type(raw).__name__}. {fix}")
    try:
        return ModelMeta(**raw)
    except TypeError as exc:
        raise ModelError(f"{path}: {exc} (the fields are those of ModelMeta). {fix}") from None


def load_model(folder: Path, dropout: float = 0.0) -> LoadedModel:
    """Load a model folder written by save_model (or downloaded from the registry)."""
    from alignops.data.tokenizer import load_tokenizer
    from models.gpt import GPT

    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"{folder} is not an alignops model folder (no {META_FILE}).")
    meta = read_meta(meta_path)
    if meta.format == HF_FORMAT:
        return _load_hf(folder, meta)
    if meta.quantization is not None:
        gpt = _load_int8(folder, meta.quantization)  # inference only: dropout does not apply
    else:
        gpt = GPT.from_hf(folder, dropout=dropout)
    return LoadedModel(gpt, load_tokenizer(folder / TOKENIZER_FILE), meta, _load_head(folder, meta, gpt.hidden_size))


def save_hf_model(folder: Path, source: Path, meta: ModelMeta) -> Path:
    """Copy a Hugging Face folder (weights, config, tokenizer files) and write alignops.json beside them,
    into a temp sibling renamed at the end: a crash leaves no half model. The files are copied byte for byte,
    so the folder's content hash (the lineage of an imported base) still describes them."""
    if meta.format != HF_FORMAT:
        raise ValueError(f"save_hf_model writes {HF_FORMAT!r} folders, got ModelMeta(format={meta.format!r})")
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(META_FILE, ".*"))
    (tmp / META_FILE).write_text(json.dumps(asdict(meta), indent=1) + "\n", encoding="utf-8")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def _load_head(folder: Path, meta: ModelMeta, hidden_size: int):
    """The class head (classifiers) or scalar head (reward models) of a folder, sized from its backbone; None for
    a causal LM."""
    if meta.kind not in ("classifier", "reward"):
        return None
    from safetensors.torch import load_file

    from models.heads import ClassificationHead, ScalarHead

    head = (
        ClassificationHead(hidden_size, len(meta.labels or []))
        if meta.kind == "classifier"
        else ScalarHead(hidden_size)
    )
    head.load_state_dict(load_file(str(folder / HEAD_FILE)))
    return head


def _load_hf(folder: Path, meta: ModelMeta) -> LoadedModel:
    from transformers import AutoTokenizer

    from models.base import HFCausalLM

    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if meta.quantization is not None:
        return LoadedModel(_load_int8(folder, meta.quantization), tokenizer, meta)
    model = HFCausalLM.from_folder(folder)
    return LoadedModel(model, tokenizer, meta, _load_head(folder, meta, model.hidden_size))


def _save_int8(folder: Path, gpt, scheme: str) -> None:
    from safetensors.torch import save_file

    from models.base import HFCausalLM
    from models.compression import INT8, int8_state, is_quantized

    if scheme != INT8 or not is_quantized(gpt):
        raise ValueError(
            f"ModelMeta(quantization={scheme!r}) needs a models.compression.quantize_int8 model ({INT8!r}); "
            "for an fp32 model leave quantization None."
        )
    if isinstance(gpt, HFCausalLM):  # its transformers config.json beside the tensors says how to rebuild it
        gpt.config.save_pretrained(str(folder))
        save_file(int8_state(gpt), str(folder / INT8_FILE), metadata={"format": "pt"})
        return
    config = json.dumps(asdict(gpt.config))
    save_file(int8_state(gpt), str(folder / INT8_FILE), metadata={"format": "pt", "gpt_config": config})


def _load_int8(folder: Path, scheme: str):
    from safetensors import safe_open
    from safetensors.torch import load_file

    from models.compression import INT8, from_int8_state
    from models.gpt import GPTConfig

    path = folder / INT8_FILE
    if scheme != INT8:
        raise ModelError(f"{folder / META_FILE}: unknown quantization {scheme!r}; this alignops reads {INT8!r}.")
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {folder / META_FILE} says the weights are int8.")
    with safe_open(str(path), framework="pt") as f:
        gpt_config = f.metadata().get("gpt_config")
    if gpt_config is None:  # a Hugging Face model: its config.json
        from transformers import AutoConfig

        from models.compression import hf_from_int8_state

        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
        return hf_from_int8_state(config, load_file(str(path)))
    return from_int8_state(GPTConfig(**json.loads(gpt_config)), load_file(str(path)))


def context_length(folder: Path) -> int:
    """The model's context (block size) read from its folder without loading the weights."""
    config = folder / "config.json"
    if config.is_file():
        hf = json.loads(config.read_text(encoding="utf-8"))
        hf = hf.get("text_config", hf)  # multimodal configs nest the language model's
        return int(hf["n_positions"] if "n_positions" in hf else hf["max_position_embeddings"])
    from safetensors import safe_open

    with safe_open(str(folder / INT8_FILE), framework="pt") as f:
        return int(json.loads(f.metadata()["gpt_config"])["block_size"])
