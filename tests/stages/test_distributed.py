"""Distributed training on CPU: Lightning DDP over 2 processes (gloo) trains exactly as one process with the
same global batch, while only rank 0 tracks and registers; the loaders shard every batch across the ranks.

Lightning's `ddp` strategy starts the other ranks by running the command line again (sys.argv), so DDP runs
here as `python -m alignops.cli pretrain` in a subprocess, the way a user runs it; `ddp_spawn` would pickle
the stage's loaders and module into new processes instead and bring the weights back through a temporary
checkpoint: not how anyone trains on GPUs, and not the path whose rank-zero guards need testing.

    pytest tests/stages/test_distributed.py -m slow     # the DDP pretraining (about 2.5 min on 2 cores)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest

from alignops import tracking
from alignops.artifacts import load_model
from alignops.config import PipelineConfig, load_config
from alignops.data.loaders import resumable_loader
from alignops.stages import pretrain, training

# One process reads each step's batch of 8 blocks; two DDP ranks read 4 each, the same 8 together (see
# alignops.data.loaders.ResumableSampler), and average their gradients. 40 steps stay inside the fixture
# corpus's first epoch (321 blocks), and the 8 validation batches inside its val set (141 blocks), so no batch
# is padded: every step sees the same tokens in both runs.
GLOBAL_BATCH = 8
VAL_EVERY = 10


def _sets(overrides: list[str]) -> list[str]:
    return [a for s in overrides for a in ("--set", s)]


def _val_curve(client: mlflow.MlflowClient, run_id: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, "val/loss")}


@pytest.mark.slow
def test_ddp_pretraining_matches_one_process(
    built: PipelineConfig, tiny_overrides: list[str], home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    common = [*tiny_overrides, f"data.cache_dir={built.data.cache_dir}", "trainer.accelerator=cpu",
              f"pretrain.val_every_n_steps={VAL_EVERY}"]  # fmt: skip
    assert built.model.dropout == 0.0  # with dropout, each rank would draw its own masks: not one process's

    one_cfg = load_config("tiny", [*common, "trainer.devices=1", f"pretrain.batch_size={GLOBAL_BATCH}"])
    one = pretrain.run(one_cfg)

    # DDP, logging to a store of its own so that its runs and versions can be counted
    ddp_uri = f"sqlite:///{tmp_path / 'ddp.db'}"
    ddp_sets = [*common, "trainer.devices=2", "trainer.strategy=ddp", f"pretrain.batch_size={GLOBAL_BATCH // 2}"]
    env = {**os.environ, "ALIGNOPS_HOME": str(home), "MLFLOW_TRACKING_URI": ddp_uri, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "alignops.cli", "pretrain", "-p", "tiny", *_sets(ddp_sets)]
    # run() returns once both ranks have closed the pipes they share, so rank 1's output is in `out` too
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # both ranks joined (Lightning's own "Starting with 2 processes" banner is one of the notices alignops.quiet drops)
    assert "MEMBER: 1/2" in out and "MEMBER: 2/2" in out, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    assert out.count("registered models:/alignops-base/") == 1  # rank 1 printed nothing

    # rank 0 alone tracked: one run, one registered version, its params say 2 devices
    ddp_client = mlflow.MlflowClient(ddp_uri)
    experiments = [e.experiment_id for e in ddp_client.search_experiments()]
    runs = ddp_client.search_runs(experiments)
    assert [r.info.run_name for r in runs] == ["pretrain"]
    assert [str(v.version) for v in ddp_client.search_model_versions("name='alignops-base'")] == ["1"]
    ddp_run = runs[0]
    assert ddp_run.data.params["trainer.devices"] == "2" and ddp_run.data.params["trainer.strategy"] == "ddp"

    # The same global batches and averaged gradients: the runs differ only in the order fp32 sums are taken
    # (two half-batch means all-reduced vs one mean of the batch). Measured: the val losses agree to 1e-6 and the
    # weights to 2e-5 (AdamW turns tiny gradient differences into parts of a step of lr = 5e-3). Tolerances:
    # 1e-4 on the losses, 1e-3 on the weights, well below what wrong sharding does: training on half of each
    # batch (both ranks reading one shard) puts the val loss 0.12 to 0.2 higher at every check.
    one_client = mlflow.MlflowClient(tracking.tracking_uri())
    one_curve, ddp_curve = _val_curve(one_client, one.run_id), _val_curve(ddp_client, ddp_run.info.run_id)
    assert sorted(one_curve) == sorted(ddp_curve) and len(one_curve) >= 4, (one_curve, ddp_curve)
    for step, loss in one_curve.items():
        assert ddp_curve[step] == pytest.approx(loss, abs=1e-4), (step, one_curve, ddp_curve)
    assert ddp_run.data.metrics["final/val_loss"] == pytest.approx(one.metrics["val/loss"], abs=1e-4)
    assert one.metrics["val/loss"] < one_curve[min(one_curve)] - 0.5  # and it did learn

    monkeypatch.setenv("MLFLOW_TRACKING_URI", ddp_uri)
    ddp_weights = load_model(tracking.resolve_model("models:/alignops-base/1")).gpt.state_dict()
    one_weights = load_model(one.model_dir).gpt.state_dict()
    worst = max((ddp_weights[k] - w).abs().max().item() for k, w in one_weights.items())
    assert worst < 1e-3, worst


WORKER = textwrap.dedent(
    """
    import json, os, sys
    import torch, torch.distributed as dist
    from alignops.data.loaders import resumable_loader

    def work(rank, out):
        dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=2)
        loader = resumable_loader(list(range(21)), batch_size=2, seed=3)
        epochs = []
        for epoch in range(2):
            loader.sampler.set_epoch(epoch)
            epochs.append([b.tolist() for b in loader])
        state = dict(loader.state_dict(), epoch=1, batches_done=3)
        loader.load_state_dict(state)  # resume mid-epoch 1 after 3 batches of this rank
        resumed = [b.tolist() for b in loader]
        with open(f"{out}/rank{rank}.json", "w") as f:
            json.dump({"epochs": epochs, "resumed": resumed, "len": len(loader), "state": state}, f)
        dist.destroy_process_group()

    if __name__ == "__main__":
        torch.multiprocessing.spawn(work, args=(sys.argv[1],), nprocs=2)
    """
)


def test_ranks_split_every_batch_of_one_process(tmp_path: Path) -> None:
    """Two real gloo ranks with batch 2: step k's batches of both ranks together are step k's batch of one
    process with batch 4, every epoch, and a resumed epoch continues each rank where it stopped."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    single = resumable_loader(list(range(21)), batch_size=4, seed=3)
    for epoch in range(2):
        single.sampler.set_epoch(epoch)
        whole = [b.tolist() for b in single]
        per_rank = [r["epochs"][epoch] for r in ranks]
        assert len(per_rank[0]) == len(per_rank[1]) == 6 == ranks[0]["len"]  # ceil(ceil(21 / 2) / 2): in step
        together = [sorted(a + b) for a, b in zip(per_rank[0], per_rank[1], strict=True)]
        assert together[:-1] == [sorted(b) for b in whole[:-1]], epoch
        # the last step: one process has 1 leftover example; the ranks pad theirs with the epoch's first one
        assert together[-1] == sorted(whole[-1] + whole[0][:1]), epoch
    for r in ranks:
        assert r["state"]["world_size"] == 2
        assert r["resumed"] == r["epochs"][1][3:]


