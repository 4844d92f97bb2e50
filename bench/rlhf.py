"""Training throughput of the alignment stages: reward model and DPO in pairs/s, PPO in episodes/s with its time
split between generation and update, and the peak memory of each.

Random weights and random tokens at the presets' model shapes (configs/*.yaml); no data is read.

* reward: models.reward.RewardModel, one training step = RewardModel.pair_rewards (chosen and rejected as one
  (2B, T) forward) + pairwise_loss (the module's margin/center_coef) + backward + AdamW step (the optimizer and
  schedule of RewardModel.configure_optimizers);
* dpo: models.dpo.DPOModel, one training step = DPOModel.loss (policy forward with gradient, frozen reference
  forward without, both over the 2B texts) + backward + AdamW step (DPOModel.configure_optimizers);
* ppo: models.ppo.PPOModule, one iteration = PPOModule.rollout (sampling with the KV cache, policy and reference
  forwards, a RewardModel of the same shape scoring, GAE) + PPOModule.update (ppo_epochs passes of minibatch
  steps) + the KL controller update, i.e. PPOModule.training_step without its logging and health checks. The
  module's methods are called directly, no Trainer: update() needs manual_backward / optimizers() /
  clip_gradients, which a lightning.Fabric provides (fabric.setup(module, module.configure_optimizers())).

Under autocast (bf16 on CUDA, as Trainer(precision="bf16-mixed")): fp32 weights and optimizer state. Each measure
runs --warmup untimed steps, then --steps timed ones; step times are host timestamps (CPU) or CUDA events (reward,
dpo); PPO phases are timed with a device sync at each boundary (its loop syncs anyway). Throughputs use the median
step, *_best the fastest. Peak memory: CUDA torch.cuda.max_memory_allocated over the measure (models, optimizer
state and activations); CPU the growth of the process's peak RSS over its RSS before the measure (the peak is
reset through /proc/self/clear_refs where allowed; otherwise the growth of ru_maxrss, a lower bound).

    python bench/rlhf.py                          # tiny and small, reward + dpo + ppo: one JSON object per line
    python bench/rlhf.py --preset tiny --measure ppo --steps 10
    python bench/rlhf.py --preset small --batch-size 16 --rollout-batch-size 16 --minibatch-size 8 --ppo-epochs 2

--base smollm2 runs the PPO measure on the real model instead (SmolLM2-135M-Instruct from `alignops model fetch`'s
cache under ALIGNOPS_HOME): the policy with LoRA r8 (alpha 16) as the smollm2 preset trains it, a separate frozen
copy as the reference, a RewardModel on the same base (random head) as the scorer, chat prompts; with
--rollout-batch-size 16 --minibatch-size 4 --max-new-tokens 24 --temperature 0.7 --fixed-length it is one
iteration of the sentiment experiment's arms (experiment.*):

    python bench/rlhf.py --base smollm2 --dtype bf16 --rollout-batch-size 16 --minibatch-size 4 \
        --max-new-tokens 24 --temperature 0.7 --fixed-length --steps 5
"""

from __future__ import annotations

# Runnable as `python bench/rlhf.py` from the repo root: put the repo root on sys.path so `models` and `bench`
# import.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import copy  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from bench._common import (  # noqa: E402
    autocast,
    dtype_name,
    environment,
    preset_shapes,
    resolve_device,
    resolve_dtype,
    synchronize,
)
from bench._memory import peak_memory  # noqa: E402
from models.dpo import DPOModel  # noqa: E402
from models.gpt import GPT, GPTConfig  # noqa: E402
from models.lm import IGNORE_INDEX  # noqa: E402
from models.ppo import module as ppo_module  # noqa: E402
from models.ppo.module import PPOConfig, PPOModule  # noqa: E402
from models.reward import RewardModel, pairwise_loss  # noqa: E402

# the model shapes of the presets under configs/ (batch sizes are this benchmark's own)
PRESETS = {k: {n: v for n, v in s.items() if n != "batch_size"} for k, s in preset_shapes().items()}
MEASURES = ("reward", "dpo", "ppo")


