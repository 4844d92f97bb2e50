"""Compression: int8, pruned and distilled versions of a causal LM, each registered under the original's
registered model (tag alignops.compression = int8 | pruned-<sparsity> | distilled, the original as parent) so
it can compete for `champion`, and each measured against the original the same way.

    result = run(load_config("tiny"))                       # or: alignops compress --preset tiny
    result = run(cfg, model="models:/alignops-policy@champion", methods=["int8", "prune"])
    print(result.table())

Methods (models/compression.py; distillation is its own stage, alignops/stages/distill.py):
  int8     dynamic int8 quantization of every Linear (blocks and lm_head); CPU inference; model.int8.safetensors
  prune    magnitude pruning of every block weight matrix to exactly compress.sparsity zeros (per matrix);
           stored dense, so only a compressed archive gets smaller
int8 and prune also take a Hugging Face base (format "transformers"): every nn.Linear of the transformers model
is int8 (GPT-2's Conv1D projections stay fp32), and every Linear or Conv1D of its backbone is pruned.
  distill  a smaller student trained on the original's soft targets (alignops distill runs it alone)

The figures, the same for the original and every version (alignops.evaluation.compression: size, gzip size,
tokens/s, parameters, nonzero share, test loss and perplexity, greedy agreement with the original), are logged to
each method's nested run as compress/...; the table to the parent run as compression.json and compression.md.
"""

from __future__ import annotations

from alignops import tracking
from alignops.config import PipelineConfig
from alignops.evaluation.compression import Bench, CompressionError
from alignops.stages import distill
from alignops.stages.compression import (
    Compressed,
    CompressResult,
    Method,
    Source,
    compress_by,
    load_source,
    register_version,
    require_gpt,
    source_uri,
    version_meta,
)
from alignops.stages.data import require_valid

__all__ = ["METHODS", "CompressResult", "CompressionError", "run", "source_uri"]

METHODS = ("int8", "prune", "distill")


def run(
    cfg: PipelineConfig,
    model: str | None = None,
    methods: list[str] | None = None,
    parent_run_id: str | None = None,
) -> CompressResult:
    """Compress one registered causal LM by each method; register, measure and log every version."""
    require_valid(cfg)
    methods = list(methods or cfg.compress.methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise CompressionError(f"Unknown compression method(s) {unknown}: choose from {list(METHODS)}.")
    src = load_source(cfg, model)
    if "distill" in methods:
        require_gpt(src, "distill")
    by_name: dict[str, Method] = {"int8": _int8, "prune": _prune, "distill": distill.train_student}
    return compress_by(cfg, src, {m: by_name[m] for m in methods}, "compress", parent_run_id)


def _int8(cfg: PipelineConfig, src: Source, bench: Bench, parent_run_id: str) -> Compressed:
    from models.compression import INT8, quantize_int8

    with tracking.stage_run("compress-int8", cfg, cfg.compress, parent_run_id) as stage:
        gpt = quantize_int8(src.model.gpt)
        meta = version_meta(src, "int8", data_version=src.model.meta.data_version, quantization=INT8)
        return register_version(cfg, stage, "int8", gpt, src, meta, bench, {})


def _prune(cfg: PipelineConfig, src: Source, bench: Bench, parent_run_id: str) -> Compressed:
    from models.compression import prune_magnitude

    sparsity = cfg.compress.sparsity
    tag = f"pruned-{sparsity:g}"
    with tracking.stage_run("compress-prune", cfg, cfg.compress, parent_run_id) as stage:
        gpt, shares = prune_magnitude(src.model.gpt, sparsity)
        stage.log_dict(shares, "pruning/sparsity_per_matrix.json")
        metrics = {"prune/sparsity_min": min(shares.values()), "prune/sparsity_max": max(shares.values())}
        meta = version_meta(src, tag, data_version=src.model.meta.data_version)
        return register_version(cfg, stage, "prune", gpt, src, meta, bench, metrics)