def test_a_checkpoint_resumes_only_on_as_many_devices() -> None:
    loader = resumable_loader(list(range(10)), batch_size=2, seed=0)
    state = dict(loader.state_dict(), world_size=2)  # saved by a 2-rank run; this process is not distributed
    with pytest.raises(ValueError, match="on 2 device"):
        loader.load_state_dict(state)


def test_gpt2_preset_is_fsdp_sharded_per_block(tmp_path: Path) -> None:
    """The GPU preset: GPT-2 small's shape, bf16, FSDP with each transformer block its own unit. The Trainer's
    arguments are built here without a GPU (the Trainer itself refuses FSDP on a CPU; .gpu runs were on an H100)."""
    from lightning.pytorch.strategies import FSDPStrategy

    from models.gpt import Block

    cfg = load_config("gpt2")
    m = cfg.model
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size, cfg.tokenizer.vocab_size) == (12, 12, 768, 1024, 50257)
    kwargs = training.trainer_kwargs(cfg, cfg.pretrain, training.StageDir("pretrain", {"t": str(tmp_path)}), False)
    assert (kwargs["accelerator"], kwargs["precision"]) == ("gpu", "bf16-mixed")
    assert kwargs["use_distributed_sampler"] is False
    strategy = kwargs["strategy"]
    assert isinstance(strategy, FSDPStrategy) and strategy._state_dict_type == "full"
    assert strategy.kwargs["auto_wrap_policy"]._module_classes == {Block}
    assert training.resolve_strategy(load_config("tiny")) == "auto"


