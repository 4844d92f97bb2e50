"""Typed configuration: one pydantic model per stage, one pipeline model on top, YAML presets under configs/.

    cfg = load_config("tiny", ["tokenizer.vocab_size=1024"])

Unknown keys fail (`extra="forbid"`), so a typo in a preset or an override is an error, not a silent default.
Every field carries a one-line description; `alignops config show` prints the resolved config.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alignops.errors import ConfigError  # noqa: F401  (raised here; imported from here by the stages)
from models.ppo.config import PPOConfig


class _Config(BaseModel):
    # allow_inf_nan=False: `gt=0` admits infinity, and one inf learning rate trains a NaN model
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DataConfig(_Config):
    """How `alignops data build` turns the pinned source packages into the versioned datasets.

    Changing any field here changes the bytes of data/ and so the data version in data.dvc.
    """

    data_dir: Path = Field(Path("data"), description="Folder of the built datasets, tracked by DVC (data.dvc).")
    cache_dir: Path | None = Field(
        None, description="Downloaded and unpacked source packages; default ALIGNOPS_HOME/cache."
    )
    val_fraction: float = Field(0.05, gt=0, lt=0.5, description="Share of each set in the val split.")
    test_fraction: float = Field(0.05, gt=0, lt=0.5, description="Share of each set in the test split.")
    split_salt: str = Field("alignops-v1", description="Salt of the content hash that assigns splits.")
    min_chars: int = Field(8, ge=1, description="Texts shorter than this after cleaning are dropped.")
    chunk_chars: int = Field(1500, ge=100, description="Long passages are cut at paragraph ends below this.")
    near_dup_threshold: float = Field(
        0.8, gt=0, le=1, description="Estimated Jaccard similarity above which two texts are near-duplicates."
    )
    minhash_perms: int = Field(64, ge=16, description="MinHash permutations (more: slower, more exact).")
    shingle_chars: int = Field(5, ge=2, description="Character n-gram size of the MinHash shingles.")
    ranking_k: int = Field(4, ge=2, description="Responses per VADER-derived ranking.")
    tie_margin: float = Field(
        0.5, ge=0, description="Mean human ratings closer than this (on -4..4) are ranked as a tie."
    )
    sentiment_threshold: float = Field(
        0.5, gt=0, description="VADER texts with |mean rating| below this are unlabeled for classification."
    )
    derived_sft_per_task: int = Field(
        2000, ge=0, description="Cap on template-derived SFT examples per template and language."
    )
    max_eval_prompts: int = Field(300, ge=1, description="Size cap of the fixed evaluation prompt set.")
    # The recipe: the build's pinned sources (sources.SOURCES), the imports in data/imports/manifest.json (kept
    # under DVC, re-applied on every build, never refetched) and the dashboard's labels (`alignops feedback`).
    replay_imports: bool = Field(
        True, description="`data build` re-applies the imports of data/imports/manifest.json onto the built sets."
    )
    mix: str = Field(
        "",
        pattern=r"^([^=,]+=(0(\.\d+)?|1(\.0+)?)(,[^=,]+=(0(\.\d+)?|1(\.0+)?))*)?$",
        description="Mixing weights of any source, built, imported or 'dashboard' (labels), e.g. 'vader=0.5,"
        "import/chats=1,dashboard=0.8': that share in [0, 1] of a source's (or source family's) train records is "
        "kept, chosen by content hash; a source not named keeps all.",
    )
    import_max_record_bytes: int = Field(
        1_000_000, ge=1024, description="An imported record larger than this (UTF-8 JSON bytes) is refused."
    )

    def mix_weights(self) -> dict[str, float]:
        """`mix` as {source: weight}."""
        pairs = (item.rsplit("=", 1) for item in self.mix.split(",") if item)
        return {name.strip(): float(weight) for name, weight in pairs}


class ValidationConfig(_Config):
    """Bounds of the Great Expectations suites that every dataset must pass before a stage uses it."""

    max_duplicate_rate: float = Field(0.01, ge=0, le=1, description="Highest allowed share of duplicate texts.")
    max_text_chars: int = Field(20000, ge=1, description="Longest allowed corpus/classification text.")
    max_prompt_chars: int = Field(4000, ge=1, description="Longest allowed prompt.")
    max_response_chars: int = Field(8000, ge=1, description="Longest allowed response.")
    docs_dir: Path | None = Field(None, description="Where the GX data docs HTML goes; default ALIGNOPS_HOME/gx-docs.")


SPECIAL_TOKENS = ("<|endoftext|>", "<|pad|>", "<|user|>", "<|assistant|>")


class TokenizerConfig(_Config):
    """The byte-level BPE tokenizer trained on the corpus train split."""

    vocab_size: int = Field(8192, ge=len(SPECIAL_TOKENS) + 256, description="Vocabulary size, bytes included.")
    min_frequency: int = Field(2, ge=1, description="A pair must occur this often to be merged.")
    output_dir: Path | None = Field(None, description="Where tokenizer.json goes; default ALIGNOPS_HOME/tokenizer.")


class ModelConfig(_Config):
    """Shape of the GPT (models/gpt.py). The vocabulary size comes from the trained tokenizer."""

    n_layer: int = Field(6, ge=1, description="Transformer blocks.")
    n_head: int = Field(6, ge=1, description="Attention heads per block; must divide n_embd.")
    n_embd: int = Field(384, ge=8, description="Width of the residual stream.")
    block_size: int = Field(256, ge=8, description="Context length in tokens.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout on attention, MLP and embeddings.")
    bias: bool = Field(True, description="Biases in Linear and LayerNorm layers, as GPT-2 has.")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.n_embd % self.n_head:
            raise ValueError(
                f"n_head {self.n_head} does not divide n_embd {self.n_embd}: each head gets n_embd / n_head "
                f"channels; choose n_head among {[h for h in range(1, self.n_embd + 1) if self.n_embd % h == 0][:12]}"
            )
        return self


ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")  # Lightning's names for the devices alignops trains on
AUTO_PRECISION = "auto"  # alignops.precision.AUTO: decided by the hardware
PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true", "transformer-engine")


def check_precision(value: str | None) -> str | None:
    """`value` if it is a precision alignops runs at (None, 'auto' or one of PRECISIONS); else a ValueError that
    names them. trainer.precision and the --precision options of `alignops generate` and `alignops serve`."""
    if value not in (None, AUTO_PRECISION) and value not in PRECISIONS:
        raise ValueError(f"precision {value!r} is not one of {AUTO_PRECISION}, {', '.join(PRECISIONS)}")
    return value


class TrainerConfig(_Config):
    """Where and how Lightning trains: the same stage code on a laptop CPU and on many GPUs."""

    accelerator: str = Field("auto", description="'auto' (GPU when present), 'cpu', 'gpu', ...")
    devices: int | str = Field("auto", description="Devices per node: a count, 'auto', or a list string.")
    num_nodes: int = Field(1, ge=1, description="Machines for multi-node training.")
    strategy: str = Field("auto", description="'auto', 'ddp', 'fsdp', 'deepspeed_stage_2', ...")
    precision: str | None = Field(
        None,
        description="Lightning precision; None or 'auto' picks bf16-mixed on a GPU or CPU with native bf16 "
        "(alignops.precision), else 32-true. Evaluation and sampling outside Lightning run at the same precision "
        "(bf16 or fp16 autocast, else fp32).",
    )
    compile: bool = Field(False, description="torch.compile the model (faster steps on GPU after warm-up).")
    log_every_n_steps: int = Field(10, ge=1, description="How often training metrics go to MLflow.")

    @model_validator(mode="after")
    def _known_values(self) -> TrainerConfig:
        if self.accelerator not in ACCELERATORS:
            raise ValueError(f"accelerator {self.accelerator!r} is not one of {', '.join(ACCELERATORS)}")
        check_precision(self.precision)
        return self


SOURCES_HELP = "Only records whose source starts with one of these (e.g. vadersentiment/); None: every source."


class OptimConfig(_Config):
    """The optimizer, its learning-rate schedule and the weight penalties; models.optim.build makes them. Every
    training stage's section holds these fields (TrainConfig extends this) and passes them whole to its module."""

    optimizer: Literal["adamw", "adam", "sgd", "adagrad"] = Field(
        "adamw", description="adamw, adam, sgd (with momentum) or adagrad."
    )
    lr: float = Field(6e-4, gt=0, description="Peak learning rate, reached after the warm-up.")
    weight_decay: float = Field(
        0.1, ge=0, description="Decay of matrices (not biases/norms): decoupled for adamw, an L2 gradient term else."
    )
    beta1: float = Field(0.9, gt=0, lt=1, description="Adam/AdamW beta1.")
    beta2: float = Field(0.95, gt=0, lt=1, description="Adam/AdamW beta2.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    schedule: Literal["cosine", "linear", "constant"] = Field(
        "cosine", description="After the warm-up: cosine or linear decay to lr * min_lr_ratio, or constant."
    )
    warmup_steps: int = Field(100, ge=0, description="Linear warm-up steps before the schedule.")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="The decaying schedules end at lr * min_lr_ratio.")
    l1: float = Field(0.0, ge=0, description="L1 penalty l1 * sum|w| over the matrices, added to the loss.")
    l2: float = Field(0.0, ge=0, description="L2 penalty l2 * sum w^2 over the matrices, added to the loss.")


