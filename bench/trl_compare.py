"""alignops against TRL on this machine: SFT tokens/s, reward-model pairs/s, PPO and GRPO episodes/s and DPO pairs/s,
each with its peak memory, printed as a table of ratios (alignops / TRL) and one JSON line.

Both sides train the same GPT-2-shaped model (a preset's shape, configs/<preset>.yaml) from the same initial weights
(models.gpt.GPT saved with save_hf; TRL loads that folder as transformers' GPT2LMHeadModel /
GPT2ForSequenceClassification, the scalar heads copied over) on the same synthetic token data (fixed lengths, no
padding; TRL's DPOTrainer only takes text, so its data are the same ids written as words of a word-level tokenizer
with one word per id), with the same batch sizes, sequence lengths, learning rates and thread count, on CPU in fp32
or, with --precision bf16, bf16 autocast on both sides (Lightning's bf16-mixed, HF's bf16=True: fp32 weights and
optimizer state).
Each measurement runs in its own subprocess: its imports happen first, then the model, data and trainer are built
and the trainer's own loop runs --warmup untimed steps and --steps timed ones (a step's time: from one step end to
the next, as each loop runs it, data loading and logging included), in wall-clock time and in the process's CPU time
(steadier on a shared machine). Peak memory: the process's peak RSS over build + training (reset after the imports),
absolute and as growth (bench/_memory.py). alignops and TRL runs of a measure alternate, so load from other jobs
falls on both; each side's best round is reported.

    .venv-bench/bin/python bench/trl_compare.py                     # all five, preset tiny, 2 rounds
    .venv-bench/bin/python bench/trl_compare.py --measure sft dpo --rounds 3 --threads 1
    .venv-bench/bin/python bench/trl_compare.py --base smollm2 --precision auto     # the real model, LoRA, see below
    make bench-trl BENCH_ARGS="--threads 1"                         # creating the two venvs first if needed

TRL comes from two virtual environments, neither of them the project's (.venv stays without TRL): .venv-bench (the
newest TRL, for SFT, reward, GRPO and DPO) and .venv-bench-ppo (trl==1.12.0, the last release with PPO, as
trl.experimental.ppo); both have this project installed too. bench/README.md says what each side does per step.

--base smollm2 measures the real model instead: SmolLM2-135M-Instruct from `alignops model fetch`'s cache under
ALIGNOPS_HOME, with LoRA r8 (alpha 16, no dropout) on every attention and MLP projection, as the smollm2 preset trains
it: alignops' modules on models.base.HFCausalLM, TRL's trainers on transformers' Llama with a peft LoraConfig. The
hyperparameters come from configs/smollm2.yaml; the token data are random words of SmolLM2's vocabulary that encode
to themselves one token each, so DPOTrainer's text round-trips to the same ids. Each side keeps its own design where
the libraries differ: TRL's DPO, PPO and GRPO take the reference as the policy with its adapters off, as alignops'
PPO and GRPO do, where alignops' DPO keeps a frozen copy; TRL's PPO trains a whole value model, alignops a value head
on the policy; TRL's GRPO puts the KL in its loss, alignops' in the reward (as TRL's RLOO).
"""

from __future__ import annotations

# Runnable as `python bench/trl_compare.py` from the repo root: put the repo root on sys.path so `models`, `alignops`
# and `bench` import. Only the standard library is imported here: `--help` works without torch or TRL.
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

MEASURES = ("sft", "reward", "ppo", "grpo", "dpo")
REAL_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]  # peft's "all-linear"
REAL_SEQ_LEN, REAL_BLOCK = 128, 8192  # tokens per SFT text / pair side on the real model; its context
SMOLLM2_VOCAB, SMOLLM2_EOS = 49152, 2
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed"}  # --precision -> Lightning's string (HF: bf16=True)
UNITS = {"sft": "tokens/s", "reward": "pairs/s", "ppo": "episodes/s", "grpo": "episodes/s", "dpo": "pairs/s"}
SIDES = ("alignops", "trl")
RESULT_MARK = "@@trl_compare@@ "  # prefixes the worker's result line on stdout
# nothing may be fetched from the Hugging Face hub (there is no network), nor reported anywhere
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "TRL_EXPERIMENTAL_SILENCE": "1",
    "WANDB_DISABLED": "true",
    "DO_NOT_TRACK": "1",
}