# ---- timing -------------------------------------------------------------------------------------------------------
def time_steps(step: Callable[[], Tensor], device: torch.device, steps: int, warmup: int) -> tuple[list[float], Tensor]:
    """(sorted per-step seconds of `steps` timed steps after `warmup` untimed ones, the last step's output)."""
    for _ in range(warmup):
        step()
    cuda = device.type == "cuda"
    marks: list = []

    def mark() -> None:
        if cuda:  # CUDA events on the GPU's clock: no sync between steps
            marks.append(torch.cuda.Event(enable_timing=True))
            marks[-1].record()
        else:
            marks.append(time.perf_counter())

    synchronize(device)
    for _ in range(steps):
        mark()
        out = step()
    mark()
    synchronize(device)
    if cuda:
        seconds = [a.elapsed_time(b) / 1000 for a, b in zip(marks, marks[1:], strict=False)]
    else:
        seconds = [b - a for a, b in zip(marks, marks[1:], strict=False)]
    return sorted(seconds), out


def _pair_figures(seconds: list[float], args: argparse.Namespace) -> dict:
    """Step times (sorted seconds) as ms and pairs/s, median and best; tokens/s counts both texts of a pair."""
    median, B = statistics.median(seconds), args.batch_size
    return {
        "ms_per_step_median": round(1000 * median, 2),
        "ms_per_step_min": round(1000 * seconds[0], 2),
        "pairs_per_s": round(B / median, 2),
        "pairs_per_s_best": round(B / seconds[0], 2),
        "tokens_per_s": round(2 * B * (args.prompt_len + args.response_len) / median),
    }


def _n_params(module: torch.nn.Module, trainable: bool) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)  # tied matrix once