class LoraConfig(_Config):
    """LoRA (low-rank adapters, the peft library) for a training stage: only the adapters train; the published
    model is merged (models/lora.py). The `lora` field of each stage section that fine-tunes a base (sft, classify,
    reward, dpo, ppo); None there means full fine-tuning."""

    r: int = Field(8, ge=1, description="Rank of each adapter pair (A: d_in x r, B: r x d_out).")
    alpha: float = Field(16.0, gt=0, description="Scale: the update is (alpha / r) * B @ A.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the adapter's input while training.")
    target_modules: list[str] | None = Field(
        None,
        description="Names of the Linear layers that get adapters; None: c_attn/c_proj/c_fc on the project's GPT, "
        "every Linear but the LM head on a Hugging Face model.",
    )


LORA_HELP = "LoRA adapters: only they train, merged into the published model; None: full fine-tuning."


class TrainConfig(OptimConfig):
    """Optimisation settings shared by the training stages."""

    max_steps: int = Field(2000, ge=1, description="Optimizer steps.")
    batch_size: int = Field(12, ge=1, description="Sequences per device per micro-batch.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    grad_clip: float = Field(1.0, ge=0, description="Gradient norm clip (0 disables).")
    val_every_n_steps: int = Field(200, ge=1, description="Validation interval in optimizer steps.")
    val_batches: int = Field(50, ge=1, description="Validation batches per evaluation (the first N, fixed).")
    checkpoint_every_n_steps: int = Field(200, ge=1, description="Checkpoint interval; a kill loses at most this.")
    early_stopping_metric: str | None = Field(
        None,
        description="Stop when this validation metric (e.g. val/loss) stops improving and publish the best "
        "checkpoint, not the last; None: train max_steps and publish the last.",
    )
    early_stopping_mode: Literal["min", "max"] = Field("min", description="min: lower is better (loss); max: f1.")
    early_stopping_patience: int = Field(3, ge=1, description="Validations without improvement before stopping.")


class PretrainConfig(TrainConfig):
    """Next-token prediction on the packed corpus."""

    max_train_docs: int | None = Field(None, ge=1, description="Use only the first N corpus train texts (CI).")


class SFTConfig(TrainConfig):
    """Supervised fine-tuning on prompt/response pairs; loss on the response tokens only."""

    base_model: str | None = Field(
        None, description="Model URI to start from; default the latest <prefix>-base version."
    )
    max_len: int | None = Field(None, ge=8, description="Longest sequence; default the model's block_size.")
    max_train_examples: int | None = Field(None, ge=1, description="Use only the first N sft train pairs (CI).")
    sample_prompts: int = Field(4, ge=0, description="Eval prompts whose generations are logged after training.")
    packing: bool = Field(
        False,
        description="Pack train pairs into rows of max_len tokens (best-fit decreasing), each pair attending to "
        "itself only: little padding; batch_size then counts rows. Validation stays unpacked.",
    )
    lora: LoraConfig | None = Field(None, description=LORA_HELP)


class ClassifyConfig(TrainConfig):
    """Classification fine-tuning: the LM head swapped for a class head on the last token."""

    base_model: str | None = Field(
        None, description="Model URI to start from; default the latest <prefix>-base version."
    )
    lang: str | None = Field(None, description="Train on 'en' or 'zh' examples only; None: both.")
    max_len: int = Field(128, ge=8, description="Longest text in tokens (its start is kept).")
    max_train_examples: int | None = Field(None, ge=1, description="Use only the first N train examples (CI).")
    lora: LoraConfig | None = Field(None, description=LORA_HELP)


class NerConfig(TrainConfig):
    """Named-entity recognition: a per-token tag head fine-tuned on the People's Daily `ner` set."""

    backbone: Literal["gpt", "minilm"] = Field(
        "gpt", description="'gpt': the own GPT (base_model); 'minilm': the pretrained MiniLM encoder (pinned wheel)."
    )
    base_model: str | None = Field(
        None, description="GPT model URI to start from (backbone 'gpt'); default the latest <prefix>-base."
    )
    max_len: int = Field(128, ge=8, description="Longest sentence in tokens (its start is kept; the rest tagged O).")
    max_train_examples: int | None = Field(None, ge=1, description="Use only N ner train sentences (CI).")
    max_test_examples: int | None = Field(None, ge=1, description="Score entities on N test sentences; None: all.")
    baseline_train_examples: int = Field(
        4000, ge=1, description="Train sentences of the TF-IDF + logistic-regression character-window baseline."
    )
    baseline_window: int = Field(2, ge=0, description="Characters each side the baseline sees.")


class RewardConfig(TrainConfig):
    """Reward model from ranked responses: pairwise Bradley-Terry loss over every ordered pair of a ranking."""

    sources: list[str] | None = Field(None, description=SOURCES_HELP)
    base_model: str | None = Field(
        None, description="Model URI to start from; default the latest <prefix>-sft version."
    )
    max_len: int | None = Field(None, ge=8, description="Longest prompt+response; default the model's block_size.")
    empty_negatives: bool = Field(
        False,
        description="Train on each ranking's lowest-ranked response preferred to an empty reply (weight 1): the gate's "
        "emptiness check, learned.",
    )
    max_train_rankings: int | None = Field(None, ge=1, description="Use only N train rankings (CI).")
    max_eval_rankings: int | None = Field(
        None, ge=1, description="Use only N val and N test rankings, taken evenly across the file (large bases on CPU)."
    )
    weight_by_agreement: bool = Field(
        True, description="Weight each pair by the human agreement recorded with its ranking (1 when unknown)."
    )
    margin: float = Field(0.0, ge=0, description="Margin in the Bradley-Terry loss: r_chosen - r_rejected - margin.")
    center_coef: float = Field(0.01, ge=0, description="Pulls mean reward to 0 (the loss sees only differences).")
    min_accuracy: float = Field(
        0.55, ge=0, le=1, description="Quality gate: PPO refuses a reward model below this held-out pair accuracy."
    )
    max_abs_length_corr: float = Field(
        0.3, ge=0, le=1, description="Quality gate: refuse a model whose |corr(score, response length)| is above it."
    )
    batch_by_ranking: bool = Field(
        True, description="A batch holds batch_size whole rankings with all their pairs (InstructGPT)."
    )
    early_stopping_metric: str | None = Field(
        "val/loss", description="Early stopping on this validation metric; the best checkpoint is the one published."
    )
    bias_checks: bool = Field(
        True,
        description="Quality gate: refuse length-biased or silence-preferring models, including one that does not beat "
        "'the longer response wins' (off: knowingly, CI).",
    )
    lora: LoraConfig | None = Field(None, description=LORA_HELP)


class DPOConfig(TrainConfig):
    """Direct Preference Optimization on the same pairs, with the SFT model as the frozen reference."""

    base_model: str | None = Field(None, description="Model URI to start from; default the latest <prefix>-sft.")
    beta: float = Field(0.1, gt=0, description="Strength of the implicit KL to the reference (DPO's beta).")
    label_smoothing: float = Field(0.0, ge=0, lt=0.5, description="Conservative DPO: assumed label-noise rate.")
    max_len: int | None = Field(None, ge=8, description="Longest prompt+response; default the model's block_size.")
    sources: list[str] | None = Field(None, description=SOURCES_HELP)
    max_train_rankings: int | None = Field(None, ge=1, description="Use only N train rankings (CI).")
    max_eval_rankings: int | None = Field(
        None, ge=1, description="Use only N val and N test rankings, taken evenly across the file (large bases on CPU)."
    )
    weight_by_agreement: bool = Field(True, description="Weight each pair by its ranking's human agreement.")
    lora: LoraConfig | None = Field(None, description=LORA_HELP)


class PPOStageConfig(PPOConfig, _Config):
    """RL against the reward model (or a reward function) with a per-token KL penalty to the frozen SFT reference
    (InstructGPT): PPO, GRPO or RLOO. The algorithm's fields are models.ppo.config.PPOConfig's, inherited; the
    stage adds the models, the run's length and the health bounds."""

    base_model: str | None = Field(
        None, description="Policy's start and the KL reference; default latest <prefix>-sft."
    )
    reward_model: str | None = Field(None, description="Reward model URI; default the latest <prefix>-reward.")
    reward_function: str | None = Field(
        None,
        pattern=r"^[\w.]+:\w+$",
        description="module:function scoring (prompts, responses) -> floats; replaces the reward model when set.",
    )
    iterations: int = Field(20, ge=1, description="PPO iterations (rollout + update) to run.")
    checkpoint_every_n_iterations: int = Field(5, ge=1, description="Checkpoint interval (the rollback points).")
    max_kl: float = Field(20.0, gt=0, description="Health: sequence KL above this stops the run and rolls back.")
    max_approx_kl: float = Field(0.5, gt=0, description="Health: approx-KL of one update above this stops the run.")
    min_response_length: float = Field(1.0, ge=0, description="Health: mean response length below this stops it.")
    min_length_fraction: float = Field(
        0.5, ge=0, description="Health: mean length below this fraction of the SFT policy's stops the run."
    )
    eval_samples: int = Field(64, ge=1, description="Held-out prompts sampled to measure the reward gain.")
    sources: list[str] | None = Field(None, description=SOURCES_HELP)
    lora: LoraConfig | None = Field(None, description=LORA_HELP)


class FeedbackConfig(_Config):
    """The human-feedback loop: dashboard rankings -> rankings dataset -> reward model -> PPO -> gate."""

    min_new_labels: int = Field(
        20, ge=1, description="The feedback flow retrains only when at least this many new rankings arrived."
    )
    overlap: int = Field(
        2, ge=1, description="Rank offers each prompt to this many labelers before new prompts (agreement needs 2)."
    )


class EvaluateConfig(_Config):
    """`alignops evaluate`: language modelling, task metrics, alignment against a baseline, human ratings."""

    model: str | None = Field(None, description="Model URI to evaluate; default the latest <prefix>-policy version.")
    reward_model: str | None = Field(
        None, description="Reward model that scores responses; default the latest <prefix>-reward (none: skipped)."
    )
    baseline: str | None = Field(
        None,
        description="Model compared in win rates; default <model's name>@champion unless that is the model itself, "
        "else the model's parent.",
    )
    max_lm_tokens: int = Field(
        20000, ge=1, description="Corpus test tokens for validation loss and perplexity (token-weighted)."
    )
    max_classification_examples: int = Field(
        500, ge=1, description="Held-out classification examples scored (taken evenly across the set)."
    )
    max_instruction_examples: int = Field(300, ge=1, description="Held-out instruction (sft test) examples scored.")
    max_eval_prompts: int = Field(300, ge=1, description="Fixed eval prompts answered by the model and the baseline.")
    max_rankings: int = Field(300, ge=1, description="Held-out rankings whose responses a reward model is scored on.")
    max_new_tokens: int = Field(48, ge=1, description="Response length cap on the eval prompts.")
    answer_tokens: int = Field(8, ge=1, description="Tokens a generative model gets to answer a classification.")
    batch_size: int = Field(16, ge=1, description="Sequences per forward pass.")


class FewShotConfig(_Config):
    """`alignops fewshot`: in-context classification of the held-out sentiment set by a causal LM, k solved train
    examples in the prompt and no fine-tuning (alignops.evaluation.fewshot)."""

    model: str | None = Field(None, description="Model URI; default the latest <prefix>-base version.")
    shots: list[Annotated[int, Field(ge=0)]] = Field(
        [0, 1, 4, 8], min_length=1, description="The k's: solved examples shown before each question."
    )
    max_examples: int = Field(200, ge=1, description="Held-out classification examples (taken evenly).")


class PromotionConfig(_Config):
    """`alignops promote`: the gate a challenger's evaluation passes, against the champion's, to become champion."""

    max_ppl_increase: float = Field(
        0.05, ge=0, description="Largest allowed perplexity rise over the champion's, relative (0.05: 5 %)."
    )
    max_f1_drop: float = Field(0.02, ge=0, le=1, description="Largest allowed macro-F1 drop below the champion's.")
    min_judge_win_rate: float = Field(
        0.5,
        ge=0,
        le=1,
        description="The independent judge's win rate against the baseline (ties excluded) must have the lower "
        "bounds of its 95% intervals (Wilson and bootstrap over prompts) at least this high.",
    )
    min_human_win_rate: float = Field(
        0.5, ge=0, le=1, description="The same bar for the win rate in human pairwise judgments."
    )
    min_decisive_comparisons: int = Field(
        30, ge=0, description="A win-rate check needs at least this many decisive (not tied) comparisons to pass."
    )
    min_human_judgments: int = Field(
        30, ge=1, description="The human check applies only from this many pairwise judgments on; below it: skipped."
    )


class DistillConfig(TrainConfig):
    """`alignops compress` distillation: a smaller student learns the compressed model's soft targets (KL at a
    temperature) and the true tokens (LM loss) on corpus blocks and SFT pairs."""

    # TrainConfig's fields, with defaults for a short run from a teacher-initialised student
    max_steps: int = Field(300, ge=1, description="Optimizer steps.")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate (AdamW).")
    warmup_steps: int = Field(20, ge=0, description="Linear warm-up steps before the cosine decay.")
    val_every_n_steps: int = Field(100, ge=1, description="Validation interval in optimizer steps.")
    layers: int | None = Field(None, ge=1, description="Student's transformer blocks; default half the teacher's.")
    width: int | None = Field(
        None,
        ge=8,
        description="Student's n_embd; default the teacher's, and then it starts from the teacher's embeddings and "
        "evenly spaced blocks (else from random weights).",
    )
    heads: int | None = Field(None, ge=1, description="Student's attention heads; default the teacher's.")
    temperature: float = Field(2.0, gt=0, description="Softens teacher and student distributions in the KL term.")
    alpha: float = Field(
        0.5, ge=0, le=1, description="Weight of the KL term; 1 - alpha weighs the LM loss on the true tokens."
    )
    max_train_docs: int | None = Field(None, ge=1, description="Corpus train texts to distill on; None: all.")
    max_train_examples: int | None = Field(None, ge=1, description="SFT train pairs to distill on; None: all.")


class CompressConfig(_Config):
    """`alignops compress`: int8, pruned and distilled versions of a causal LM, each registered under the
    original's registered model (tag alignops.compression) and measured against the original."""

    source_model: str | None = Field(
        None,
        description="Model URI to compress; default the latest uncompressed <prefix>-policy, else <prefix>-sft.",
    )
    methods: list[Literal["int8", "prune", "distill"]] = Field(
        ["int8", "prune", "distill"], description="Compressions to run; each registers one version."
    )
    sparsity: float = Field(
        0.5, gt=0, lt=1, description="Pruning: share of every block weight matrix set to zero, smallest |w| first."
    )
    distill: DistillConfig = DistillConfig()
    max_lm_tokens: int = Field(
        8192, ge=1, description="Corpus test tokens for the loss and perplexity comparison (spread over the split)."
    )
    eval_prompts: int = Field(
        16, ge=1, description="Eval prompts (test split) answered greedily by each model: agreement and tokens/s."
    )
    max_new_tokens: int = Field(32, ge=1, description="Tokens generated per eval prompt.")


class ExperimentConfig(_Config):
    """The sentiment-continuation experiment (Ziegler et al. 2019; alignops experiment sentiment): RL on the SFT
    policy against a reward model trained on English VADER rankings, with controls, judged by two lexicons."""

    sft_model: str | None = Field(
        None, description="The SFT policy every arm starts from; default latest <prefix>-sft."
    )
    reward_model: str | None = Field(
        None,
        description="A registered reward model to use instead of training one: it must come from the SFT policy, "
        "on the experiment's sources, and have passed its gate (e.g. the pipeline's, when reward.sources match).",
    )
    method: Literal["ppo", "grpo", "rloo"] = Field("ppo", description="The RL method of the main arms (one per seed).")
    second_method: Literal["ppo", "grpo", "rloo"] | None = Field(
        "grpo", description="Another method run on the first seed, compared by wall time; None: skip."
    )
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="Seeds of the main arms; --quick runs the first.")
    controls: bool = Field(True, description="Run the negated-reward and shuffled-reward control arms.")
    sources: list[str] = Field(
        ["vadersentiment/"], min_length=1, description="Sources of the reward model's rankings and the prefixes."
    )
    prompts_per_source: int = Field(100, ge=1, description="Held-out test prefixes per source (VADER's 4 subsets).")
    max_new_tokens: int = Field(24, ge=1, description="Continuation length, in training and in the measurement.")
    fixed_length: bool = Field(
        True,
        description="Every continuation exactly max_new_tokens long (EOS suppressed), in training and in the "
        "measurement, as Ziegler et al.'s: a reward model that pays for ending early cannot be gamed by length.",
    )
    simulated_labels: int = Field(
        0,
        ge=0,
        description="Train prefixes whose SFT continuations a simulated labeler ranks for the reward model "
        "(stages.simulated_labels: Ziegler et al.'s labelers ranked the policy's own samples); 0: the reward model "
        "learns from the VADER raters' rankings of human-written sentences.",
    )
    labels_per_prompt: int = Field(4, ge=2, description="Continuations ranked together per prefix (K).")
    labeler_tie_margin: float = Field(
        0.0,
        ge=0,
        description="The simulated labeler ranks continuations whose ratings lie within this of the next one as "
        "ties (the VADER raters' scale, -4 to 4), as a person who cannot tell two apart says so; a prefix whose "
        "continuations all tie is left out. Its close calls are the noise: on SmolLM2's SFT continuations, pairs "
        "it separates by under 0.5 order as VADER does 0.54-0.57 of the time, by 0.75 or more 0.70-0.90.",
    )
    temperature: float = Field(
        0.7,
        gt=0,
        description="Sampling temperature of every continuation, in training (ppo.temperature: log-probs, ratios and "
        "KL of the tempered distributions) and in the measurement. SmolLM2-135M's SFT continuations at 1.0: 8.5% of "
        "their words occur in no VADER text and 6% hold non-ASCII debris; at 0.7: 2.9% and 2.2%.",
    )
    reward: dict[str, Any] = Field(
        {},
        description="Fields of the reward section the experiment's own reward model trains with instead, e.g. "
        "{lr: 1.0e-3, max_steps: 500}: it learns from other rankings than the pipeline's.",
    )
    ppo: dict[str, Any] = Field(
        {},
        description="Fields of the ppo section every arm trains with instead, e.g. {lr: 5.0e-4, init_kl_coef: 0.2}: "
        "the experiment's short runs and its reward scale need their own. Sampling (temperature, max_new_tokens, "
        "fixed_length), method and control come from the experiment and its arms, not from here.",
    )
    second_ppo: dict[str, Any] = Field(
        {},
        description="Fields of the ppo section the second method's arm trains with over experiment.ppo's, e.g. "
        "{lr: 2.5e-4}: a group method's advantages are scaled otherwise than PPO's, so the same step size can move "
        "it further (validated like experiment.ppo).",
    )
    min_reward_agreement: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Stop before any RL unless the reward model orders pairs of SFT continuations as the judge does "
        "with a 95% lower bound above this (RL against a reward that cannot tell could not move the judge); 0: off.",
    )
    batch_size: int = Field(16, ge=1, description="Generation and scoring batch of the measurement.")
    iterations: int | None = Field(
        None, ge=1, description="RL iterations of each arm; None: ppo.iterations (sized for the pipeline's run)."
    )
    rollout_batch_size: int | None = Field(None, ge=1, description="Prompts per iteration; None: ppo's.")
    quick: dict[str, Any] = Field(
        {},
        description="Fields of this section that --quick runs with instead, e.g. {simulated_labels: 200, reward: "
        "{max_steps: 160}}: fewer labels and a shorter reward-model fit keep the one-seed variant under 30 minutes. "
        "A dict field (reward, ppo) is merged into the full run's; validated like the section.",
    )


