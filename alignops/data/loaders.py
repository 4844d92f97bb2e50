"""Token datasets and the resumable loader that feed models.lm: pretraining blocks, SFT pairs, classification.

    tok = load_tokenizer(path)
    ids = encode_corpus([r["text"] for r in load_split(data_dir, "corpus", "train")], tok)   # 1-D LongTensor
    train = resumable_loader(PackedBlocks(ids, block_size=256), batch_size=12, seed=0, shuffle=True)
    trainer = Trainer(max_steps=5000)          # max_steps without max_epochs: epochs cycle until max_steps
    trainer.fit(CausalLM(...), train)          # a checkpoint holds the data position; fit(ckpt_path=...) resumes

    sft = SFTDataset(load_split(data_dir, "sft", "train"), tok, max_len=256)
    loader = resumable_loader(sft, 8, seed=0, shuffle=True, collate_fn=collate_right_pad(pad_id(tok)))

Under DDP or FSDP every rank reads its own share of the same order (ResumableSampler), so the stages' Trainer
sets use_distributed_sampler=False: Lightning's DistributedSampler would reorder the data and lose its position.

One convention everywhere: input_ids and labels have the same length T and are aligned (labels[i] is the token
at position i, -100 where nothing is learned); models.lm.LMModule shifts them, predicting labels[i + 1] from
positions <= i. attention_mask is 1 on real tokens, 0 on padding (right padding).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from alignops.chat import ChatTokenizer, chat_tokenizer, response_labels
from alignops.config import SPECIAL_TOKENS

EOS, PAD = SPECIAL_TOKENS[0], SPECIAL_TOKENS[1]
IGNORE_INDEX = -100  # labels value that cross-entropy skips (torch's default ignore_index)

Example = dict[str, Tensor]


def special_id(tokenizer, token: str) -> int:
    token_id = tokenizer.token_to_id(token)
    if token_id is None:
        raise ValueError(f"the tokenizer has no {token} token: train it with alignops.data.tokenizer.train_tokenizer")
    return token_id


def pad_id(tokenizer) -> int:
    """The pad id of the project's tokenizer (an error if it has none), or of any other (alignops.chat)."""
    from tokenizers import Tokenizer

    return special_id(tokenizer, PAD) if isinstance(tokenizer, Tokenizer) else chat_tokenizer(tokenizer).pad_id


