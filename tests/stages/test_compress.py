"""`alignops compress` on the tiny SFT model with a real MLflow store: int8, pruned and distilled versions are
registered beside the original with the compression tag and lineage, load back from the registry (int8 included,
as MLflow serves it), generate, and carry figures measured against the original."""

from __future__ import annotations

import mlflow
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from alignops import tracking
from alignops.artifacts import INT8_FILE, load_model
from alignops.cli import app
from alignops.config import PipelineConfig
from alignops.inference import Generator, decoding
from alignops.stages import compress, pretrain, sft
from models.compression import is_quantized, prunable


def test_compress_the_sft_model(built: PipelineConfig, tiny_overrides: list[str]) -> None:
    pretrain.run(built)
    sft.run(built)
    # a student narrower than its teacher starts from random weights, so its KL to the teacher has room to fall
    distill = built.compress.distill.model_copy(update={"width": 16, "heads": 2})
    cfg = built.model_copy(update={"compress": built.compress.model_copy(update={"distill": distill})})
    result = compress.run(cfg)

    assert result.source_uri == "models:/alignops-sft/1"  # no policy: the newest SFT version
    by_method = {v.method: v for v in result.versions}
    assert [v.tag for v in result.versions] == ["int8", "pruned-0.5", "distilled"]
    assert [v.model_uri for v in result.versions] == [f"models:/alignops-sft/{n}" for n in (2, 3, 4)]
    client = mlflow.MlflowClient(tracking.tracking_uri())
    for v in result.versions:
        tags = client.get_model_version("alignops-sft", v.version).tags
        assert tags["alignops.compression"] == v.tag
        assert tags["alignops.parent_model"] == "models:/alignops-sft/1"
        assert tags["alignops.stage"] == "compress"
        assert tags["alignops.data_version"].endswith(".dir") and tags["alignops.git_commit"]
        assert load_model(v.model_dir).meta.parent == "models:/alignops-sft/1"
    # compressed versions never count as the newest uncompressed one, which the next compress would pick
    assert tracking.latest_uncompressed("alignops-sft") == "models:/alignops-sft/1"

    original = load_model(tracking.resolve_model("models:/alignops-sft/1"))
    ids = torch.randint(original.gpt.config.vocab_size, (4, 48), generator=torch.Generator().manual_seed(0))

    # int8: its own storage format, loaded back from the registry, close to fp32, and served by MLflow
    int8_dir = tracking.resolve_model(by_method["int8"].model_uri)
    assert (int8_dir / INT8_FILE).is_file() and not (int8_dir / "model.safetensors").exists()
    int8 = load_model(int8_dir)
    assert int8.meta.quantization == "int8-dynamic" and is_quantized(int8.gpt)
    with torch.no_grad():
        exact, approx = original.gpt(ids), int8.gpt(ids)
    assert ((approx - exact).norm() / exact.norm()).item() < 0.02  # tolerance: 2% relative; measured ~0.8%
    kl = F.kl_div(approx.log_softmax(-1), exact.log_softmax(-1), log_target=True, reduction="none").sum(-1)
    assert kl.mean().item() < 1e-3
    generator = Generator.from_dir(int8_dir)
    assert generator.device.type == "cpu"
    assert all(isinstance(c, str) for c in generator.complete(["Say hi", "Hello"], decoding(max_new_tokens=6)))
    served = mlflow.pyfunc.load_model(by_method["int8"].model_uri)
    assert len(served.predict(["Say hi"], params={"max_new_tokens": 4})) == 1

    # pruned: exactly half of every block matrix is zero, stored as a normal model, and it still generates
    pruned = load_model(tracking.resolve_model(by_method["prune"].model_uri))
    for name, weight in prunable(pruned.gpt).items():
        assert int((weight == 0).sum()) == round(0.5 * weight.numel()), name
    assert by_method["prune"].metrics["prune/sparsity_min"] == by_method["prune"].metrics["prune/sparsity_max"] == 0.5
    assert Generator(pruned.gpt, pruned.tokenizer).complete(["Say hi"], decoding(max_new_tokens=6))

    # distilled: smaller, and its loss and KL to the teacher fell
    d = by_method["distill"].metrics
    assert d["distill/val_kl"] < d["distill/val_kl_start"] and d["distill/val_loss"] < d["distill/val_loss_start"]
    student = load_model(tracking.resolve_model(by_method["distill"].model_uri)).gpt
    assert (student.config.n_layer, student.config.n_embd) == (1, 16)
    assert Generator(student, original.tokenizer).complete(["Say hi"], decoding(max_new_tokens=6))

    # the figures against the original
    o, q, p, s = result.original, by_method["int8"].figures, by_method["prune"].figures, by_method["distill"].figures
    assert o.agreement == o.exact_match == 1.0
    assert q.size_mb < o.size_mb and s.size_mb < o.size_mb and p.size_mb == o.size_mb
    assert p.gzip_mb < o.gzip_mb  # the zeros compress
    assert q.params == p.params == o.params and s.params < o.params
    assert p.nonzero_share < o.nonzero_share - 0.2
    assert abs(q.test_loss - o.test_loss) < 0.05 and q.agreement > 0.9
    assert all(f.tokens_per_s > 0 and 0 <= f.agreement <= 1 for f in (o, q, p, s))
    metrics = client.get_run(by_method["int8"].run_id).data.metrics
    assert metrics["compress/size_ratio"] == q.size_mb / o.size_mb
    assert "compress/speedup" in metrics and "compress/test_loss_delta" in metrics
    table = mlflow.artifacts.load_text(f"runs:/{result.run_id}/compression.md")
    assert table == result.table() + "\n" and "pruned-0.5" in table and "models:/alignops-sft/4" in table

    # the command: a bad model URI is a usage error; a good one prints the table and evaluates the new version
    overrides = [f"data.cache_dir={built.data.cache_dir}", *tiny_overrides]
    args = ["compress", "-p", "tiny", "--model", "models:/alignops-sft@nope", "--method", "int8"]
    result = CliRunner().invoke(app, [*args, *[a for o in overrides for a in ("--set", o)]])
    assert result.exit_code == 2 and "no version of 'alignops-sft' has the alias 'nope'" in result.output

    args = ["compress", "-p", "tiny", "--method", "int8"]
    result = CliRunner().invoke(app, [*args, *[a for o in overrides for a in ("--set", o)]])
    assert result.exit_code == 0, result.output
    assert "| original | models:/alignops-sft/1 |" in result.output  # the newest uncompressed SFT version
    assert "| int8 | models:/alignops-sft/5 |" in result.output
    assert "evaluated models:/alignops-sft/5" in result.output
    assert tracking.evaluation_of("models:/alignops-sft/5") is not None