class TrackingConfig(_Config):
    """MLflow naming. The tracking URI itself comes from MLFLOW_TRACKING_URI (default: SQLite in home)."""

    experiment: str = Field("alignops", description="MLflow experiment that holds every run.")
    model_prefix: str = Field("alignops", description="Registered models are named <prefix>-base, -sft, ...")


class StepsConfig(_Config):
    """Which steps the pipeline (flows/pipeline.py) runs: where its base model comes from, and the optional
    side steps on that base."""

    base: Literal["pretrain", "fetch", "import"] = Field(
        "pretrain",
        description="pretrain: train the tokenizer and pretrain the own GPT; fetch: a pinned pretrained model "
        "(base_source names it, as `alignops model fetch`); import: a local Hugging Face folder or .gguf "
        "(base_source is its path, as `alignops model import`).",
    )
    base_source: str | None = Field(None, description="The model name (fetch) or path (import); unused by pretrain.")
    fewshot: bool = Field(True, description="Score the base with k-shot prompts (the fewshot section) after it.")
    ner: bool = Field(True, description="Fine-tune named-entity recognition on the base (the ner section).")
    label_model: str | None = Field(
        None,
        description="A pretrained model (a name `alignops model fetch` knows) or a models:/ URI whose answers to the "
        "evaluation's prompts are queued for labeling beside the policy's: a tiny policy's labelers then always have "
        "a legible answer to rank. None: only the policy and its baseline.",
    )

    @model_validator(mode="after")
    def _source_named(self) -> StepsConfig:
        if self.base != "pretrain" and not self.base_source:
            raise ValueError(f"steps.base={self.base} needs steps.base_source: the model name (fetch) or path (import)")
        return self