def encode_corpus(texts: Sequence[str], tokenizer) -> Tensor:
    """All texts as one 1-D LongTensor, each text's ids followed by <|endoftext|> (the document separator)."""
    eos = special_id(tokenizer, EOS)
    ids: list[int] = []
    for encoding in tokenizer.encode_batch(list(texts)):
        ids.extend(encoding.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


class PackedBlocks(Dataset):
    """Blocks of block_size tokens cut from one token stream (encode_corpus), for pretraining.

    Consecutive blocks share one token (stride block_size - 1): the model learns labels[1:] from input_ids[:-1]
    inside a block, so every next-token pair of the stream is a target exactly once. Only the tail that does
    not fill a last block is left out."""

    def __init__(self, tokens: Tensor, block_size: int) -> None:
        if block_size < 2:
            raise ValueError(f"block_size must be >= 2 (a block must hold a next-token pair), got {block_size}")
        if tokens.dim() != 1:
            raise ValueError(f"tokens must be 1-D (encode_corpus), got shape {tuple(tokens.shape)}")
        self.tokens = tokens
        self.block_size = block_size
        self.stride = block_size - 1
        self.num_blocks = max(0, (len(tokens) - 1) // self.stride)

    def __len__(self) -> int:
        return self.num_blocks

    def __getitem__(self, i: int) -> Example:
        if not 0 <= i < self.num_blocks:
            raise IndexError(f"block {i} out of range ({self.num_blocks} blocks)")
        block = self.tokens[i * self.stride : i * self.stride + self.block_size]
        return dict(input_ids=block, labels=block, attention_mask=torch.ones_like(block))


def pair_window(prompt: list[int], response: list[int], max_len: int) -> tuple[list[int], list[int], bool]:
    """prompt + response in at most max_len tokens, its labels (-100 on the prompt: only the response is learned or
    scored), and whether it was cut. The prompt keeps its end (the part nearest the response), at most what the
    response leaves and never less than half the window; the response keeps its start, so every pair keeps at
    least one response token."""
    cut = len(prompt) + len(response) > max_len
    if cut:
        prompt = prompt[-max(max_len - len(response), max_len // 2) :]
        response = response[: max_len - len(prompt)]
    return prompt + response, [IGNORE_INDEX] * len(prompt) + response, cut


def chat_example(tok: ChatTokenizer, prompt: str | list[dict[str, str]], response: str, max_len: int):
    """(input_ids, labels, cut) of one exchange in the base's own chat template (alignops.chat.response_labels):
    the prompt's tokens as the model is given them at generation time, then the response and the EOS that ends
    it, learned; windowed to max_len by pair_window. What the template writes after that EOS (ChatML's newline) is
    left out: it is never learned, and a policy's sampled response ends at its EOS too, so the reward model
    scores the same shape in training and in PPO."""
    example = response_labels(tok, prompt, response)
    n = example.prompt_length
    end = n + next(i for i, label in enumerate(example.labels[n:]) if label == tok.eos_id) + 1
    return pair_window(example.input_ids[:n], example.input_ids[n:end], max_len)


class SFTDataset(Dataset):
    """Prompt/response pairs in the base's chat template, learning only the response and its EOS (chat_example).

    tokenizer: the base's (the project's BPE or a transformers tokenizer) or its alignops.chat.ChatTokenizer.
    Prompt and response are tokenized apart, so the prompt's tokens are exactly what the model is given at
    generation time. An imported chat (messages) is the conversation so far, its response the final assistant
    turn. A pair longer than max_len gets a window (pair_window); `truncated` counts the pairs that were cut."""

    def __init__(self, records: Sequence[dict[str, Any]], tokenizer, max_len: int) -> None:
        if max_len < 2:
            raise ValueError(f"max_len must be >= 2, got {max_len}")
        tok = chat_tokenizer(tokenizer)
        self.examples: list[tuple[Tensor, Tensor]] = []  # (input_ids, labels)
        self.truncated = 0
        for r in records:
            prompt = r["messages"][:-1] if r.get("messages") else r["prompt"]
            ids, labels, cut = chat_example(tok, prompt, r["response"], max_len)
            self.truncated += cut
            self.examples.append((torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long)))

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        ids, labels = self.examples[i]
        return dict(input_ids=ids, labels=labels)


class ClassificationDataset(Dataset):
    """Texts with a class index; a text longer than max_len keeps its first max_len tokens.

    labels: the class names in index order (e.g. ["negative", "positive"]); a record whose label is not one of
    them is an error."""

    def __init__(self, records: Sequence[dict[str, Any]], tokenizer, max_len: int, labels: Sequence[str]) -> None:
        index = {name: i for i, name in enumerate(labels)}
        self.examples: list[tuple[Tensor, int]] = []
        encoded = chat_tokenizer(tokenizer).encode_batch([r["text"] for r in records])  # any base's tokenizer
        for n, (record, ids) in enumerate(zip(records, encoded, strict=True)):
            if record["label"] not in index:
                raise ValueError(f"record {n}: label {record['label']!r} is not one of {list(labels)}")
            if not ids:
                raise ValueError(f"record {n}: text {record['text']!r} has no tokens")
            self.examples.append((torch.tensor(ids[:max_len], dtype=torch.long), index[record["label"]]))

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        ids, label = self.examples[i]
        return dict(input_ids=ids, label=torch.tensor(label))


class PackedExamples(Dataset):
    """Variable-length examples (input_ids, labels) packed into rows of at most `capacity` tokens by best-fit
    decreasing (TRL's `bfd` packing): longest first, each into the fullest row it still fits, so little padding
    is left. A row is its examples end to end; position ids restart at 0 where each example starts, which is
    how the model keeps them apart (models.base.packed_segments: each attends only to itself). The first token
    of each example predicts nothing from the one before, so the loss is that of the same examples padded.

    Deterministic (no randomness: the loader's sampler shuffles rows). `fill` is the fraction of row tokens that
    are real, before the collate pads rows to the batch's longest."""

    def __init__(self, examples: Dataset, capacity: int) -> None:
        import bisect

        items = [examples[i] for i in range(len(examples))]
        longest = max((len(e["input_ids"]) for e in items), default=0)
        if longest > capacity:
            raise ValueError(f"an example of {longest} tokens does not fit rows of {capacity}: raise the capacity")
        order = sorted(range(len(items)), key=lambda i: (-len(items[i]["input_ids"]), i))
        self.rows: list[list[Example]] = []
        room: list[tuple[int, int]] = []  # (tokens left, row), ascending: the first that fits is the fullest
        for i in order:
            n = len(items[i]["input_ids"])
            at = bisect.bisect_left(room, (n, -1))
            if at == len(room):
                self.rows.append([])
                left, row = capacity, len(self.rows) - 1
            else:
                left, row = room.pop(at)
            self.rows[row].append(items[i])
            if left - n > 0:
                bisect.insort(room, (left - n, row))
        tokens = sum(len(e["input_ids"]) for e in items)
        self.fill = tokens / max(1, capacity * len(self.rows))

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Example:
        parts = self.rows[i]
        labels = []
        for e in parts:
            first = e["labels"].clone()
            first[0] = IGNORE_INDEX  # the previous example's last token does not predict this one
            labels.append(first)
        return dict(
            input_ids=torch.cat([e["input_ids"] for e in parts]),
            labels=torch.cat(labels),
            position_ids=torch.cat([torch.arange(len(e["input_ids"])) for e in parts]),
        )


def collate_packed(pad_token_id: int) -> Callable[[list[Example]], Example]:
    """Collate PackedExamples rows: padded on the right to the longest row, the padding one more sequence of its
    own (positions from 0, nothing learned), no attention_mask; real_tokens counts the tokens that are not
    padding (for tokens/s)."""

    def collate(rows: list[Example]) -> Example:
        T = max(len(r["input_ids"]) for r in rows)
        batch = {
            "input_ids": torch.full((len(rows), T), pad_token_id, dtype=torch.long),
            "labels": torch.full((len(rows), T), IGNORE_INDEX, dtype=torch.long),
            "position_ids": torch.zeros((len(rows), T), dtype=torch.long),
        }
        for row, r in enumerate(rows):
            n = len(r["input_ids"])
            batch["input_ids"][row, :n] = r["input_ids"]
            batch["labels"][row, :n] = r["labels"]
            batch["position_ids"][row, :n] = r["position_ids"]
            batch["position_ids"][row, n:] = torch.arange(T - n)
        batch["real_tokens"] = torch.tensor(sum(len(r["input_ids"]) for r in rows))
        return batch

    return collate


def collate_right_pad(pad_token_id: int) -> Callable[[list[Example]], Example]:
    """Collate examples of different lengths: input_ids padded on the right with pad_token_id, labels with -100,
    plus attention_mask (1 real, 0 padding); fixed-size fields (a class label) are stacked."""

    def collate(examples: list[Example]) -> Example:
        lengths = [len(e["input_ids"]) for e in examples]
        T = max(lengths)
        batch: Example = {}
        for key, fill in (("input_ids", pad_token_id), ("labels", IGNORE_INDEX)):
            if key in examples[0]:
                batch[key] = torch.full((len(examples), T), fill, dtype=torch.long)
                for row, e in enumerate(examples):
                    batch[key][row, : len(e[key])] = e[key]
        batch["attention_mask"] = (torch.arange(T) < torch.tensor(lengths)[:, None]).long()  # (B, T)
        for key in examples[0].keys() - batch.keys():
            batch[key] = torch.stack([e[key] for e in examples])
        return batch

    return collate


def data_parallel_rank() -> tuple[int, int]:
    """(rank, world size) of the running distributed process group; (0, 1) outside distributed training."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ResumableSampler(Sampler[int]):
    """Indices 0..n-1 in an order fixed by (seed, epoch), starting at `start` (the data position on resume).

    Lightning calls set_epoch(epoch) before every epoch, the way it does for DistributedSampler.

    Under distributed training (DDP, FSDP) each rank takes every world-th index of that one order, from its rank
    on: with a per-device batch of B, step k's batches of all ranks together are step k's batch of one process
    with batch world * B. The rank and world size are read when iterating, from the process group Lightning
    has set up by then (loaders are built before it exists). The order is padded by repeating its start so
    every rank gets the same number of batches: ranks that took different numbers of steps would hang."""

    def __init__(self, n: int, seed: int, shuffle: bool) -> None:
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch = 0
        self.start = 0  # read and cleared when the next pass begins

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        # a generator: the order is drawn when the first index is asked for, after Lightning's set_epoch
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)  # own RNG: global RNG untouched
            order = torch.randperm(self.n, generator=generator)
        else:
            order = torch.arange(self.n)
        rank, world = data_parallel_rank()
        if world > 1 and self.n:
            order = order.repeat(math.ceil(len(self) * world / self.n))[: len(self) * world][rank::world]
        start, self.start = self.start, 0
        yield from order[start:].tolist()

    def __len__(self) -> int:
        # a whole epoch of this rank: Lightning counts the batches of an epoch from it
        return math.ceil(self.n / data_parallel_rank()[1])


class ResumableLoader(DataLoader):
    """A DataLoader that knows its position in the epoch: state_dict() / load_state_dict().

    Lightning (2.x) saves state_dict() of every train loader that has both methods into the checkpoint
    (loops.fit_loop.combined_loader) and, on fit(ckpt_path=...), calls load_state_dict() before iterating: the
    resumed epoch then yields only the batches the interrupted run had not reached yet. Batches are counted as
    they leave the loader, so worker prefetching does not shift the position."""

    sampler: ResumableSampler

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches_done = 0  # batches of the current epoch handed out
        self._resume_at = 0  # batches the next pass skips

    def __iter__(self) -> Iterator[Any]:
        # a generator, so nothing happens until the first batch is asked for (Lightning calls iter() early)
        skip, self._resume_at = self._resume_at, 0
        self.sampler.start = skip * self.batch_size
        self.batches_done = skip
        for batch in super().__iter__():
            self.batches_done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return dict(
            epoch=self.sampler.epoch,
            batches_done=self.batches_done,
            batch_size=self.batch_size,
            num_examples=self.sampler.n,
            seed=self.sampler.seed,
            world_size=data_parallel_rank()[1],  # batches_done counts this rank's share of the data
        )

    def load_state_dict(self, state: dict[str, int]) -> None:
        world = data_parallel_rank()[1]
        saved = (state["num_examples"], state["batch_size"], state["seed"], state.get("world_size", 1))
        if saved != (self.sampler.n, self.batch_size, self.sampler.seed, world):
            raise ValueError(
                f"the checkpoint's data position is for {saved[0]} examples in batches of {saved[1]} with seed "
                f"{saved[2]} on {saved[3]} device(s); this loader has {self.sampler.n}, {self.batch_size}, seed "
                f"{self.sampler.seed} on {world}. Resume with the same data, batch size, seed and number of "
                "devices, or start the run anew."
            )
        self.sampler.set_epoch(state["epoch"])
        # a finished epoch: the next pass is a whole new epoch (Lightning advances the epoch itself)
        self._resume_at = state["batches_done"] if state["batches_done"] < len(self) else 0
        self.batches_done = state["batches_done"]


def resumable_loader(
    dataset: Dataset,
    batch_size: int,
    seed: int = 0,
    shuffle: bool = True,
    collate_fn: Callable | None = None,
    drop_last: bool = False,
    num_workers: int = 0,
) -> ResumableLoader:
    """A deterministic DataLoader over dataset, resumable mid-epoch (see ResumableLoader).

    The order of epoch e is a function of (seed, e) alone. Train for a number of steps with
    Trainer(max_steps=N): epochs then repeat, each in a new order, until N steps."""
    return ResumableLoader(
        dataset,
        batch_size=batch_size,
        sampler=ResumableSampler(len(dataset), seed, shuffle),
        collate_fn=collate_fn,
        drop_last=drop_last,
        num_workers=num_workers,
        # every iter() of a DataLoader draws a base seed (for workers) from this generator, by default the
        # global RNG: a resumed run would then draw at a different step, and its dropout masks would differ
        generator=torch.Generator().manual_seed(seed),
    )


def unigram_baseline_loss(train_ids: Tensor, val_ids: Tensor, vocab_size: int) -> float:
    """Cross-entropy (nats/token) on val_ids of an add-one-smoothed unigram model fit on train_ids: the loss
    of a model that knows token frequencies and nothing of context; a pretrained model must clearly beat it."""
    counts = torch.bincount(train_ids.flatten(), minlength=vocab_size).double() + 1.0
    log_probs = counts.log() - math.log(counts.sum().item())
    return -log_probs[val_ids.flatten()].mean().item()


class PromptDataset(Dataset):
    """Prompts in the base's chat template, as a policy continues them (PPO rollouts); a long prompt keeps its end."""

    def __init__(self, prompts: Sequence[str], tokenizer, max_len: int) -> None:
        tok = chat_tokenizer(tokenizer)
        self.examples = [torch.tensor(ids[-max_len:]) for ids in tok.encode_batch([tok.chat(p) for p in prompts])]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Example:
        return {"input_ids": self.examples[i]}


def collate_left_pad(pad_token_id: int) -> Callable[[list[Example]], Example]:
    """Collate prompts padded on the left, so that every row ends where generation starts."""

    def collate(examples: list[Example]) -> Example:
        T = max(len(e["input_ids"]) for e in examples)
        ids = torch.full((len(examples), T), pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(examples), T), dtype=torch.long)
        for row, e in enumerate(examples):
            n = len(e["input_ids"])
            ids[row, T - n :] = e["input_ids"]
            mask[row, T - n :] = 1
        return {"input_ids": ids, "attention_mask": mask}

    return collate
