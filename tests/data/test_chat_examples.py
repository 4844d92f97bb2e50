"""The training examples of any base (alignops.data.loaders.chat_example): on the own GPT's tokenizer they are
exactly what SFTDataset built before it went through the ChatTokenizer (plain prompts, imported conversations,
windowed long pairs); on a Hugging Face tokenizer they follow its own chat template and end at the EOS."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignops.chat import IGNORE_INDEX, HFTokenizer
from alignops.data.loaders import EOS, SFTDataset, chat_example
from alignops.data.preferences import Pair, PairDataset
from alignops.data.tokenizer import chat_messages, chat_template, load_tokenizer, train_tokenizer
from tests.support.hf_models import tiny_tokenizer

LONG = " ".join(f"word{i}" for i in range(80))
RECORDS = [
    {"prompt": "What is the capital of France?", "response": "Paris is the capital."},
    {"prompt": "Say hi", "response": "Hi!"},
    {"prompt": LONG, "response": "Short answer."},  # the prompt is cut from its start
    {"prompt": "Tell me everything.", "response": LONG},  # the response is cut at its end
    {
        "prompt": "And Italy?",
        "response": "Rome.",
        "messages": [
            {"role": "system", "content": "You are brief."},
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": "And Italy?"},
            {"role": "assistant", "content": "Rome."},
        ],
    },
]


def before(records, tokenizer, max_len: int) -> tuple[list[tuple[list[int], list[int]]], int]:
    """SFTDataset as it was built on the project's tokenizer alone: prompt text (chat_messages for a conversation)
    and response + EOS tokenized apart, the prompt keeping its end and the response its start when too long; and
    how many were cut."""
    out, cut = [], 0
    for r in records:
        text = chat_messages(r["messages"]) if r.get("messages") else chat_template(r["prompt"])
        p, resp = tokenizer.encode(text).ids, tokenizer.encode(r["response"] + EOS).ids
        if len(p) + len(resp) > max_len:
            cut += 1
            p = p[-max(max_len - len(resp), max_len // 2) :]
            resp = resp[: max_len - len(p)]
        out.append((p + resp, [IGNORE_INDEX] * len(p) + resp))
    return out, cut


@pytest.fixture(scope="module")
def project_tok(tmp_path_factory: pytest.TempPathFactory):
    texts = [f"{r['prompt']} {r['response']} You are brief. Rome." for r in RECORDS] * 20
    info = train_tokenizer(texts, vocab_size=320, min_frequency=1, out_dir=tmp_path_factory.mktemp("tok"))
    return load_tokenizer(Path(info.path))


@pytest.mark.parametrize("max_len", [24, 256])
def test_own_gpt_examples_are_unchanged(project_tok, max_len: int) -> None:
    ds = SFTDataset(RECORDS, project_tok, max_len)
    got = [(ds[i]["input_ids"].tolist(), ds[i]["labels"].tolist()) for i in range(len(ds))]
    expected, cut = before(RECORDS, project_tok, max_len)
    assert got == expected and ds.truncated == cut and (cut >= 2) == (max_len == 24)
    assert all(len(ids) <= max_len and any(label != IGNORE_INDEX for label in labels) for ids, labels in got)


def test_hf_examples_follow_the_template_and_end_at_eos() -> None:
    hf = tiny_tokenizer()  # ChatML: the template leaves a newline after <|im_end|>
    tok = HFTokenizer(hf)
    ids, labels, cut = chat_example(tok, "What is the capital of France?", "Paris is the capital.", 256)
    exchange = [{"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "Paris is the capital."}]  # fmt: skip
    full = list(hf.apply_chat_template(exchange, tokenize=True)["input_ids"])
    assert not cut and ids == full[: len(ids)] and full[len(ids) :] == hf.encode("\n", add_special_tokens=False)
    assert ids[-1] == hf.eos_token_id and labels[-1] == hf.eos_token_id
    learned = [label for label in labels if label != IGNORE_INDEX]
    assert hf.decode(learned) == "Paris is the capital." + hf.eos_token
    # a preference pair's sides are the same examples, so the reward model scores what PPO hands it
    pair = PairDataset([Pair("What is the capital of France?", "Paris is the capital.", "Rome.", "s", 1.0)], hf, 256)
    assert pair[0]["chosen_ids"].tolist() == ids and pair[0]["chosen_labels"].tolist() == labels