class PipelineConfig(_Config):
    """Everything one pipeline run needs; a preset under configs/ is one of these in YAML."""

    name: str = Field("custom", description="Preset name, recorded on every run.")
    seed: int = Field(1337, description="Seed for everything random in training (data splits use split_salt).")
    data: DataConfig = DataConfig()
    validation: ValidationConfig = ValidationConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    model: ModelConfig = ModelConfig()
    trainer: TrainerConfig = TrainerConfig()
    pretrain: PretrainConfig = PretrainConfig()
    sft: SFTConfig = SFTConfig(max_steps=500, lr=1e-4, warmup_steps=20, val_every_n_steps=100)
    classify: ClassifyConfig = ClassifyConfig(max_steps=300, lr=1e-4, warmup_steps=20, val_every_n_steps=100)
    ner: NerConfig = NerConfig(max_steps=300, lr=1e-4, warmup_steps=20, val_every_n_steps=100)
    reward: RewardConfig = RewardConfig(
        max_steps=300, lr=1e-4, weight_decay=0.01, warmup_steps=20, val_every_n_steps=100
    )
    ppo: PPOStageConfig = PPOStageConfig()
    dpo: DPOConfig = DPOConfig(max_steps=300, lr=5e-5, weight_decay=0.0, warmup_steps=20, val_every_n_steps=100)
    feedback: FeedbackConfig = FeedbackConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    fewshot: FewShotConfig = FewShotConfig()
    promotion: PromotionConfig = PromotionConfig()
    compress: CompressConfig = CompressConfig()
    tracking: TrackingConfig = TrackingConfig()
    steps: StepsConfig = StepsConfig()
    experiment: ExperimentConfig = ExperimentConfig()


