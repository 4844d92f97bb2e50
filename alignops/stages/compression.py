"""What the compression stages share (alignops compress: int8 and pruning; alignops distill: a trained student):
the source version, the compressed version's metadata and registration beside the original, and the run that
measures the original and each compressed version against it.

    src = load_source(cfg, "models:/alignops-sft/1")      # or None: the newest uncompressed policy, else SFT
    result = compress_by(cfg, src, {"int8": make_int8}, "compress", parent_run_id=None)
    print(result.table())
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignops import tracking
from alignops.artifacts import HF_FORMAT, TOKENIZER_FILE, ModelMeta, load_model, save_model
from alignops.config import PipelineConfig
from alignops.evaluation.compression import Bench, CompressionError, Figures, deltas
from alignops.stages.finite import require_finite


@dataclass(frozen=True)
class Source:
    uri: str  # models:/<name>/<version>
    registered: str  # <name>: where the compressed versions go
    folder: Path
    model: Any  # alignops.artifacts.LoadedModel


@dataclass(frozen=True)
class Compressed:
    method: str  # int8 | prune | distill
    tag: str  # the version's alignops.compression tag
    model_uri: str  # models:/<name>/<version>
    version: str
    run_id: str
    model_dir: Path
    figures: Figures
    metrics: dict[str, float]  # the method's own: pruning sparsity, distillation loss and KL before/after


@dataclass(frozen=True)
class CompressResult:
    run_id: str  # the parent "compress" run; each method has a nested run
    source_uri: str
    original: Figures
    versions: list[Compressed]

    def rows(self) -> list[dict[str, Any]]:
        """The trade-off table: one row per model, figures plus ratios to the original."""
        o = self.original
        rows = [{"model": "original", "uri": self.source_uri, **dataclasses.asdict(o)}]
        for v in self.versions:
            f = v.figures
            rows.append(
                {"model": v.tag, "uri": v.model_uri, **dataclasses.asdict(f), "size_ratio": f.size_mb / o.size_mb,
                 "speedup": f.tokens_per_s / o.tokens_per_s, "test_loss_delta": f.test_loss - o.test_loss}
            )  # fmt: skip
        return rows

    def table(self) -> str:
        """The trade-off table as Markdown."""
        columns = ["model", "version", "size MB", "gzip MB", "tokens/s", "params", "nonzero", "test loss", "ppl",
                   "agreement", "exact"]  # fmt: skip
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        for row in self.rows():
            ratio = f" ({row['size_ratio']:.2f}x)" if "size_ratio" in row else ""
            speed = f" ({row['speedup']:.2f}x)" if "speedup" in row else ""
            delta = f" ({row['test_loss_delta']:+.3f})" if "test_loss_delta" in row else ""
            lines.append(
                f"| {row['model']} | {row['uri']} | {row['size_mb']:.2f}{ratio} | {row['gzip_mb']:.2f} "
                f"| {row['tokens_per_s']:.0f}{speed} | {row['params'] / 1e6:.2f}M | {row['nonzero_share']:.1%} "
                f"| {row['test_loss']:.3f}{delta} | {row['test_ppl']:.1f} | {row['agreement']:.2f} "
                f"| {row['exact_match']:.2f} |"
            )
        return "\n".join(lines)


# one compression method: (cfg, source, bench, parent run id) -> the registered, measured version
Method = Callable[[PipelineConfig, Source, Bench, str], Compressed]


def source_uri(cfg: PipelineConfig, model: str | None = None) -> str:
    """The exact version to compress: `model`, else compress.source_model, else the newest uncompressed
    <prefix>-policy, else <prefix>-sft (aliases and latest pinned to a version)."""
    uri = model or cfg.compress.source_model
    if uri:
        if not tracking.ModelRef.is_registry_uri(uri):
            raise CompressionError(
                f"{uri!r}: compress registers its versions beside the original, so it needs a registered version "
                "(models:/<name>/<version>, /latest or @<alias>), not a folder or run URI."
            )
        return tracking.version_uri(uri)
    prefix = cfg.tracking.model_prefix
    for name in (f"{prefix}-policy", f"{prefix}-sft"):
        found = tracking.latest_uncompressed(name)
        if found:
            return found
    raise FileNotFoundError(
        f"No {prefix}-policy or {prefix}-sft version to compress: run alignops sft (and ppo or dpo) first, "
        "or pass --model models:/<name>/<version>."
    )


def load_source(cfg: PipelineConfig, model: str | None = None) -> Source:
    """The version to compress (source_uri), loaded; refused unless it is an uncompressed causal LM."""
    uri = source_uri(cfg, model)
    folder = tracking.resolve_model(uri)
    original = load_model(folder)
    if original.meta.kind != "causal_lm":
        raise CompressionError(f"{uri} is a {original.meta.kind} model; compress works on causal LMs.")
    if original.meta.quantization is not None:
        raise CompressionError(f"{uri} is already int8; compress its fp32 original ({original.meta.parent}).")
    return Source(uri, tracking.ModelRef.parse(uri).name, folder, original)


def compress_by(
    cfg: PipelineConfig, src: Source, methods: dict[str, Method], stage: str, parent_run_id: str | None
) -> CompressResult:
    """One parent run `stage`: the original measured, then each method's version made, registered and measured
    (each in its nested run); the trade-off table logged as compression.json and compression.md."""
    bench = Bench.build(cfg, src.model)
    with tracking.stage_run(stage, cfg, cfg.compress, parent_run_id) as parent:
        parent.set_tags({tracking.PARENT_MODEL_TAG: src.uri})
        base = bench.measure_original(src.model.gpt, src.folder)
        parent.log_metrics(base.metrics("compress/original/"))
        versions = []
        for name, method in methods.items():
            version = method(cfg, src, bench, parent.run_id)
            versions.append(version)
            parent.log_metrics(version.figures.metrics(f"compress/{name}/"))
        result = CompressResult(parent.run_id, src.uri, base, versions)
        parent.log_dict({"rows": result.rows()}, "compression.json")
        parent.log_text(result.table() + "\n", "compression.md")
        return result


def version_meta(src: Source, tag: str, data_version: str | None, quantization: str | None = None) -> ModelMeta:
    """alignops.json of a compressed version: the original as parent, its tokenizer, the compression tag."""
    return ModelMeta(
        kind="causal_lm",
        stage="compress",
        data_version=data_version,
        tokenizer_sha256=src.model.meta.tokenizer_sha256,
        parent=src.uri,
        quantization=quantization,
        extra={"compression": tag, "source_stage": src.model.meta.stage},
        format=src.model.meta.format,
    )


def require_gpt(src: Source, method: str) -> None:
    """Refuse a method that builds a new project GPT (distillation's narrower student) from another base."""
    if src.model.meta.format == HF_FORMAT:
        raise CompressionError(
            f"{src.uri} is a Hugging Face model ({HF_FORMAT}); {method} works on alignops GPT models only. "
            "Compress it with --method int8 or --method prune."
        )


def version_tags(src: Source, tag: str) -> dict[str, str]:
    """The registry tags a compressed version carries beside the stage's lineage."""
    return {tracking.COMPRESSION_TAG: tag, tracking.TOKENIZER_HASH_TAG: (src.model.meta.tokenizer_sha256 or "")[:12]}


def register_version(cfg: PipelineConfig, stage, method: str, gpt, src: Source, meta: ModelMeta, bench: Bench,
                     metrics: dict[str, float]) -> Compressed:  # fmt: skip
    """Save the folder, measure it against the original, register it beside the original with its lineage."""
    from alignops import settings

    tag = meta.extra["compression"]
    require_finite(f"compress {method}", {"model": gpt}, metrics)  # before anything is written or registered
    folder = settings.home() / "stages" / f"compress-{stage.run_id}" / "model"
    tokenizer = src.model.tokenizer if meta.format == HF_FORMAT else src.folder / TOKENIZER_FILE
    model_dir = save_model(folder, gpt, tokenizer, meta)
    figures = bench.measure(gpt, model_dir)
    stage.log_metrics(metrics | figures.metrics("compress/") | deltas(figures, bench.original))
    stage.set_tags({tracking.COMPRESSION_TAG: tag, tracking.PARENT_MODEL_TAG: src.uri})
    lineage = tracking.lineage_tags("compress", cfg, cfg.compress) | version_tags(src, tag)
    uri, version = tracking.register_model(model_dir, src.registered, lineage, src.uri)
    return Compressed(method, tag, uri, version, stage.run_id, model_dir, figures, metrics)