def test_a_hugging_face_base_is_evaluated_and_compressed(built: PipelineConfig, tmp_path) -> None:
    """A tiny random Llama imported as a base (alignops model import) runs through evaluate, against another
    imported Llama, and compress: perplexity equal to transformers' own, judged win rates with their counts,
    samples; an int8 version registered beside it that loads back from the registry, is served by MLflow and is
    evaluated against its fp32 parent (KL); a pruned version that transformers loads."""
    _evaluate_and_compress(built, tmp_path, "llama")


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["qwen2", "gpt2"])
def test_other_hugging_face_shapes_are_evaluated_and_compressed(built: PipelineConfig, tmp_path, shape: str) -> None:
    """The same on a Qwen2 and a GPT-2 shape (GPT-2's Conv1D projections stay fp32: only its lm_head is int8)."""
    _evaluate_and_compress(built, tmp_path, shape)


def _evaluate_and_compress(built: PipelineConfig, tmp_path, shape: str) -> None:
    import json
    import math

    from transformers import AutoModelForCausalLM

    from alignops.base_models import import_base
    from alignops.data import datasets
    from alignops.evaluation.compression import CompressionError
    from alignops.evaluation.scoring import corpus_ids, scored_blocks
    from alignops.stages import evaluate
    from models.base import HFCausalLM
    from tests.support.hf_models import save_folder, tiny_model, tiny_tokenizer

    folder = save_folder(tiny_model(shape), tmp_path / f"Tiny-{shape}")
    base = import_base(folder).uri
    other = import_base(save_folder(tiny_model(shape, seed=1), tmp_path / f"Other-{shape}")).uri
    cfg = built.model_copy(update={"evaluate": built.evaluate.model_copy(update={"baseline": other})})

    r = evaluate.run(cfg, model_uri=base)
    m = r.metrics
    assert r.model_uri == base == f"models:/tiny-{shape}-base/1" and r.baseline_uri == other
    # perplexity: transformers' own logits on the same blocks of the held-out corpus, in the base's tokenizer
    hf = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True).eval()
    texts = [t["text"] for t in datasets.load_split(cfg.data.data_dir, "corpus", "test")]
    blocks = scored_blocks(corpus_ids(tiny_tokenizer(), texts), 64, cfg.evaluate.max_lm_tokens)
    with torch.no_grad():
        logits = hf(blocks).logits[:, :-1]
    expected = F.cross_entropy(logits.flatten(0, 1), blocks[:, 1:].flatten()).item()
    assert m["eval/loss"] == pytest.approx(expected, rel=1e-4) and m["eval/lm_tokens"] == blocks[:, 1:].numel()
    assert math.isclose(m["eval/ppl"], math.exp(m["eval/loss"]), rel_tol=1e-9)
    assert m["eval/instruct_loss"] > 0 and "eval/f1" in m and "eval/kl" not in m  # no parent: no KL reference
    # judged win rates against the other model: every judged prompt a win, a loss or a tie
    judged = m["eval/judged_prompts"]
    assert judged > 0 and sum(m[f"eval/win_rate_judge_{k}"] for k in ("wins", "losses", "ties")) == judged
    samples = [json.loads(line) for line in r.samples_path.read_text(encoding="utf-8").splitlines()]
    assert len(samples) == m["eval/prompts"] and all(s["baseline_uri"] == other for s in samples)
    assert all(isinstance(s["completion"], str) and 0 < s["length"] <= cfg.evaluate.max_new_tokens for s in samples)
    assert tracking.evaluation_of(base) is not None

    with pytest.raises(CompressionError, match="Hugging Face model.*--method int8 or --method prune"):
        compress.run(cfg, model=base, methods=["int8", "distill"])
    result = compress.run(cfg, model=base, methods=["int8", "prune"])
    version, pruned = result.versions
    assert version.model_uri == f"models:/tiny-{shape}-base/2" and version.tag == "int8"
    int8_dir = tracking.resolve_model(version.model_uri)
    assert (int8_dir / INT8_FILE).is_file() and not (int8_dir / "model.safetensors").exists()
    loaded = load_model(int8_dir)
    assert isinstance(loaded.gpt, HFCausalLM) and is_quantized(loaded.gpt) and loaded.meta.format == "transformers"
    ids = torch.randint(loaded.gpt.vocab_size, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exact, approx = hf(ids).logits, loaded.gpt(ids)
    assert ((approx - exact).norm() / exact.norm()).item() < 0.05  # int8 rounding only
    q, o = version.figures, result.original
    assert q.params == o.params and abs(q.test_loss - o.test_loss) < 0.01
    assert q.agreement > 0.5 and q.tokens_per_s > 0
    if shape != "gpt2":  # every Linear int8 (lm_head too), the fp32 embeddings left: 0.56x at this tiny width
        assert q.size_mb < 0.6 * o.size_mb
    served = mlflow.pyfunc.load_model(version.model_uri)
    assert len(served.predict(["What is the capital of France?"], params={"max_new_tokens": 4})) == 1

    # pruned: half of every backbone matrix zero, stored as a plain Hugging Face folder that transformers loads
    assert pruned.model_uri == f"models:/tiny-{shape}-base/3" and pruned.tag == "pruned-0.5"
    pruned_dir = tracking.resolve_model(pruned.model_uri)
    matrices = prunable(load_model(pruned_dir).gpt)
    assert matrices and all(int((w == 0).sum()) == round(0.5 * w.numel()) for w in matrices.values())
    plain = AutoModelForCausalLM.from_pretrained(str(pruned_dir), local_files_only=True)
    assert pruned.figures.nonzero_share < o.nonzero_share - 0.2 and plain.config.model_type == hf.config.model_type

    # the int8 version evaluated like any: its KL to the fp32 parent it was made from is small, not absent
    e = evaluate.run(cfg, model_uri=version.model_uri).metrics
    assert 0 <= e["eval/kl"] < 0.05 and abs(e["eval/loss"] - m["eval/loss"]) < 0.01