def presets_dir() -> Path:
    """configs/ of the repo, or the copy packed into the wheel as alignops/presets."""
    packed = Path(__file__).parent / "presets"
    return packed if packed.is_dir() else Path(__file__).resolve().parent.parent / "configs"


def list_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.yaml"))


def load_config(preset: str | Path = "small", overrides: list[str] | tuple[str, ...] = ()) -> PipelineConfig:
    """Load a preset by name (configs/<name>.yaml) or path, then apply `key.sub=value` overrides."""
    path = Path(preset)
    if not path.suffix:
        path = presets_dir() / f"{preset}.yaml"
    if not path.is_file():
        raise ConfigError(
            f"No preset {str(preset)!r} ({path} not found). Choose one of {list_presets()} or a YAML path."
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}. Fix the file's syntax.") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of config sections at the top level.")
    for item in overrides:
        _apply_override(raw, item)
    raw.setdefault("name", path.stem)
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(
            f"{path} (with overrides {list(overrides)}): {problems}. Fix the preset or the --set value."
        ) from exc


def _apply_override(raw: dict[str, Any], item: str) -> None:
    """`tokenizer.vocab_size=1024` -> raw["tokenizer"]["vocab_size"] = 1024 (value parsed as YAML)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"Override {item!r} is not KEY=VALUE, e.g. --set tokenizer.vocab_size=1024.")
    *parents, leaf = key.strip().split(".")
    node = raw
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"Override {item!r}: {part!r} is a value, not a section.")
    try:
        node[leaf] = yaml.safe_load(value)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"Override {item!r}: the value {value!r} is not valid YAML ({problem}). Quote a string "
            f"(--set '{key.strip()}=\"...\"') or close the list/mapping, e.g. --set '{key.strip()}=[1, 2]'."
        ) from None


def config_hash(cfg: BaseModel) -> str:
    """Short, stable digest of a config: same values, same hash, whatever the key order."""
    canonical = json.dumps(cfg.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def to_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
