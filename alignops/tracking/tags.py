"""Every `alignops.*` tag key alignops writes on MLflow runs, model versions and registered models: the registry
contract, one named constant per key. Writers and readers (stages, flows, the promotion gate, the dashboard and
its tests) all name a tag through these, so renaming one is a one-line change that every reader follows.

    from alignops import tracking
    stage.set_tags({tracking.PARENT_MODEL_TAG: start.uri})
    tracking.model_version_tags(uri)[tracking.PARENT_MODEL_TAG]
"""

from __future__ import annotations

PREFIX = "alignops."  # every key below starts with it; the dashboard lists a run's tags by it

# ---- Lineage, on every run (tracking.lineage_tags) and every registered version (tracking.register_model)
STAGE_TAG = "alignops.stage"  # "pipeline" on a parent run, else the stage: "pretrain", "evaluate", "base", ...
PRESET_TAG = "alignops.preset"  # the config preset's name
GIT_COMMIT_TAG = "alignops.git_commit"  # HEAD, with -dirty when the work tree had changes
DATA_VERSION_TAG = "alignops.data_version"  # the md5 in data.dvc of the data actually read; "none" without
CONFIG_HASH_TAG = "alignops.config_hash"  # the hash of the stage's config section
PIPELINE_CONFIG_HASH_TAG = "alignops.pipeline_config_hash"  # the hash of the whole pipeline config
TOKENIZER_HASH_TAG = "alignops.tokenizer_hash"  # the first 12 hex digits of the tokenizer file's sha256

# ---- On a registered version: where it came from
RUN_ID_TAG = "alignops.run_id"  # the run that logged it
PARENT_MODEL_TAG = "alignops.parent_model"  # the version it was trained from (models:/name/N), or "none"
REWARD_MODEL_TAG = "alignops.reward_model"  # PPO/GRPO: the reward model or rule it was trained against
METHOD_TAG = "alignops.method"  # the alignment method: "ppo", "grpo", "dpo", ...
HEALTH_TAG = "alignops.health"  # "healthy", or "stopped: <reasons>" when PPO's health checks ended it early
BACKBONE_TAG = "alignops.backbone"  # ner: the backbone the tagger was trained on
REWARD_GATE_TAG = "alignops.reward_gate"  # reward model: "passed" or "failed" on its held-out accuracy gate
PPO_STOPPED_TAG = "alignops.ppo_stopped"  # on a PPO run stopped by its health checks: iteration and reasons
COMPRESSION_TAG = "alignops.compression"  # int8 | pruned-<sparsity> | distilled; absent on uncompressed versions

# ---- Evaluation (alignops/stages/evaluate.py writes them; the promotion gate and the dashboard read them).
# A model version's evaluation is an "evaluate" run; the version points at its latest one with two tags, and the
# run names what it evaluated.
EVAL_RUN_TAG = "alignops.eval_run_id"  # on a version: its latest evaluate run
EVAL_BASELINE_TAG = "alignops.eval_baseline"  # on a version and its evaluate run: the baseline URI, or "none"
MODEL_TAG = "alignops.model"  # on an evaluate/fewshot run: the version it evaluated
MODEL_KIND_TAG = "alignops.model_kind"  # on an evaluate run: the evaluated model's kind (lm, classifier, tagger)
REFERENCE_MODEL_TAG = "alignops.reference_model"  # on an evaluate run: the KL reference, or "none"
PRECISION_TAG = "alignops.precision"  # on an evaluate or experiment run: the precision its model passes ran at

# ---- Promotion (alignops/stages/promote.py)
PROMOTION_TAG = "alignops.promotion"  # on a version: the latest decision about it
PROMOTION_RUN_TAG = "alignops.promotion_run_id"  # on a version: the promote run that decided
CHAMPION_HISTORY_TAG = "alignops.champion_history"  # on the registered model: earlier champions, newest last
CHALLENGER_TAG = "alignops.challenger"  # on a promote run: the version it judged
DECISION_TAG = "alignops.decision"  # on a promote run: passed or failed

# ---- Bases fetched or imported (alignops/base_models.py)
BASE_MODEL_TYPE_TAG = "alignops.model_type"  # on the registered model: the transformers model_type of its versions
BASE_SOURCE_TAG = "alignops.base.source"  # where the base came from
BASE_SHA256_TAG = "alignops.base.sha256"  # the pinned file's sha256: a fetched base's identity
BASE_PACKAGE_TAG = "alignops.base.package"  # the registry package it came in (name==version)
BASE_FILE_TAG = "alignops.base.file"  # the file inside the package
BASE_LICENSE_TAG = "alignops.base.license"
BASE_CONTENT_SHA256_TAG = "alignops.base.content_sha256"  # an imported folder's content hash

# ---- Data imports (alignops/data/imports.py), on the import run
IMPORT_SHA256_TAG = "alignops.import_sha256"
IMPORT_FILE_TAG = "alignops.import_file"
IMPORT_SET_TAG = "alignops.import_set"

# ---- The stage cache (alignops/cache.py) and the flows, on runs
CACHE_KEY_TAG = "alignops.cache_key"  # a finished stage run's cache key
OUTPUTS_TAG = "alignops.outputs"  # ... and its outputs, as JSON
FAILED_STAGE_TAG = "alignops.failed_stage"  # on a pipeline's parent run: the stage it stopped at
RAN_TAG = "alignops.ran"  # on a pipeline's parent run: the stages that ran, comma-separated
CACHED_TAG = "alignops.cached"  # ... and those answered from the cache
EXPERIMENT_TARGETS_TAG = "alignops.experiment_targets"  # on an experiment's report run: "met" or "missed: ..."
FEEDBACK_TAG = "alignops.feedback"  # on a feedback flow's parent run: "no-op" when there was nothing new