# =====================================================================================================================
# parent: prepare the shared weights and data, run the workers, print the table
# =====================================================================================================================
def _default_python(venv: str) -> str:
    return str(ROOT / venv / "bin" / "python")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--preset", default="tiny", help="model shape and the defaults below from configs/<preset>.yaml")
    p.add_argument(
        "--base", choices=["smollm2"], help="the real model with LoRA instead (its preset's defaults; see above)"
    )
    p.add_argument("--measure", nargs="+", choices=MEASURES, default=list(MEASURES), help="default: all five")
    p.add_argument("--rounds", type=int, default=2, help="alignops/TRL runs of each measure, alternating (default 2)")
    p.add_argument("--threads", type=int, help="torch threads of both sides (default: torch.get_num_threads())")
    p.add_argument("--steps", type=int, default=40, help="timed optimizer steps of sft/reward/dpo (default 40)")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (default 5)")
    p.add_argument("--ppo-steps", type=int, default=8, help="timed PPO / GRPO iterations (default 8)")
    p.add_argument("--ppo-warmup", type=int, default=2, help="untimed PPO / GRPO iterations first (default 2)")
    g = p.add_argument_group("shapes (default: the preset's)")
    g.add_argument("--seq-len", type=int, help="tokens per SFT text and per side of a pair (default: block_size)")
    g.add_argument("--sft-batch-size", type=int, help="texts per SFT step (default: sft.batch_size)")
    g.add_argument("--reward-batch-size", type=int, help="pairs per reward-model step (default: reward.batch_size)")
    g.add_argument("--dpo-batch-size", type=int, help="pairs per DPO step (default: dpo.batch_size)")
    g.add_argument(
        "--rollout-batch-size", type=int, help="PPO episodes per iteration (default: ppo.rollout_batch_size)"
    )
    g.add_argument("--minibatch-size", type=int, help="PPO episodes per optimizer step (default: ppo.minibatch_size)")
    g.add_argument("--ppo-epochs", type=int, help="passes over each rollout (default: ppo.ppo_epochs)")
    g.add_argument("--max-new-tokens", type=int, help="PPO response length (default: ppo.max_new_tokens)")
    g.add_argument("--ppo-prompt-len", type=int, help="PPO prompt tokens (default: min(32, block - max_new_tokens))")
    g.add_argument(
        "--group-size", type=int, help="GRPO samples per prompt (default: ppo.group_size); episodes as PPO's"
    )
    g = p.add_argument_group("interpreters")
    g.add_argument("--alignops-python", default=sys.executable, help="runs the alignops side (default: this one)")
    g.add_argument("--trl-python", default=_default_python(".venv-bench"), help="newest TRL (default: .venv-bench)")
    g.add_argument(
        "--trl-ppo-python", default=_default_python(".venv-bench-ppo"), help="trl==1.12.0 (default: .venv-bench-ppo)"
    )
    p.add_argument(
        "--precision",
        choices=[*PRECISIONS, "auto"],
        default="fp32",
        help="fp32, bf16 autocast on both sides, or auto: bf16 where the CPU has native bf16 (AVX512-BF16/AMX), fp32\n"
        "elsewhere, where bf16 is emulated at about 1 %% of fp32's speed (alignops.precision) (default fp32)",
    )
    p.add_argument("--timeout", type=int, default=900, help="seconds one measurement may take (default 900)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--worker", nargs=3, metavar=("SIDE", "MEASURE", "WORKDIR"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.precision == "auto":  # the stages' own rule (alignops.precision), on the CPU this bench runs on
        from alignops.precision import resolve_precision

        args.precision = {v: k for k, v in PRECISIONS.items()}[resolve_precision(None, accelerator="cpu")]
    return args


def build_spec(args: argparse.Namespace) -> dict:
    """Everything both sides of every measure are given: shapes, batch sizes, hyperparameters, step counts."""
    import torch

    from alignops.config import load_config

    preset = args.base or args.preset
    cfg = load_config(preset)
    m, pc = cfg.model, cfg.ppo
    block = REAL_BLOCK if args.base else m.block_size
    T = args.seq_len or (REAL_SEQ_LEN if args.base else block)
    new = args.max_new_tokens or pc.max_new_tokens
    spec = {
        "preset": preset,
        # base: the real model (prepare() links its folder into the workdir); model: the preset's GPT otherwise
        "base": {"name": args.base, "lora": {"r": cfg.sft.lora.r, "alpha": cfg.sft.lora.alpha}} if args.base else None,
        "model": None if args.base else dict(n_layer=m.n_layer, n_head=m.n_head, n_embd=m.n_embd, block_size=block),
        "vocab_size": SMOLLM2_VOCAB if args.base else cfg.tokenizer.vocab_size,
        "pad_id": 0,  # the data never contain it (SmolLM2: <|endoftext|>)
        # ends every response (SFT, pairs), never in prompts (SmolLM2: <|im_end|>, its chat template's end of turn)
        "eos_id": SMOLLM2_EOS if args.base else cfg.tokenizer.vocab_size - 1,
        "seq_len": T,
        "prompt_len": T // 2,  # SFT and pairs: prompt tokens; the rest is the response, ending with EOS
        "sft": {"batch_size": args.sft_batch_size or cfg.sft.batch_size, "lr": cfg.sft.lr},
        "reward": {
            "batch_size": args.reward_batch_size or cfg.reward.batch_size,
            "lr": cfg.reward.lr,
            "center_coef": cfg.reward.center_coef,
        },
        "dpo": {"batch_size": args.dpo_batch_size or cfg.dpo.batch_size, "lr": cfg.dpo.lr, "beta": cfg.dpo.beta},
        "ppo": {
            "rollout_batch_size": args.rollout_batch_size or pc.rollout_batch_size,
            "minibatch_size": args.minibatch_size or pc.minibatch_size,
            "ppo_epochs": args.ppo_epochs or pc.ppo_epochs,
            "max_new_tokens": new,
            "prompt_len": args.ppo_prompt_len or min(32, block - new),
            "fixed_length": bool(args.base),  # a real model ends early; random weights seldom sample EOS
            "lr": pc.lr,
            "kl_coef": pc.init_kl_coef,
            "clip_range": pc.clip_range,
            "clip_range_value": pc.clip_range_value,
            "vf_coef": pc.vf_coef,
            "gamma": pc.gamma,
            "lam": pc.lam,
            "temperature": pc.temperature,
        },
        "grad_clip": cfg.sft.grad_clip,  # the stages' Trainer(gradient_clip_val=...); HF's max_grad_norm
        "steps": args.steps,
        "warmup": args.warmup,
        "ppo_steps": args.ppo_steps,
        "ppo_warmup": args.ppo_warmup,
        "threads": args.threads or torch.get_num_threads(),
        "precision": args.precision,
        "seed": args.seed,
    }
    ppo = spec["ppo"]
    if args.base:  # the sentiment experiment's rollouts: 16 prefixes, 24 new tokens, minibatch 4
        ppo["rollout_batch_size"] = args.rollout_batch_size or cfg.experiment.rollout_batch_size or 16
        ppo["max_new_tokens"] = args.max_new_tokens or cfg.experiment.max_new_tokens
        ppo["temperature"] = cfg.experiment.temperature
        arm = cfg.experiment.ppo  # the experiment's own PPO fields over the ppo section's
        ppo.update(lr=arm.get("lr", pc.lr), kl_coef=arm.get("init_kl_coef", pc.init_kl_coef))
        new = ppo["max_new_tokens"]
    # GRPO on PPO's sampling budget, as the sentiment experiment compares them: the same episodes an iteration, from
    # rollout_batch_size / group_size prompts; the same minibatches, epochs, lengths, temperature and KL coefficient
    spec["grpo"] = {"group_size": args.group_size or pc.group_size}
    if ppo["rollout_batch_size"] % spec["grpo"]["group_size"]:
        raise SystemExit(
            f"--group-size {spec['grpo']['group_size']} must divide the {ppo['rollout_batch_size']} episodes of an "
            "iteration"
        )
    if max(T, ppo["prompt_len"] + new) > block:
        raise SystemExit(
            f"--seq-len {T} or PPO prompt {ppo['prompt_len']} + {new} new tokens exceed block_size {block} of preset "
            f"{args.preset!r}: lower them"
        )
    if ppo["rollout_batch_size"] % ppo["minibatch_size"]:
        raise SystemExit(f"--minibatch-size {ppo['minibatch_size']} must divide {ppo['rollout_batch_size']}")
    if args.warmup < 1 or args.ppo_warmup < 1 or args.steps < 2 or args.ppo_steps < 2:
        raise SystemExit("need --warmup/--ppo-warmup >= 1 and --steps/--ppo-steps >= 2")
    return spec


def prepare(spec: dict, workdir: Path) -> None:
    """The initial weights (gpt/: an HF GPT-2 folder, or base/: a link to the real model's; heads.pt: reward and
    value heads) and the data (data.pt)."""
    import torch

    from models.heads import ScalarHead

    torch.manual_seed(spec["seed"])
    if spec["base"]:
        from bench._common import smollm2

        folder, _ = smollm2()
        (workdir / "base").symlink_to(folder, target_is_directory=True)
        width = json.loads((folder / "config.json").read_text())["hidden_size"]
        words = torch.tensor(_single_token_words(workdir / "base"))
    else:
        from models.gpt import GPT, GPTConfig

        config = GPTConfig(vocab_size=spec["vocab_size"], **spec["model"])
        GPT(config).save_hf(workdir / "gpt")
        width = config.n_embd
        words = torch.arange(1, spec["vocab_size"] - 1)  # tokens 1 .. V-2: never the pad (0) nor EOS (V-1)
    heads = {name: ScalarHead(width).state_dict() for name in ("reward", "value")}
    torch.save(heads, workdir / "heads.pt")

    T, P, eos = spec["seq_len"], spec["prompt_len"], spec["eos_id"]
    g = torch.Generator().manual_seed(spec["seed"])

    def tokens(n: int, length: int) -> torch.Tensor:
        return words[torch.randint(len(words), (n, length), generator=g)]

    def texts(n: int) -> torch.Tensor:  # no pad, EOS at the end only
        ids = tokens(n, T)
        ids[:, -1] = eos
        return ids

    n_sft = (spec["warmup"] + spec["steps"]) * spec["sft"]["batch_size"]
    n_pairs = (spec["warmup"] + spec["steps"]) * max(spec["reward"]["batch_size"], spec["dpo"]["batch_size"])
    chosen, rejected = texts(n_pairs), texts(n_pairs)
    rejected[:, :P] = chosen[:, :P]  # a pair shares its prompt
    ppo = spec["ppo"]
    n_prompts = (spec["ppo_warmup"] + spec["ppo_steps"]) * ppo["rollout_batch_size"]
    data = {
        "sft": texts(n_sft),
        "chosen": chosen,
        "rejected": rejected,
        "prompts": tokens(n_prompts, ppo["prompt_len"]),
    }
    torch.save(data, workdir / "data.pt")
    (workdir / "spec.json").write_text(json.dumps(spec, indent=2))


def _single_token_words(folder: Path) -> list[int]:
    """The ids of SmolLM2's vocabulary that are one lower-case word with its leading space (" the") and encode back to
    themselves alone: any sequence of them decodes to a text that encodes to the same ids (every word starts at a
    space, where the pre-tokenizer splits), which DPOTrainer, taking text, needs. About 21,000 of the 49,152."""
    import re

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    ids = [
        i
        for i in range(len(tok))
        if re.fullmatch(r" [a-z]{3,}", text := tok.decode([i])) and tok.encode(text, add_special_tokens=False) == [i]
    ]
    if len(ids) < 1000:
        raise SystemExit(f"{folder}: only {len(ids)} single-token words in its vocabulary; is it SmolLM2's?")
    return ids


def run_worker(python: str, side: str, measure: str, workdir: Path, timeout: int) -> dict:
    """One measurement in a fresh process; its result dict (the worker's last RESULT_MARK line)."""
    cmd = [python, str(Path(__file__).resolve()), "--worker", side, measure, str(workdir)]
    env = {**os.environ, **OFFLINE_ENV, "HF_HOME": str(workdir / "hf_home"), "PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"{side} {measure}: no result after {timeout} s; raise --timeout or lower --steps") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode or not lines:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise SystemExit(f"{side} {measure} failed (exit {done.returncode}): {' '.join(cmd)}\n{tail}")
    return json.loads(lines[-1][len(RESULT_MARK) :])


def _check_interpreters(args: argparse.Namespace, measures: list[str]) -> None:
    need = {"alignops": args.alignops_python}
    if set(measures) - {"ppo"}:  # GRPO too: the newest TRL's GRPOTrainer
        need["newest TRL (.venv-bench)"] = args.trl_python
    if "ppo" in measures:
        need["trl==1.12.0 (.venv-bench-ppo)"] = args.trl_ppo_python
    for what, python in need.items():
        if not Path(python).exists():
            raise SystemExit(
                f"{python} not found: the interpreter for {what}. Create the benchmark venvs with `make bench-venvs` "
                "(bench/README.md), or pass --trl-python / --trl-ppo-python"
            )


def _best(runs: list[dict]) -> dict:
    """The run with the highest median throughput: the least disturbed by other jobs on a shared machine."""
    return max(runs, key=lambda r: r["throughput"])


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def summarize(results: dict[str, dict[str, list[dict]]]) -> dict[str, dict]:
    out = {}
    for measure, sides in results.items():
        a, t = _best(sides["alignops"]), _best(sides["trl"])
        out[measure] = {
            "unit": UNITS[measure],
            "alignops": a["throughput"],
            "trl": t["throughput"],
            "throughput_ratio": _ratio(a["throughput"], t["throughput"]),
            # per CPU-second, best of rounds too (the rounds' CPU and wall figures need not be best in one run)
            "alignops_cpu": (a_cpu := max(r["cpu_throughput"] for r in sides["alignops"])),
            "trl_cpu": (t_cpu := max(r["cpu_throughput"] for r in sides["trl"])),
            "cpu_throughput_ratio": _ratio(a_cpu, t_cpu),
            "alignops_peak_rss_mib": a["peak_rss_mib"],
            "trl_peak_rss_mib": t["peak_rss_mib"],
            "peak_rss_ratio": _ratio(a["peak_rss_mib"], t["peak_rss_mib"]),
            "alignops_rss_growth_mib": a["peak_rss_growth_mib"],
            "trl_rss_growth_mib": t["peak_rss_growth_mib"],
            "rss_growth_ratio": _ratio(a["peak_rss_growth_mib"], t["peak_rss_growth_mib"]),
            "alignops_initial_loss": a.get("initial_loss"),
            "trl_initial_loss": t.get("initial_loss"),
            "alignops_optimizer_steps": a["optimizer_steps"],
            "trl_optimizer_steps": t["optimizer_steps"],
            "alignops_gc_collect_ms_per_step": a["gc_collect_ms_per_step"],
            "trl_gc_collect_ms_per_step": t["gc_collect_ms_per_step"],
            "throughput_ratio_without_gc_collect": _ratio(
                a["throughput_without_gc_collect"], t["throughput_without_gc_collect"]
            ),
            "alignops_response_len": a.get("response_len_last"),
            "trl_response_len": t.get("response_len_last"),
        }
    return out


def table(summary: dict[str, dict]) -> str:
    head = (
        "| measure | unit | alignops | TRL | ratio | per CPU-s alignops | per CPU-s TRL | ratio "
        "| peak RSS alignops | peak RSS TRL | ratio | RSS growth alignops | RSS growth TRL | ratio |"
    )
    rows = [head, "|" + "---|" * 14]
    for measure, s in summary.items():
        rows.append(
            f"| {measure} | {s['unit']} | {s['alignops']:,.1f} | {s['trl']:,.1f} | **{s['throughput_ratio']}** "
            f"| {s['alignops_cpu']:,.1f} | {s['trl_cpu']:,.1f} | **{s['cpu_throughput_ratio']}** "
            f"| {s['alignops_peak_rss_mib']:,.0f} MiB | {s['trl_peak_rss_mib']:,.0f} MiB | {s['peak_rss_ratio']} "
            f"| {s['alignops_rss_growth_mib']:,.0f} MiB | {s['trl_rss_growth_mib']:,.0f} MiB "
            f"| {s['rss_growth_ratio']} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        side, measure, workdir = args.worker
        worker(side, measure, Path(workdir))
        return
    _check_interpreters(args, args.measure)
    spec = build_spec(args)
    started = time.time()
    load_before = [round(x, 2) for x in os.getloadavg()]
    results: dict[str, dict[str, list[dict]]] = {m: {s: [] for s in SIDES} for m in args.measure}
    with tempfile.TemporaryDirectory(prefix="trl_compare_") as tmp:
        workdir = Path(tmp)
        prepare(spec, workdir)
        for measure in args.measure:
            trl_python = args.trl_ppo_python if measure == "ppo" else args.trl_python
            for r in range(args.rounds):
                order = SIDES if r % 2 == 0 else SIDES[::-1]  # alternate which side goes first
                for side in order:
                    python = args.alignops_python if side == "alignops" else trl_python
                    result = run_worker(python, side, measure, workdir, args.timeout)
                    results[measure][side].append(result)
                    print(
                        f"{measure:6} {side:8} round {r + 1}: {result['throughput']:,.1f} {UNITS[measure]} "
                        f"(median step {result['step_ms_median']:.1f} ms; {result['cpu_throughput']:,.1f} per CPU-s), "
                        f"peak RSS {result['peak_rss_mib']:.0f} MiB, "
                        f"load {result['load_avg_1m_before']} -> {result['load_avg_1m_after']}",
                        file=sys.stderr,
                        flush=True,
                    )
    import torch

    from bench._common import device_name

    summary = summarize(results)
    versions = {}  # of the first run of each interpreter
    for measure, sides in results.items():
        versions.setdefault("alignops_side", sides["alignops"][0]["versions"])
        versions.setdefault("trl_ppo_side" if measure == "ppo" else "trl_side", sides["trl"][0]["versions"])
    env = {
        "machine": platform.machine(),
        "cpu": device_name(torch.device("cpu")),
        "cpus": os.cpu_count(),
        "threads": spec["threads"],
        "dtype": spec["precision"],
        "load_avg_before": load_before,
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.time() - started, 1),
    }
    shapes = _shapes_line(spec)
    print(f"preset {spec['preset']}: {shapes}")
    print(f"threads {spec['threads']}, {spec['precision']}, {env['cpus']} CPUs ({env['cpu']}), "
          f"load avg {load_before} -> {env['load_avg_after']}, {env['wall_s']} s")  # fmt: skip
    print(f"versions: {json.dumps(versions)}")
    print(
        "throughput from each side's median step, wall-clock and per CPU-second of its process (best of rounds "
        "each); ratio = alignops / TRL"
    )
    print(table(summary))
    for measure, s in summary.items():
        checks = f"optimizer steps {s['alignops_optimizer_steps']} / {s['trl_optimizer_steps']}"
        if s["alignops_initial_loss"] is not None:
            checks += f", loss of the first batch before training {s['alignops_initial_loss']:.5f} / "
            checks += f"{s['trl_initial_loss']:.5f}"
        if s["alignops_response_len"] is not None:
            checks += f", response tokens (last rollout) {s['alignops_response_len']} / {s['trl_response_len']}"
        if s["alignops_gc_collect_ms_per_step"] or s["trl_gc_collect_ms_per_step"]:
            checks += (
                f"; gc.collect() per step {s['alignops_gc_collect_ms_per_step']:.0f} / "
                f"{s['trl_gc_collect_ms_per_step']:.0f} ms, ratio without it {s['throughput_ratio_without_gc_collect']}"
            )
        print(f"{measure}: alignops / TRL {checks}")
    print(json.dumps({"bench": "trl_compare", "spec": spec, "env": env, "versions": versions, "summary": summary,
                      "runs": results}))  # fmt: skip


def _shapes_line(spec: dict) -> str:
    m, p, base = spec["model"], spec["ppo"], spec["base"]
    if base:
        model = f"{base['name']} with LoRA r{base['lora']['r']} (alpha {base['lora']['alpha']}) on every projection"
    else:
        model = (
            f"GPT-2 {m['n_layer']} layers x {m['n_embd']} wide, {m['n_head']} heads, vocab {spec['vocab_size']}, "
            f"block {m['block_size']}"
        )
    return (
        f"{model}; SFT {spec['sft']['batch_size']} x {spec['seq_len']} tokens; reward "
        f"{spec['reward']['batch_size']} pairs, DPO {spec['dpo']['batch_size']} pairs, of 2 x {spec['seq_len']} tokens "
        f"(prompt {spec['prompt_len']}); PPO {p['rollout_batch_size']} episodes, minibatch {p['minibatch_size']}, "
        f"{p['ppo_epochs']} epochs, prompt {p['prompt_len']} + {p['max_new_tokens']} new tokens"
        f"{' (fixed length)' if p['fixed_length'] else ''}; GRPO the same episodes, "
        f"{p['rollout_batch_size'] // spec['grpo']['group_size']} prompts x {spec['grpo']['group_size']} samples; "
        f"steps {spec['warmup']} + {spec['steps']} timed, PPO / GRPO {spec['ppo_warmup']} + {spec['ppo_steps']} "
        "iterations timed"
    )


# =====================================================================================================================
# worker: one side, one measure, in its own process
# =====================================================================================================================
class StepClock:
    """Timestamps at the start of training and at every step's end, as the trainer's own hooks see them, and the time
    spent in gc.collect() by then: TRL's PPO loop collects twice an iteration, which takes long in a process holding
    a few hundred thousand Python objects (the imported libraries'), so that share is reported apart."""

    def __init__(self) -> None:
        self.marks: list[float] = []
        self.cpu_marks: list[float] = []  # this process's CPU time (all its threads), untouched by waiting for a core
        self.gc_marks: list[float] = []
        self.gc_seconds = 0.0
        self.load_before: float | None = None
        original = gc.collect

        def timed_collect(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.gc_seconds += time.perf_counter() - t0

        gc.collect = timed_collect  # module attribute: `import gc; gc.collect()` anywhere reaches it

    def mark(self) -> None:
        self.marks.append(time.perf_counter())
        self.cpu_marks.append(time.process_time())
        self.gc_marks.append(self.gc_seconds)

    def figures(self, warmup: int, steps: int, units_per_step: float) -> dict:
        expected = 1 + warmup + steps  # the start, then one mark per step
        if len(self.marks) != expected:
            raise RuntimeError(f"{len(self.marks) - 1} step ends seen, {warmup + steps} expected")

        def timed(marks: list[float]) -> list[float]:  # the timed steps' durations
            return [b - a for a, b in zip(marks[warmup:], marks[warmup + 1 :], strict=False)]

        seconds, cpu_seconds, gc_seconds = timed(self.marks), timed(self.cpu_marks), timed(self.gc_marks)
        median, cpu = statistics.median(seconds), statistics.median(cpu_seconds)
        median_no_gc = statistics.median(t - g for t, g in zip(seconds, gc_seconds, strict=True))
        return {
            "throughput": round(units_per_step / median, 2),
            "throughput_mean": round(units_per_step * len(seconds) / sum(seconds), 2),
            "throughput_best": round(units_per_step / min(seconds), 2),
            "step_ms_median": round(1000 * median, 2),
            "step_ms_min": round(1000 * min(seconds), 2),
            "step_ms_max": round(1000 * max(seconds), 2),
            "cpu_throughput": round(units_per_step / cpu, 2),  # per CPU-second of the process: steadier under load
            "cpu_step_ms_median": round(1000 * cpu, 2),
            "gc_collect_ms_per_step": round(1000 * sum(gc_seconds) / len(gc_seconds), 2),
            "throughput_without_gc_collect": round(units_per_step / median_no_gc, 2),
            "warmup_s": round(self.marks[warmup] - self.marks[0], 3),
        }


def worker(side: str, measure: str, workdir: Path) -> None:
    spec = json.loads((workdir / "spec.json").read_text())
    if side not in SIDES or measure not in MEASURES:
        raise SystemExit(f"--worker: side one of {SIDES}, measure one of {MEASURES}")
    import torch

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    data = torch.load(workdir / "data.pt")
    heads = torch.load(workdir / "heads.pt")
    fn = {"alignops": ALIGNOPS, "trl": TRL}[side][measure]
    steps = [0]  # every optimizer step either side takes, counted by torch itself: both must take as many

    def count(optimizer, args, kwargs) -> None:
        steps[0] += 1

    from torch.optim.optimizer import register_optimizer_step_post_hook

    register_optimizer_step_post_hook(count)
    result = fn(spec, data, heads, workdir)
    result.update(side=side, measure=measure, threads_after=torch.get_num_threads(), optimizer_steps=steps[0])
    print(RESULT_MARK + json.dumps(result), flush=True)


def _measured(clock: StepClock, rss: dict, warmup: int, steps: int, units_per_step: float, **extra) -> dict:
    return {
        **clock.figures(warmup, steps, units_per_step),
        **rss,
        "load_avg_1m_before": clock.load_before,
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        **extra,
    }


# ---- alignops: the Lightning modules under a Lightning Trainer ------------------------------------------------------
def _alignops_imports() -> dict:
    """Imported before the memory section, as TRL's side imports its libraries before it."""
    import lightning
    import torch

    import alignops.data.loaders  # noqa: F401
    import alignops.data.preferences  # noqa: F401
    import models.dpo  # noqa: F401
    import models.lm  # noqa: F401
    import models.ppo.module  # noqa: F401
    import models.reward  # noqa: F401

    return {"torch": torch.__version__, "lightning": lightning.__version__}


def _backbone(spec: dict, workdir: Path):
    """The initial weights as alignops loads them: the preset's GPT, or the real model as models.base.HFCausalLM."""
    if spec["base"]:
        from models.base import HFCausalLM

        return HFCausalLM.from_folder(workdir / "base")
    from models.gpt import GPT

    return GPT.from_hf(workdir / "gpt")


def _lora(spec: dict) -> dict | None:
    return spec["base"]["lora"] if spec["base"] else None


def _lightning_fit(module, loader, max_steps: int, grad_clip: float | None, clock: StepClock, precision: str):
    import lightning as L

    class Clock(L.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            clock.mark()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            clock.mark()

    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision=PRECISIONS[precision],
        max_steps=max_steps,
        gradient_clip_val=grad_clip,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[Clock()],
    )
    trainer.fit(module, loader)
    return trainer


class _Rows:
    """A map-style dataset over a list of example dicts (what alignops.data's datasets yield)."""

    def __init__(self, rows: list[dict]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def _pair_rows(spec: dict, data: dict, n: int) -> list[dict]:
    import torch

    from models.lm import IGNORE_INDEX

    rows = []
    for chosen, rejected in zip(data["chosen"][:n], data["rejected"][:n], strict=True):
        row = {"weight": torch.tensor(1.0)}
        for name, ids in (("chosen", chosen), ("rejected", rejected)):
            labels = ids.clone()
            labels[: spec["prompt_len"]] = IGNORE_INDEX
            row.update({f"{name}_ids": ids, f"{name}_labels": labels})
        rows.append(row)
    return rows


def alignops_sft(spec: dict, data: dict, heads: dict, workdir: Path) -> dict:
    versions = _alignops_imports()
    import torch

    from alignops.config import OptimConfig
    from alignops.data.loaders import collate_right_pad, resumable_loader
    from bench._memory import cpu_peak_rss
    from models.lm import IGNORE_INDEX, LMModule

    s, W, N = spec["sft"], spec["warmup"], spec["steps"]
    B, clock = s["batch_size"], StepClock()
    clock.load_before = round(os.getloadavg()[0], 2)
    with cpu_peak_rss() as rss:
        rows = []
        for ids in data["sft"]:
            labels = ids.clone()
            labels[: spec["prompt_len"]] = IGNORE_INDEX  # as SFTDataset: learn the response only
            rows.append({"input_ids": ids, "labels": labels})
        collate = collate_right_pad(spec["pad_id"])
        module = LMModule.from_base(
            _backbone(spec, workdir), lora=_lora(spec), max_steps=W + N, optim=OptimConfig(lr=s["lr"], warmup_steps=1)
        )
        with torch.no_grad():
            initial_loss = module.loss(collate(rows[:B]))[0].item()
        loader = resumable_loader(_Rows(rows), batch_size=B, seed=spec["seed"], collate_fn=collate, drop_last=True)
        _lightning_fit(module, loader, W + N, spec["grad_clip"], clock, spec["precision"])
    return _measured(clock, rss, W, N, B * spec["seq_len"], initial_loss=initial_loss, versions=versions)


def alignops_reward(spec: dict, data: dict, heads: dict, workdir: Path) -> dict:
    versions = _alignops_imports()
    import torch

    from alignops.config import OptimConfig
    from alignops.data.loaders import resumable_loader
    from alignops.data.preferences import collate_pairs
    from bench._memory import cpu_peak_rss
    from models.reward import RewardModel, pairwise_loss

    s, W, N = spec["reward"], spec["warmup"], spec["steps"]
    B, clock = s["batch_size"], StepClock()
    clock.load_before = round(os.getloadavg()[0], 2)
    with cpu_peak_rss() as rss:
        rows = _pair_rows(spec, data, (W + N) * B)
        collate = collate_pairs(spec["pad_id"])
        rm = RewardModel.from_base(
            _backbone(spec, workdir),
            lora=_lora(spec),
            max_steps=W + N,
            center_coef=s["center_coef"],
            optim=OptimConfig(lr=s["lr"], warmup_steps=1, weight_decay=0.01, beta2=0.999),
        )
        rm.head.load_state_dict(heads["reward"])
        with torch.no_grad():
            batch = collate(rows[:B])
            initial_loss = pairwise_loss(*rm.pair_rewards(batch), batch["weight"], center_coef=s["center_coef"]).item()
        loader = resumable_loader(_Rows(rows), batch_size=B, seed=spec["seed"], collate_fn=collate, drop_last=True)
        _lightning_fit(rm, loader, W + N, spec["grad_clip"], clock, spec["precision"])
    return _measured(clock, rss, W, N, B, initial_loss=initial_loss, versions=versions)


def alignops_dpo(spec: dict, data: dict, heads: dict, workdir: Path) -> dict:
    versions = _alignops_imports()
    import torch

    from alignops.config import OptimConfig
    from alignops.data.loaders import resumable_loader
    from alignops.data.preferences import collate_pairs
    from bench._memory import cpu_peak_rss
    from models.dpo import DPOModel

    s, W, N = spec["dpo"], spec["warmup"], spec["steps"]
    B, clock = s["batch_size"], StepClock()
    clock.load_before = round(os.getloadavg()[0], 2)
    with cpu_peak_rss() as rss:
        rows = _pair_rows(spec, data, (W + N) * B)
        collate = collate_pairs(spec["pad_id"])
        dpo = DPOModel.from_base(
            _backbone(spec, workdir),
            lora=_lora(spec),
            beta=s["beta"],
            max_steps=W + N,
            optim=OptimConfig(lr=s["lr"], warmup_steps=1, weight_decay=0.0, beta2=0.999),
        )
        with torch.no_grad():
            initial_loss = dpo.loss(collate(rows[:B]))[0].item()
        loader = resumable_loader(_Rows(rows), batch_size=B, seed=spec["seed"], collate_fn=collate, drop_last=True)
        _lightning_fit(dpo, loader, W + N, spec["grad_clip"], clock, spec["precision"])
    return _measured(clock, rss, W, N, B, initial_loss=initial_loss, versions=versions)


def alignops_ppo(spec: dict, data: dict, heads: dict, workdir: Path, method: str = "ppo") -> dict:
    """PPO, or with method "grpo" GRPO on the same episodes an iteration (group_size samples of each of
    rollout_batch_size / group_size prompts), the same PPOModule and stage."""
    versions = _alignops_imports()
    import copy
    import math

    from alignops.data.loaders import collate_left_pad, resumable_loader
    from bench._memory import cpu_peak_rss
    from models.ppo.health import HealthBounds
    from models.ppo.module import PPOConfig, PPOModule
    from models.reward import RewardModel

    p, W, N = spec["ppo"], spec["ppo_warmup"], spec["ppo_steps"]
    B, clock = p["rollout_batch_size"], StepClock()  # episodes an iteration
    group_size = spec["grpo"]["group_size"]
    G = group_size if method == "grpo" else 1  # samples per prompt
    clock.load_before = round(os.getloadavg()[0], 2)
    with cpu_peak_rss() as rss:
        config = PPOConfig(
            method=method,
            group_size=group_size,  # read by grpo only
            rollout_batch_size=B // G,  # prompts
            minibatch_size=p["minibatch_size"],
            forward_batch_size=B,  # the scoring forwards on the whole rollout, as TRL's side below
            ppo_epochs=p["ppo_epochs"],
            max_new_tokens=p["max_new_tokens"],
            temperature=p["temperature"],
            gamma=p["gamma"],
            lam=p["lam"],
            clip_range=p["clip_range"],
            clip_range_value=p["clip_range_value"],
            vf_coef=p["vf_coef"],
            init_kl_coef=p["kl_coef"],
            lr=p["lr"],
            max_grad_norm=spec["grad_clip"],
            fixed_length=p["fixed_length"],
        )
        policy = _backbone(spec, workdir)
        reward = RewardModel.from_base(_backbone(spec, workdir))
        reward.head.load_state_dict(heads["reward"])
        # the checks still run every iteration; no bound stops a benchmark of random weights
        health = HealthBounds(max_kl=math.inf, max_approx_kl=math.inf, max_ratio=math.inf, min_response_length=0)
        # with LoRA the reference is the policy with its adapters off (as TRL's side and the ppo stage), else a copy
        reference = None if _lora(spec) else copy.deepcopy(policy)
        module = PPOModule(
            policy, reference, reward.eval(), config, spec["eos_id"], spec["pad_id"], health, _lora(spec)
        )
        module.value_head.load_state_dict(heads["value"])
        rows = [{"input_ids": ids} for ids in data["prompts"][: (W + N) * B // G]]
        loader = resumable_loader(
            _Rows(rows), B // G, seed=spec["seed"], collate_fn=collate_left_pad(spec["pad_id"]), drop_last=True
        )
        steps = (W + N) * config.steps_per_iteration
        trainer = _lightning_fit(module, loader, steps, None, clock, spec["precision"])  # update() clips
    # tokens up to and including EOS, last iteration; random weights seldom sample EOS, so about max_new_tokens
    response_len = float(trainer.callback_metrics["ppo/response_len"])
    return _measured(clock, rss, W, N, B, response_len_last=round(response_len, 2), versions=versions)


def alignops_grpo(spec: dict, data: dict, heads: dict, workdir: Path) -> dict:
    return alignops_ppo(spec, data, heads, workdir, method="grpo")


ALIGNOPS = {
    "sft": alignops_sft, "reward": alignops_reward, "dpo": alignops_dpo, "ppo": alignops_ppo, "grpo": alignops_grpo
}  # fmt: skip


# ---- TRL: its trainers on transformers' GPT-2 ------------------------------------------------------------------------
def _trl_imports() -> dict:
    import accelerate
    import datasets
    import torch
    import transformers
    import trl

    return {
        "torch": torch.__version__,
        "trl": trl.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "datasets": datasets.__version__,
    }


def _words(spec: dict) -> list[str]:
    """The word of each token id: "<pad>", "<eos>" for the special ids, "w<id>" for the others."""
    V, special = spec["vocab_size"], {spec["pad_id"]: "<pad>", spec["eos_id"]: "<eos>"}
    return [special.get(i, f"w{i}") for i in range(V)]


def _as_text(spec: dict, workdir: Path):
    """(words, gap): words(ids) is the text TRL's text-taking trainers (DPO, GRPO) get for token ids, and a prompt's
    text + gap + its continuation's splits where the ids do. The real model's single-token words each start with
    their space (_single_token_words), so no gap; a preset's word-level tokenizer splits on a space."""
    if spec["base"]:
        return _hf_tokenizer(spec, workdir).decode, ""
    vocab = _words(spec)

    def words(ids: list[int]) -> str:
        return " ".join(vocab[i] for i in ids)

    return words, " "


def _hf_tokenizer(spec: dict, workdir: Path):
    """The real model's own tokenizer (pad <|endoftext|>, id 0), or for a preset's GPT a word-level tokenizer with
    one word per id (_words): the data are token ids already, and a text "w5 w17 <eos>" encodes to exactly
    [5, 17, eos_id]. No hub download (there is no network). The special tokens' words must not be
    a prefix of other words: transformers matches added tokens inside words ("t1" would split "t1240")."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if spec["base"]:
        tok = AutoTokenizer.from_pretrained(str(workdir / "base"), local_files_only=True)
        tok.pad_token = tok.convert_ids_to_tokens(spec["pad_id"])
        if tok.eos_token_id != spec["eos_id"]:
            raise RuntimeError(f"the base's EOS is {tok.eos_token_id}, the data's {spec['eos_id']}")
        return tok
    words = _words(spec)
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<pad>")


def _hf_lm(spec: dict, workdir: Path):
    import torch
    from transformers import AutoModelForCausalLM, GPT2LMHeadModel

    if spec["base"]:
        model = AutoModelForCausalLM.from_pretrained(workdir / "base", dtype=torch.float32)
    else:
        model = GPT2LMHeadModel.from_pretrained(workdir / "gpt", dtype=torch.float32)
    model.config.pad_token_id = model.generation_config.pad_token_id = spec["pad_id"]
    model.config.eos_token_id = model.generation_config.eos_token_id = spec["eos_id"]
    return model


def _hf_scorer(spec: dict, workdir: Path, head: dict):
    """GPT2ForSequenceClassification (LlamaForSequenceClassification on the real model; one label) from the same
    backbone weights, its score layer = our ScalarHead's weight (the head's bias is 0 at initialisation; HF's score
    layer has none)."""
    import torch
    from transformers import AutoModelForSequenceClassification, GPT2ForSequenceClassification

    if spec["base"]:
        cls, folder = AutoModelForSequenceClassification, "base"
    else:
        cls, folder = GPT2ForSequenceClassification, "gpt"
    model = cls.from_pretrained(workdir / folder, num_labels=1, pad_token_id=spec["pad_id"], dtype=torch.float32)
    if head["linear.bias"].abs().max() != 0:
        raise ValueError("the reward/value head's bias is not 0: HF's score layer has no bias to hold it")
    with torch.no_grad():
        model.score.weight.copy_(head["linear.weight"])
    return model


def _peft(spec: dict, task_type: str):
    """peft's LoraConfig of the real model's adapters (the preset's sft.lora, as alignops'), or None."""
    if not spec["base"]:
        return None
    from peft import LoraConfig

    lora = spec["base"]["lora"]
    return LoraConfig(
        r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=0.0, target_modules=REAL_TARGETS, bias="none",
        task_type=task_type,
    )  # fmt: skip


def _trl_common(spec: dict, workdir: Path, max_steps: int, lr: float, batch_size: int) -> dict:
    """TrainingArguments shared by the three trainers: fp32 or bf16 autocast on CPU, no gradient checkpointing (TRL's
    default is on; alignops has none), no logging/saving/eval, HF's default optimizer (adamw_torch_fused) and clipping
    (1.0)."""
    return dict(
        output_dir=str(workdir / "hf_out"),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=1,
        max_steps=max_steps,
        learning_rate=lr,
        warmup_steps=1,
        max_grad_norm=spec["grad_clip"],
        use_cpu=True,
        bf16=spec["precision"] == "bf16",  # accelerate's autocast, fp32 weights: as Lightning's bf16-mixed
        fp16=False,
        gradient_checkpointing=False,
        logging_strategy="no",
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=spec["seed"],
        data_seed=spec["seed"],
        dataloader_num_workers=0,
    )


def _hf_clock(clock: StepClock, every: int = 1):
    """Marks the start and the end of every `every`-th optimizer step (GRPO: of each generation's last step)."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            clock.mark()

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % every == 0:
                clock.mark()

    return Clock()


def _quiet(trainer) -> None:
    """No console printing of logs (alignops' side runs without a logger or progress bar too)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def trl_sft(spec: dict, data: dict, heads: dict, workdir: Path) -> dict:
    versions = _trl_imports()
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from bench._memory import cpu_peak_rss

    s, W, N = spec["sft"], spec["warmup"], spec["steps"]
    B, clock = s["batch_size"], StepClock()
    clock.load_before = round(os.getloadavg()[0], 2)
    with cpu_peak_rss() as rss:
        ids = data["sft"].tolist()
        labels = [[-100] * spec["prompt_len"] + row[spec["prompt_len"] :] for row in ids]
        dataset = Dataset.from_dict({"input_ids": ids, "labels": labels})  # tokenized: SFTTrainer uses labels as is
        args = SFTConfig(**_trl_common(spec, workdir, W + N, s["lr"], B), max_length=spec["seq_len"])
        trainer = SFTTrainer(
            model=_hf_lm(spec, workdir),
            args=args,
            train_dataset=dataset,
            processing_class=_hf_tokenizer(spec, workdir),
            callbacks=[_hf_clock(clock)],
            peft_config=_peft(spec, "CAUSAL_LM"),
        )
        _quiet(trainer)
        with torch.no_grad():
            batch = trainer.data_collator([trainer.train_dataset[i] for i in range(B)])
            initial_loss = trainer.compute_loss(trainer.model, batch).item()
        trainer.train()
    return _measured(
        clock, rss, W, N, B * spec["seq_len"], initial_loss=initial_loss, optim=args.optim, versions=versions
    )


def trl_reward(spec: dict, data: dict, heads: dict, workdir: Path) -> dict:
    versions = _trl_imports()
    import torch
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    from bench._memory import cpu_peak_rss

    s, W, N = spec["reward"], spec["warmup"], spec["steps"]
    B, clock = s["batch_size"], StepClock()
    clock.load_before = round(os.getloadavg()[0], 2)
    with cpu_peak_rss() as rss:
        n = (W + N) * B
        dataset = Dataset.from_dict(
            {"chosen_ids": data["chosen"][:n].tolist(), "rejected_ids": data["rejected"][:n].tolist()}
        )
        args = RewardConfig(
            **_trl_common(spec, workdir, W + N, s["lr"], B),
            max_length=spec["seq_len"],
            center_rewards_coefficient=s["center_coef"],
        )
        trainer = RewardTrainer(
            model=_hf_scorer(spec, workdir, heads["reward"]),
            args=args,
            train_dataset=dataset,
            processing_class=_hf_tokenizer(spec, workdir),
            callbacks=[_hf_clock(clock)],
            peft_config=_peft(spec, "SEQ_CLS"),  # SEQ_CLS: the score layer trains whole, as alignops' head
        )
        _quiet(trainer)
        with torch.no_grad():
            batch = trainer.data_collator([trainer.train_dataset[i] for i in range(B)])
            initial_loss = trainer.compute_loss(trainer.model, batch).item()
        trainer.train()
    return _measured(clock, rss, W, N, B, initial_loss=initial_loss, optim=args.optim, versions=versions)


def trl_dpo(spec: dict, data: dict, heads: dict, workdir: Path) -> dict:
    versions = _trl_imports()
    import torch
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from bench._memory import cpu_peak_rss

    s, W, N = spec["dpo"], spec["warmup"], spec["steps"]
    B, clock, P = s["batch_size"], StepClock(), spec["prompt_len"]
    clock.load_before = round(os.getloadavg()[0], 2)
    words, gap = _as_text(spec, workdir)
    with cpu_peak_rss() as rss:
        n = (W + N) * B
        chosen, rejected = data["chosen"][:n].tolist(), data["rejected"][:n].tolist()
        # DPOTrainer tokenizes text itself: the same ids as words; prompt + gap + response splits where the ids do,
        # and every response already ends with the EOS word, so TRL adds no EOS of its own
        dataset = Dataset.from_dict(
            {
                "prompt": [words(c[:P]) + gap for c in chosen],
                "chosen": [words(c[P:]) for c in chosen],
                "rejected": [words(r[P:]) for r in rejected],
            }
        )
        args = DPOConfig(**_trl_common(spec, workdir, W + N, s["lr"], B), beta=s["beta"], max_length=spec["seq_len"])
        trainer = DPOTrainer(
            model=_hf_lm(spec, workdir),
            ref_model=None if spec["base"] else _hf_lm(spec, workdir),  # with peft: the policy, adapters off
            args=args,
            train_dataset=dataset,
            processing_class=_hf_tokenizer(spec, workdir),
            callbacks=[_hf_clock(clock)],
            peft_config=_peft(spec, "CAUSAL_LM"),
        )
        _quiet(trainer)
        first = trainer.train_dataset[0]
        if first["prompt_ids"] + first["chosen_ids"] != chosen[0] or first["rejected_ids"] != rejected[0][P:]:
            raise RuntimeError("DPOTrainer tokenized the pairs to other ids than alignops gets: the comparison is off")
        with torch.no_grad():
            batch = trainer.data_collator([trainer.train_dataset[i] for i in range(B)])
            initial_loss = trainer.compute_loss(trainer.model, batch).item()
        trainer.train()
    return _measured(clock, rss, W, N, B, initial_loss=initial_loss, optim=args.optim, versions=versions)


def trl_ppo(spec: dict, data: dict, heads: dict, workdir: Path) -> dict:
    versions = _trl_imports()
    from datasets import Dataset
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    from bench._memory import cpu_peak_rss

    p, W, N = spec["ppo"], spec["ppo_warmup"], spec["ppo_steps"]
    B, clock = p["rollout_batch_size"], StepClock()
    clock.load_before = round(os.getloadavg()[0], 2)
    with cpu_peak_rss() as rss:
        dataset = Dataset.from_dict({"input_ids": data["prompts"][: (W + N) * B].tolist()})
        common = _trl_common(spec, workdir, W + N, p["lr"], B)
        del common["max_steps"], common["max_grad_norm"]  # PPOTrainer counts episodes; its loop does not clip
        args = PPOConfig(
            **common,
            total_episodes=(W + N) * B,
            num_mini_batches=B // p["minibatch_size"],  # minibatch_size episodes per optimizer step
            num_ppo_epochs=p["ppo_epochs"],
            response_length=p["max_new_tokens"],
            local_rollout_forward_batch_size=B,  # generate and score the whole rollout in one call each, as alignops
            num_sample_generations=0,  # no extra sample generations for display
            stop_token_id=None,  # no stop: every response runs to response_length (alignops: random weights
            temperature=p["temperature"],  # rarely sample EOS, so its responses run to max_new_tokens too)
            kl_coef=p["kl_coef"],
            cliprange=p["clip_range"],
            cliprange_value=p["clip_range_value"],
            vf_coef=p["vf_coef"],
            gamma=p["gamma"],
            lam=p["lam"],
        )
        policy = _hf_lm(spec, workdir)
        policy.generation_config.eos_token_id = None
        new_tokens: list[int] = []
        generate = policy.generate

        def recorded_generate(*a, **kw):  # how many tokens each rollout sampled per row
            out = generate(*a, **kw)
            new_tokens.append(out.sequences.size(1) - kw["input_ids"].size(1))
            return out

        policy.generate = recorded_generate
        trainer = PPOTrainer(
            args=args,
            processing_class=_hf_tokenizer(spec, workdir),
            model=policy,
            ref_model=None if spec["base"] else _hf_lm(spec, workdir),  # with peft: the policy, adapters off
            reward_model=_hf_scorer(spec, workdir, heads["reward"]),
            value_model=_hf_scorer(spec, workdir, heads["value"]),
            train_dataset=dataset,
            eval_dataset=dataset,
            callbacks=[_hf_clock(clock)],
            peft_config=_peft(spec, "CAUSAL_LM"),
        )
        _quiet(trainer)
        trainer.train()
    return _measured(clock, rss, W, N, B, response_len_last=new_tokens[-1], optim=args.optim, versions=versions)


def trl_grpo(spec: dict, data: dict, heads: dict, workdir: Path) -> dict:
    """TRL's GRPOTrainer (the newest TRL, transformers' generate: no vLLM on CPU) on alignops' GRPO shapes: the same
    prompts, group_size samples each, minibatches of minibatch_size completions (one optimizer step each, generation
    every episodes / minibatch steps), beta = PPO's KL coefficient (so a reference forward runs, as alignops' KL
    in the reward), the reward model scoring. TRL's own loss (its default loss_type) and text round trip: it decodes
    the completions and tokenizes prompt + completion again for the reward model."""
    versions = _trl_imports()
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from bench._memory import cpu_peak_rss

    p, W, N = spec["ppo"], spec["ppo_warmup"], spec["ppo_steps"]
    B, G, M = p["rollout_batch_size"], spec["grpo"]["group_size"], p["minibatch_size"]
    per_generation = B // M  # minibatches of one generation; each pass over them takes that many optimizer steps
    per_iteration = per_generation * p["ppo_epochs"]  # optimizer steps between two generations
    clock = StepClock()
    clock.load_before = round(os.getloadavg()[0], 2)
    tokenizer = _hf_tokenizer(spec, workdir)
    words, gap = _as_text(spec, workdir)
    with cpu_peak_rss() as rss:
        prompts = data["prompts"][: (W + N) * B // G].tolist()
        dataset = Dataset.from_dict({"prompt": [words(ids) + gap for ids in prompts]})
        common = _trl_common(spec, workdir, (W + N) * per_iteration, p["lr"], M)
        args = GRPOConfig(
            **common,
            num_generations=G,
            steps_per_generation=per_generation,  # generation batch B = M * per_generation, B / G prompts
            num_iterations=p["ppo_epochs"],  # passes over each generation, as ppo_epochs
            max_completion_length=p["max_new_tokens"],
            # fixed length as alignops' rollouts: EOS cannot end a completion before max_completion_length
            generation_kwargs={"min_new_tokens": p["max_new_tokens"]} if p["fixed_length"] else None,
            temperature=p["temperature"],
            beta=p["kl_coef"],
            epsilon=p["clip_range"],
            log_completions=False,
        )
        trainer = GRPOTrainer(
            model=_hf_lm(spec, workdir),
            reward_funcs=_hf_scorer(spec, workdir, heads["reward"]),
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            reward_processing_classes=_hf_tokenizer(spec, workdir),
            callbacks=[_hf_clock(clock, every=per_iteration)],
            peft_config=_peft(spec, "CAUSAL_LM"),
        )
        _quiet(trainer)
        first = tokenizer(dataset[0]["prompt"], add_special_tokens=False)["input_ids"]
        if first != prompts[0]:
            raise RuntimeError("GRPOTrainer's prompts tokenize to other ids than alignops gets: the comparison is off")
        lengths: list[float] = []  # each generation's mean completion length, read before the final log clears it
        generate = trainer._generate

        def recorded_generate(*a, **kw):
            out = generate(*a, **kw)
            lengths.append(trainer._metrics["train"]["completions/mean_length"][-1])
            return out

        trainer._generate = recorded_generate
        trainer.train()
    return _measured(clock, rss, W, N, B, response_len_last=lengths[-1], optim=args.optim, versions=versions)


TRL = {"sft": trl_sft, "reward": trl_reward, "dpo": trl_dpo, "ppo": trl_ppo, "grpo": trl_grpo}


if __name__ == "__main__":
    main()