def test_every_training_module_rebuilds_from_its_hparams() -> None:
    """training.trained() gathers FSDP shards into type(module)(**module.hparams): every module must rebuild so."""
    from dataclasses import asdict

    from models.dpo import DPOModel
    from models.gpt import GPTConfig
    from models.lm import ClassifierModule, LMModule
    from models.reward import RewardModel

    gpt = asdict(GPTConfig(vocab_size=64, block_size=8, n_layer=1, n_head=2, n_embd=16))
    for module in (LMModule(gpt), ClassifierModule(gpt, labels=["a", "b"]), RewardModel(gpt), DPOModel(gpt)):
        copy = type(module)(**module.hparams)
        copy.load_state_dict(module.state_dict())  # strict: the same parameters, of the same shapes
        assert type(copy) is type(module) and copy.hparams == module.hparams


def test_a_non_zero_rank_tracks_and_writes_nothing(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What rank 1 of a DDP run does, in this process: LOCAL_RANK is how Lightning's launcher marks it."""
    cfg = load_config("tiny")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not tracking.is_rank_zero()
    start = training.begin(
        cfg, "pretrain", cfg.pretrain, {"rank": 1}, data_version=None, tokenizer=home, tokenizer_sha256=None
    )
    stage_dir = start.stage_dir
    with tracking.stage_run("pretrain", cfg, cfg.pretrain) as run:
        run.log_metrics({"train/loss": 1.0})
        run.log_params({"a": 1})
        run.set_tags({"b": "c"})
        start.started(run.run_id)
        assert run.run_id is None and tracking.lightning_logger(run.run_id) is False
        published = training.publish(start, None, registered="base", kind="causal_lm")
    assert published == (None, None, None)
    assert not stage_dir.path.exists()
    monkeypatch.delenv("LOCAL_RANK")
    assert tracking.is_rank_zero()
    client = mlflow.MlflowClient(tracking.tracking_uri())
    names = [r.info.run_name for r in client.search_runs([e.experiment_id for e in client.search_experiments()])]
    assert "pretrain" not in names and client.search_model_versions("name='alignops-base'") == []


RL_WORKER = textwrap.dedent(
    """
    import json, sys
    import torch, torch.distributed as dist
    from models.ppo.advantages import masked_whiten

    def all_sum(t):
        t = t.clone()
        dist.all_reduce(t)
        return t

    def work(rank, out):
        dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=2)
        g = torch.Generator().manual_seed(0)
        x, mask = torch.randn(8, 5, generator=g), torch.rand(8, 5, generator=g) > 0.3
        rows = slice(4 * rank, 4 * rank + 4)  # this rank's half of the batch
        whitened = masked_whiten(x[rows], mask[rows], all_sum=all_sum)
        shifted = masked_whiten(x[rows], mask[rows], shift_mean=False, all_sum=all_sum)
        with open(f"{out}/rank{rank}.json", "w") as f:
            json.dump({"whitened": whitened.tolist(), "shifted": shifted.tolist()}, f)
        dist.destroy_process_group()

    if __name__ == "__main__":
        torch.multiprocessing.spawn(work, args=(sys.argv[1],), nprocs=2)
    """
)


def test_whitening_over_ranks_is_whitening_of_the_whole_batch(tmp_path: Path) -> None:
    """PPO whitens advantages (and optionally rewards) over every rank's batch together: two gloo ranks holding
    half a batch each get exactly what one process computes over the whole batch."""
    import torch

    from models.ppo.advantages import masked_whiten

    script = tmp_path / "worker.py"
    script.write_text(RL_WORKER, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    g = torch.Generator().manual_seed(0)
    x, mask = torch.randn(8, 5, generator=g), torch.rand(8, 5, generator=g) > 0.3
    for key, whole in (("whitened", masked_whiten(x, mask)), ("shifted", masked_whiten(x, mask, shift_mean=False))):
        together = torch.tensor(ranks[0][key] + ranks[1][key])
        assert torch.allclose(together, whole, atol=1e-6), key
        # the control: each rank whitening its half alone gives something else
        alone = torch.cat([masked_whiten(x[:4], mask[:4]), masked_whiten(x[4:], mask[4:])])
        assert not torch.allclose(alone, masked_whiten(x, mask), atol=1e-3)


def _sft_and_reward_model(built: PipelineConfig) -> None:
    """The tiny pipeline's SFT policy and a reward model it may train against (no accuracy gate at this size)."""
    from alignops.stages import reward, sft

    pretrain.run(built)
    sft.run(built)
    reward.run(built.model_copy(update={"reward": built.reward.model_copy(update={"min_accuracy": 0.0})}))


def _ppo_on_two_processes(built: PipelineConfig, tiny_overrides: list[str], home: Path, sets: list[str]) -> None:
    """`alignops ppo -p tiny` on 2 CPU processes, as a user runs it: both ranks join, it succeeds, and only rank 0
    registers (rank 1 prints nothing)."""
    common = [*tiny_overrides, f"data.cache_dir={built.data.cache_dir}", "trainer.accelerator=cpu",
              "trainer.devices=2", "ppo.iterations=3", "ppo.rollout_batch_size=2", "ppo.minibatch_size=2",
              "ppo.ppo_epochs=1", "ppo.max_new_tokens=6", "ppo.checkpoint_every_n_iterations=1",
              "ppo.eval_samples=4"]  # fmt: skip
    env = {**os.environ, "ALIGNOPS_HOME": str(home), "MLFLOW_TRACKING_URI": tracking.tracking_uri(),
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    cmd = [sys.executable, "-m", "alignops.cli", "ppo", "-p", "tiny", *_sets([*common, *sets])]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "MEMBER: 1/2" in out and "MEMBER: 2/2" in out and "Traceback" not in out, out[-4000:]
    assert out.count("registered models:/alignops-policy/") == 1, out[-4000:]


def _ppo_runs(client: mlflow.MlflowClient) -> list:
    return [r for r in client.search_runs([e.experiment_id for e in client.search_experiments()])
            if r.info.run_name == "ppo"]  # fmt: skip


@pytest.mark.slow
def test_ppo_and_grpo_under_ddp(built: PipelineConfig, tiny_overrides: list[str], home: Path) -> None:
    """PPO (with a critic warm-up: only the value head trains then) and GRPO (no critic: the value head never
    trains) under Lightning DDP on 2 CPU processes: both ranks join, rank 0 alone tracks and registers, and the
    run finishes healthy (a health check that one rank failed alone would leave the other waiting forever)."""
    _sft_and_reward_model(built)
    arms = (["ppo.critic_warmup_iterations=1"], ["ppo.method=grpo", "ppo.group_size=2"])  # ppo, then grpo
    for extra in arms:
        _ppo_on_two_processes(built, tiny_overrides, home, ["trainer.strategy=ddp", *extra])

    client = mlflow.MlflowClient(tracking.tracking_uri())
    runs = _ppo_runs(client)
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        trainer = tracking.run_config(run.info.run_id)["trainer"]  # the resolved config the run logged
        assert (trainer["devices"], trainer["strategy"]) == (2, "ddp")
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "ppo/kl")) == [0, 1, 2]
    versions = client.search_model_versions("name='alignops-policy'")
    assert sorted(v.tags[tracking.METHOD_TAG] for v in versions) == ["grpo", "ppo"]
    assert all(v.tags[tracking.HEALTH_TAG] == "healthy" for v in versions)


@pytest.mark.slow
def test_ppo_stage_under_fsdp(built: PipelineConfig, tiny_overrides: list[str], home: Path) -> None:
    """`alignops ppo --set trainer.strategy=fsdp` on 2 CPU processes: the policy, reference and reward model sharded
    (models.sharding, FSDP2 over gloo), the trained policy gathered onto rank 0, which alone evaluates, tracks and
    registers; the registered policy is a whole model that moved from SFT's."""
    _sft_and_reward_model(built)
    _ppo_on_two_processes(built, tiny_overrides, home, ["trainer.strategy=fsdp", "ppo.critic_warmup_iterations=1"])

    client = mlflow.MlflowClient(tracking.tracking_uri())
    (run,) = _ppo_runs(client)
    assert run.info.status == "FINISHED"
    assert tracking.run_config(run.info.run_id)["trainer"]["strategy"] == "fsdp"
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "ppo/kl")) == [0, 1, 2]
    assert "ppo/reward_gain" in run.data.metrics  # rank 0 evaluated the gathered policy
    (version,) = client.search_model_versions("name='alignops-policy'")
    assert version.tags[tracking.HEALTH_TAG] == "healthy"
    policy = load_model(tracking.resolve_model(f"models:/alignops-policy/{version.version}")).gpt
    sft_policy = load_model(tracking.resolve_model("models:/alignops-sft/latest")).gpt
    assert policy.state_dict().keys() == sft_policy.state_dict().keys()  # whole, plain layers: no shard, no adapter
    moved = max((policy.state_dict()[k] - v).abs().max().item() for k, v in sft_policy.state_dict().items())
    assert moved > 0  # trained (the critic warm-up iteration moves the value head only; two more move the policy)