def _gpt_config(shape: dict) -> GPTConfig:
    return GPTConfig(**{k: shape[k] for k in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")})


def random_pairs(shape: dict, batch: int, prompt_len: int, response_len: int, device: torch.device) -> dict:
    """A collate_pairs-style batch of B random pairs (every text prompt_len + response_len tokens, no padding),
    with the DPO labels (-100 on the prompt)."""
    V, T = shape["vocab_size"], prompt_len + response_len
    out = {}
    for side in ("chosen", "rejected"):
        ids = torch.randint(V, (batch, T), device=device)
        labels = ids.clone()
        labels[:, :prompt_len] = IGNORE_INDEX
        out.update({f"{side}_ids": ids, f"{side}_mask": torch.ones_like(ids), f"{side}_labels": labels})
    out["weight"] = torch.ones(batch, device=device)
    return out


# ---- measures -----------------------------------------------------------------------------------------------------
def bench_reward(shape: dict, device: torch.device, dtype: torch.dtype, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    out: dict = {}
    with peak_memory(device, out):
        rm = RewardModel(_gpt_config(shape)).to(device)
        rm.train()
        opt = rm.configure_optimizers()
        optimizer, scheduler = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
        batch = random_pairs(shape, args.batch_size, args.prompt_len, args.response_len, device)
        hp = rm.hparams

        def step() -> Tensor:
            with autocast(device, dtype):
                chosen, rejected = rm.pair_rewards(batch)
                loss = pairwise_loss(chosen, rejected, batch["weight"], margin=hp.margin, center_coef=hp.center_coef)
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            return loss

        seconds, loss = time_steps(step, device, args.steps, args.warmup)
    return {
        "params": _n_params(rm, trainable=True),
        "batch_pairs": args.batch_size,
        "seq_len": args.prompt_len + args.response_len,
        **_pair_figures(seconds, args),
        "final_loss": round(loss.item(), 4),
        **out,
    }


def bench_dpo(shape: dict, device: torch.device, dtype: torch.dtype, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    out: dict = {}
    with peak_memory(device, out):
        dpo = DPOModel(_gpt_config(shape))
        dpo.reference.load_state_dict(dpo.model.state_dict())  # as DPOModel.from_base: both start from one GPT
        dpo = dpo.to(device)
        dpo.train()  # the reference stays in eval mode
        opt = dpo.configure_optimizers()
        optimizer, scheduler = opt["optimizer"], opt["lr_scheduler"]["scheduler"]
        batch = random_pairs(shape, args.batch_size, args.prompt_len, args.response_len, device)

        def step() -> Tensor:
            with autocast(device, dtype):
                loss, _ = dpo.loss(batch)
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            return loss

        seconds, loss = time_steps(step, device, args.steps, args.warmup)
    return {
        "params": _n_params(dpo, trainable=True),
        "params_total": _n_params(dpo, trainable=False),  # + the frozen reference
        "batch_pairs": args.batch_size,
        "seq_len": args.prompt_len + args.response_len,
        **_pair_figures(seconds, args),
        "final_loss": round(loss.item(), 4),
        **out,
    }


@contextlib.contextmanager
def timed_generate(device: torch.device, seconds: list[float]) -> Iterator[None]:
    """Append the duration of every models.generation.generate call PPOModule.rollout makes to `seconds`."""
    original = ppo_module.generate

    def timed(*args, **kwargs):
        synchronize(device)
        t0 = time.perf_counter()
        result = original(*args, **kwargs)
        synchronize(device)
        seconds.append(time.perf_counter() - t0)
        return result

    ppo_module.generate = timed
    try:
        yield
    finally:
        ppo_module.generate = original


def _fabric(device: torch.device):
    """A single-device lightning.Fabric: it provides PPOModule.update's manual_backward, optimizers() and
    clip_gradients outside a Trainer. Precision "32-true": autocast is this benchmark's own."""
    import lightning as L

    if device.type == "cuda":
        return L.Fabric(accelerator="cuda", devices=[device.index or 0], precision="32-true")
    return L.Fabric(accelerator="cpu", devices=1, precision="32-true")


SMOLLM2_PROMPTS = [f"Continue this review in a few words: {start}" for start in (
    "The film was", "I bought this for my", "The service at the", "Honestly, the new album",
    "Our hotel room had", "This phone's battery", "The plot of the book", "After two weeks the shoes",
)]  # fmt: skip
SMOLLM2_LORA = {"r": 8, "alpha": 16}  # configs/smollm2.yaml's ppo.lora


def _ppo_inputs(shape: dict, config: PPOConfig, args: argparse.Namespace, device: torch.device):
    """(PPOModule, prompt ids, prompt mask): a random GPT at the preset's shape with random prompts, or with --base
    the real model (policy with LoRA, reference and reward model on the same base) with chat prompts."""
    B = args.rollout_batch_size
    if args.base is None:
        V = shape["vocab_size"]
        gpt_config = _gpt_config(shape)
        policy = GPT(gpt_config)
        reward = RewardModel(gpt_config).eval()  # a reward model of the same shape, as the stage's
        module = PPOModule(policy, copy.deepcopy(policy), reward, config, eos_id=V - 1, pad_id=0)
        ids = torch.randint(V - 1, (B, args.ppo_prompt_len))  # no EOS in the prompts
        return module.to(device), ids.to(device), torch.ones_like(ids, device=device)
    from alignops.data.loaders import collate_left_pad
    from bench._common import smollm2
    from models.base import HFCausalLM

    folder, tok = smollm2()
    reward = RewardModel.from_base(HFCausalLM.from_folder(folder)).eval()
    policy = HFCausalLM.from_folder(folder)  # its reference: itself with the LoRA adapters off, as the stage runs it
    module = PPOModule(policy, None, reward, config, eos_id=tok.eos_id, pad_id=tok.pad_id, lora=SMOLLM2_LORA)
    texts = [tok.chat(SMOLLM2_PROMPTS[i % len(SMOLLM2_PROMPTS)]) for i in range(B)]
    prompts = collate_left_pad(tok.pad_id)([{"input_ids": torch.tensor(ids)} for ids in tok.encode_batch(texts)])
    return module.to(device), prompts["input_ids"].to(device), prompts["attention_mask"].to(device)


def bench_ppo(shape: dict, device: torch.device, dtype: torch.dtype, args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    B = args.rollout_batch_size
    config = PPOConfig(
        rollout_batch_size=B,
        minibatch_size=args.minibatch_size,
        ppo_epochs=args.ppo_epochs,
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        fixed_length=args.fixed_length,
        method=args.method,
        group_size=args.group_size,
    )
    E = config.episodes_per_iteration  # B, or B * group_size for grpo / rloo
    out: dict = {}
    if args.through_trainer:
        with peak_memory(device, out):
            module, ids, mask = _ppo_inputs(shape, config, args, device)
            result = _ppo_through_trainer(module, ids, mask, device, dtype, args)
        return {**result, **out}  # out is filled as the with-block ends
    with peak_memory(device, out):
        module, ids, mask = _ppo_inputs(shape, config, args, device)
        P = ids.size(1)
        _fabric(device).setup(module, module.configure_optimizers())  # sets module._fabric, _fabric_optimizers
        sample_s: list[float] = []

        def iteration() -> dict:
            synchronize(device)
            t0 = time.perf_counter()
            with autocast(device, dtype), timed_generate(device, sample_s):
                r = module.rollout(ids, mask)
            kl = r.kl.sum(dim=1).mean().item()  # syncs, as training_step's rollout stats
            t1 = time.perf_counter()
            with autocast(device, dtype):
                stats = module.update(r)
            module.kl_controller.update(kl, n_steps=E)
            synchronize(device)
            t2 = time.perf_counter()
            return {
                "iteration_s": t2 - t0,
                "rollout_s": t1 - t0,
                "sampling_s": sample_s[-1],
                "update_s": t2 - t1,
                "new_tokens": r.sequences.size(1) - P,  # sampled positions per row (< max_new_tokens if all EOS)
                "response_len": r.mask.sum(dim=1).float().mean().item(),
                "policy_loss": stats["ppo/policy_loss"],
            }

        for _ in range(args.warmup):
            iteration()
        runs = sorted((iteration() for _ in range(args.steps)), key=lambda x: x["iteration_s"])
    med = runs[(len(runs) - 1) // 2]  # the median iteration (the lower one for an even count), split as it ran
    it, samp, upd = med["iteration_s"], med["sampling_s"], med["update_s"]
    score = med["rollout_s"] - samp  # policy/reference forwards, reward model, GAE
    return {
        "params": _n_params(module, trainable=True),  # policy + value head
        "params_total": _n_params(module, trainable=False),  # + reference + reward model
        "method": args.method,
        "rollout_batch_size": B,
        "episodes_per_iteration": E,
        "minibatch_size": args.minibatch_size,
        "ppo_epochs": args.ppo_epochs,
        "optimizer_steps_per_iteration": config.steps_per_iteration,
        "prompt_len": P,
        "max_new_tokens": args.max_new_tokens,
        "iteration_s_median": round(it, 4),
        "iteration_s_min": round(runs[0]["iteration_s"], 4),
        "episodes_per_s": round(E / it, 2),
        "episodes_per_s_best": round(E / runs[0]["iteration_s"], 2),
        "generated_tokens_per_s": round(E * med["new_tokens"] / samp, 1),  # while sampling
        "generated_tokens_per_s_iteration": round(E * med["new_tokens"] / it, 1),  # over the whole iteration
        "sampling_s": round(samp, 4),
        "rollout_scoring_s": round(score, 4),
        "generation_s": round(med["rollout_s"], 4),  # sampling + scoring: PPOModule's ppo/time_generation_s
        "update_s": round(upd, 4),  # PPOModule's ppo/time_update_s
        "sampling_frac": round(samp / it, 3),
        "rollout_scoring_frac": round(score / it, 3),
        "generation_frac": round(med["rollout_s"] / it, 3),
        "update_frac": round(upd / it, 3),
        "response_len_mean": round(med["response_len"], 2),
        "policy_loss": round(med["policy_loss"], 4),
        "timing": "Fabric + direct PPOModule.rollout/update calls (no Trainer)",
        **out,
    }


def _ppo_through_trainer(
    module: PPOModule, ids: Tensor, mask: Tensor, device: torch.device, dtype: torch.dtype, args: argparse.Namespace
) -> dict:
    """Iterations through Lightning's Trainer as the ppo stage runs them: a ModelCheckpoint every
    --checkpoint-every iterations with save_last (the stage's), an MLflow logger on a SQLite file logging every
    iteration; the time of an iteration from one batch end to the next. Against the direct calls' figure this is
    what the stage adds."""
    import tempfile

    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import MLFlowLogger

    steps, k = module.config.steps_per_iteration, args.checkpoint_every
    ends: list[float] = []

    class Clock(L.Callback):
        def on_train_batch_end(self, *args) -> None:
            synchronize(device)
            ends.append(time.perf_counter())

    rows = [{"input_ids": i, "attention_mask": m} for i, m in zip(ids, mask, strict=True)]
    loader = torch.utils.data.DataLoader(rows * (args.warmup + args.steps + 1), batch_size=ids.size(0))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = L.Trainer(
            accelerator=device.type, devices=1, precision="bf16-mixed" if dtype == torch.bfloat16 else "32-true",
            max_steps=(args.warmup + args.steps + 1) * steps, log_every_n_steps=1, enable_progress_bar=False,
            logger=MLFlowLogger(experiment_name="bench", tracking_uri=f"sqlite:///{tmp}/mlflow.db"),
            callbacks=[Clock(), ModelCheckpoint(dirpath=f"{tmp}/ckpt", filename="step-{step}",
                                                every_n_train_steps=k * steps, save_last=True, save_top_k=1)],
            enable_model_summary=False, default_root_dir=tmp,
        )  # fmt: skip
        trainer.fit(module, loader)
        checkpoint_mib = sum(f.stat().st_size for f in Path(tmp, "ckpt").glob("*.ckpt")) / 2**20
    timed = sorted(b - a for a, b in zip(ends[args.warmup :], ends[args.warmup + 1 :], strict=False))
    med = timed[(len(timed) - 1) // 2]
    return {
        "rollout_batch_size": ids.size(0),
        "iteration_s_median": round(med, 4),
        "iteration_s_mean": round(statistics.mean(timed), 4),  # checkpoints fall on every k-th: the mean has them
        "episodes_per_s": round(module.config.episodes_per_iteration / statistics.mean(timed), 2),
        "checkpoint_every": k,
        "checkpoint_files_mib": round(checkpoint_mib, 1),
        "timing": "Lightning Trainer.fit with the stage's ModelCheckpoint and an MLflow logger (SQLite)",
    }


BENCHES = {"reward": bench_reward, "dpo": bench_dpo, "ppo": bench_ppo}


def _prime(device: torch.device, dtype: torch.dtype) -> None:
    """Run every kind of op once on a throwaway model, so one-off costs (kernel libraries, thread pools, allocator
    pools) fall on neither the first measure's time nor its memory."""
    gpt = GPT(GPTConfig(vocab_size=64, block_size=16, n_layer=1, n_head=1, n_embd=8)).to(device)
    config = PPOConfig(rollout_batch_size=2, minibatch_size=2, ppo_epochs=1, max_new_tokens=2)
    module = PPOModule(gpt, copy.deepcopy(gpt), lambda ids, mask: ids.float().mean(1), config, eos_id=63, pad_id=0)
    _fabric(device).setup(module, module.configure_optimizers())
    ids = torch.randint(63, (2, 4), device=device)
    with autocast(device, dtype):
        module.update(module.rollout(ids, torch.ones_like(ids)))
    synchronize(device)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", nargs="+", choices=sorted(PRESETS), help="default: tiny and small")
    parser.add_argument("--measure", nargs="+", choices=MEASURES, help="default: all three")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N (default: cuda if available)")
    parser.add_argument(
        "--dtype",
        default="auto",
        help="autocast dtype: fp32 (no autocast), bf16 (default: bf16 on cuda or a bf16 cpu, else fp32)",
    )
    parser.add_argument("--steps", type=int, help="timed steps / PPO iterations (default: 20 on cuda, 5 on cpu)")
    parser.add_argument("--warmup", type=int, help="untimed steps / iterations first (default: 5 on cuda, 1 on cpu)")
    g = parser.add_argument_group("reward model and DPO")
    g.add_argument("--batch-size", type=int, default=8, help="preference pairs per step (default: 8)")
    g.add_argument("--prompt-len", type=int, default=32, help="prompt tokens of each text (default: 32)")
    g.add_argument("--response-len", type=int, default=32, help="response tokens of each text (default: 32)")
    g = parser.add_argument_group("PPO")
    g.add_argument("--rollout-batch-size", type=int, default=8, help="episodes per iteration (default: 8)")
    g.add_argument("--minibatch-size", type=int, default=4, help="episodes per optimizer step (default: 4)")
    g.add_argument("--ppo-epochs", type=int, default=1, help="passes over each rollout (default: 1)")
    g.add_argument("--max-new-tokens", type=int, default=32, help="response length cap (default: 32)")
    g.add_argument("--ppo-prompt-len", type=int, default=16, help="prompt tokens (default: 16; --base: chat prompts)")
    g.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)")
    g.add_argument("--method", choices=["ppo", "grpo", "rloo"], default="ppo", help="the RL method (default: ppo)")
    g.add_argument("--group-size", type=int, default=4, help="grpo / rloo: samples per prompt (default: 4)")
    g.add_argument("--fixed-length", action="store_true", help="EOS suppressed: every response max_new_tokens long")
    g.add_argument(
        "--base", choices=["smollm2"], help="PPO on the real model (LoRA policy) instead of the presets' random GPTs"
    )
    g.add_argument(
        "--through-trainer", action="store_true", help="through Lightning's Trainer with the ppo stage's checkpoints"
    )
    g.add_argument("--checkpoint-every", type=int, default=2, help="--through-trainer: iterations (default 2)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch.get_num_threads())")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    if dtype == torch.float16:
        raise SystemExit("fp16 training needs a GradScaler, which this benchmark does not run: use bf16 or fp32")
    args.steps = args.steps or (20 if device.type == "cuda" else 5)
    args.warmup = args.warmup if args.warmup is not None else (5 if device.type == "cuda" else 1)
    presets = args.preset or ["tiny", "small"]
    measures = args.measure or list(MEASURES)
    if args.base is not None:
        if args.preset or (args.measure and args.measure != ["ppo"]):
            raise SystemExit("--base measures PPO on the real model: leave out --preset and --measure")
        presets, measures = [args.base], ["ppo"]
        PRESETS[args.base] = {"base": "smollm2-135m-instruct", "lora": SMOLLM2_LORA, "block_size": 8192}
    for preset in presets:
        block = PRESETS[preset]["block_size"]
        need = {"reward": args.prompt_len + args.response_len, "dpo": args.prompt_len + args.response_len}
        need["ppo"] = args.ppo_prompt_len + args.max_new_tokens
        for m in measures:
            if need[m] > block:
                raise SystemExit(f"{m}: {need[m]} tokens per text exceed {preset}'s block_size {block}")

    env = environment(device)
    _prime(device, dtype)
    for preset in presets:
        shape = PRESETS[preset]
        for m in measures:
            load = round(os.getloadavg()[0], 2)  # other jobs on the machine: CPU figures swing with it
            result = BENCHES[m](shape, device, dtype, args)
            head = {"preset": preset, "measure": m, **env, "load_avg_1m": load, **shape, "dtype": dtype_name(dtype)}
            print(json.dumps({**head, "warmup": args.warmup, "steps": args.steps, **result}), flush=True)


if __name__ == "__main__":
    main()
