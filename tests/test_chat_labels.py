"""alignops.chat.response_labels: the response-only loss mask, checked token by token against each tokenizer's own
chat template (ChatML as Qwen2/SmolLM2 use it, an [INST] template as Llama 2 uses it, the project's template on the
own GPT's tokenizer, the fallback for a tokenizer without a template), and its refusals."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from alignops.chat import IGNORE_INDEX, HFTokenizer, ProjectTokenizer, response_labels
from alignops.data.loaders import SFTDataset
from alignops.data.tokenizer import chat_template, load_tokenizer, train_tokenizer
from tests.support.hf_models import CHAT_TEMPLATE, EOS, tiny_tokenizer

# Llama 2's shape: no generation prompt (the prompt ends at [/INST]), the answer starts with a space, EOS closes it
INST_TEMPLATE = (
    "{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }} [/INST]"
    "{% elif m['role'] == 'assistant' %} {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)
TEMPLATES = {"qwen2-chatml": CHAT_TEMPLATE, "llama-inst": INST_TEMPLATE}
PROMPT, RESPONSE = "What is the capital of France?", "Paris is the capital."


def _template_ids(hf, messages: list[dict], add_generation_prompt: bool) -> list[int]:
    """The tokenizer's own tokenization of the template (transformers' apply_chat_template)."""
    out = hf.apply_chat_template(messages, tokenize=True, add_generation_prompt=add_generation_prompt)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def _check_against_template(hf, messages: list[dict], response: str) -> None:
    example = response_labels(HFTokenizer(hf), messages, response)
    exchange = [*messages, {"role": "assistant", "content": response}]
    assert example.input_ids == _template_ids(hf, exchange, add_generation_prompt=False)
    n_prompt = len(_template_ids(hf, messages, add_generation_prompt=True))
    assert example.prompt_length == n_prompt
    labels = example.labels
    assert set(labels[:n_prompt]) == {IGNORE_INDEX}
    n_learned = sum(label != IGNORE_INDEX for label in labels)
    learned = labels[n_prompt : n_prompt + n_learned]
    assert learned == example.input_ids[n_prompt : n_prompt + n_learned]  # contiguous, labels equal the ids
    assert set(labels[n_prompt + n_learned :]) <= {IGNORE_INDEX}  # nothing after the EOS is learned
    assert learned[-1] == hf.eos_token_id and hf.eos_token_id not in learned[:-1]
    assert hf.decode(learned).strip() == response + EOS


@pytest.mark.parametrize("name", TEMPLATES)
def test_labels_follow_the_tokenizers_template(name: str) -> None:
    hf = tiny_tokenizer(chat_template=TEMPLATES[name])
    _check_against_template(hf, [{"role": "user", "content": PROMPT}], RESPONSE)
    example = response_labels(HFTokenizer(hf), PROMPT, RESPONSE)  # a plain prompt is one user message
    assert example == response_labels(HFTokenizer(hf), [{"role": "user", "content": PROMPT}], RESPONSE)
    if name == "qwen2-chatml":  # ChatML leaves "\n" after <|im_end|>: in the ids, not learned
        assert example.labels[-1] == IGNORE_INDEX and hf.decode(example.input_ids[-1:]) == "\n"


def test_only_the_last_answer_of_a_conversation_is_learned() -> None:
    hf = tiny_tokenizer()
    conversation = [
        {"role": "system", "content": "You are brief."},
        {"role": "user", "content": PROMPT},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And the capital of Italy?"},
    ]
    _check_against_template(hf, conversation, "Rome.")


@pytest.fixture(scope="module")
def project_tok(tmp_path_factory: pytest.TempPathFactory):
    texts = [f"{PROMPT} {RESPONSE} Rome is the capital of Italy, number {i}." for i in range(50)]
    info = train_tokenizer(texts, vocab_size=300, min_frequency=1, out_dir=tmp_path_factory.mktemp("tok"))
    return load_tokenizer(Path(info.path))


def test_project_template_on_the_gpt_tokenizer(project_tok) -> None:
    tok = ProjectTokenizer(project_tok)
    example = response_labels(tok, PROMPT, RESPONSE)
    assert example.input_ids == project_tok.encode(chat_template(PROMPT, RESPONSE)).ids
    n_prompt = len(project_tok.encode(chat_template(PROMPT)).ids)
    assert example.prompt_length == n_prompt and example.labels[n_prompt:] == example.input_ids[n_prompt:]
    assert example.labels[-1] == tok.eos_id
    assert project_tok.decode(example.labels[n_prompt:], skip_special_tokens=False) == RESPONSE + "<|endoftext|>"
    # the SFT dataset of the own GPT learns exactly the same tokens
    sft = SFTDataset([{"prompt": PROMPT, "response": RESPONSE}], project_tok, max_len=256)[0]
    assert sft["input_ids"].tolist() == example.input_ids and sft["labels"].tolist() == example.labels


def test_tokenizer_without_template_uses_the_projects_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    hf = tiny_tokenizer(chat_template=None)
    with caplog.at_level(logging.INFO, logger="alignops.chat"):
        tok = HFTokenizer(hf)
    assert "no chat template" in caplog.text
    example = response_labels(tok, PROMPT, RESPONSE)
    text = chat_template(PROMPT, RESPONSE).replace("<|endoftext|>", EOS)
    assert hf.decode(example.input_ids) == text
    learned = [label for label in example.labels if label != IGNORE_INDEX]
    assert hf.decode(learned) == RESPONSE + EOS


def test_templates_that_cannot_be_masked_are_refused() -> None:
    no_eos = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    with pytest.raises(ValueError, match="without the tokenizer's EOS.*tokenizer_config.json"):
        response_labels(HFTokenizer(tiny_tokenizer(chat_template=no_eos)), PROMPT, RESPONSE)
    not_a_prefix = CHAT_TEMPLATE.replace("<|im_start|>assistant\n{% endif %}", "<|im_start|>bot\n{% endif %}")
    assert not_a_prefix != CHAT_TEMPLATE
    with pytest.raises(ValueError, match="not render the prompt as a prefix"):
        response_labels(HFTokenizer(tiny_tokenizer(chat_template=not_a_prefix)), PROMPT, RESPONSE)
    with pytest.raises(ValueError, match="role 'robot'"):
        response_labels(HFTokenizer(tiny_tokenizer(chat_template=None)), [{"role": "robot", "content": "x"}], "y")
