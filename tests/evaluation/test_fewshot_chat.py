"""Few-shot prompts on a base with its own chat template: the demonstrations become turns of a conversation in
that template; on the project's tokenizer the prompt stays fewshot_prompt's."""

from __future__ import annotations

from alignops.chat import HFTokenizer, ProjectTokenizer
from alignops.evaluation.fewshot import fewshot_messages, fewshot_prompt, fewshot_text
from tests.support.hf_models import tiny_tokenizer

QUESTION = "Is the sentiment of this movie review positive or negative?\n\n"
QUERY = {"text": "A slow, lovely film.", "label": "positive", "lang": "en"}
DEMOS = [
    {"text": "Dreadful.", "label": "negative", "lang": "en"},
    {"text": "很好看。", "label": "positive", "lang": "zh"},
]


def test_demonstrations_are_turns_of_the_conversation():
    assert fewshot_messages(QUERY, DEMOS) == [
        {"role": "user", "content": QUESTION + "Dreadful."},
        {"role": "assistant", "content": "Negative."},
        {"role": "user", "content": "这条评论的情感是正面还是负面？\n\n很好看。"},
        {"role": "assistant", "content": "正面。"},
        {"role": "user", "content": QUESTION + "A slow, lovely film."},
    ]
    assert fewshot_messages(QUERY, []) == [{"role": "user", "content": QUESTION + "A slow, lovely film."}]


def test_a_hugging_face_base_gets_its_own_template_written_out():
    text = fewshot_text(HFTokenizer(tiny_tokenizer()), QUERY, DEMOS[:1])
    assert text == (
        f"<|im_start|>user\n{QUESTION}Dreadful.<|im_end|>\n<|im_start|>assistant\nNegative.<|im_end|>\n"
        f"<|im_start|>user\n{QUESTION}A slow, lovely film.<|im_end|>\n<|im_start|>assistant\n"
    )


def test_the_project_tokenizer_keeps_the_plain_prompt():
    from tokenizers import Tokenizer, models

    project = ProjectTokenizer(Tokenizer(models.BPE()))
    assert fewshot_text(project, QUERY, DEMOS) == fewshot_prompt(QUERY, DEMOS)
