"""The multi-turn context check counts a conversation's longest last request with the model's own tokenizer (where
the model is a folder here): never fewer tokens than any planned conversation's real last request, by the same
tokenizer, through the client's own rendering (the truth below). It used to count one token a word, fewer than the
tiny model's byte-level BPE gives (the old count is shown to fall short of the truth)."""

from __future__ import annotations

import shutil

import pytest
from lem_runner.contract.conversation import ConversationConfig
from lem_runner.serving.conversations import Templater, plan_conversations

TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
ANSWER = 12


def _old_count(c: ConversationConfig, answer: int) -> int:  # the check before: one token a word, 16 a message
    turns, user = c.max_turns(), int(c.user_tokens.max)
    return turns * (user + 16) + (turns - 1) * (answer + 16) + answer


@pytest.mark.parametrize("templated", [False, True])
def test_the_longest_last_request_is_counted_by_the_model_tokenizer(tmp_path, tiny_model_path, templated):
    from transformers import AutoTokenizer

    model = tmp_path / "model"
    shutil.copytree(tiny_model_path, model)
    tok = AutoTokenizer.from_pretrained(model)
    if templated:
        tok.chat_template = TEMPLATE
        tok.save_pretrained(model)
    filler = " the"  # one token, and so is each repeat: an answer text of exactly ANSWER tokens
    assert len(tok(filler * ANSWER, add_special_tokens=False)["input_ids"]) == ANSWER
    c = ConversationConfig(n_conversations=12, turns=4, user_tokens={"dist": "uniform", "min": 5, "max": 30},
                           answer_tokens={"value": ANSWER})
    render = Templater(str(model))
    truth = 0
    for conv in plan_conversations(c, "poisson", 1.0, 1.0, 64, seed=7):
        history: list[tuple[str, str]] = []
        for k, user in enumerate(conv.users):
            history.append(("user", user))
            if k < len(conv.users) - 1:
                history.append(("assistant", filler * ANSWER))
        truth = max(truth, len(tok(render(history))["input_ids"]) + ANSWER)
    counted = c.max_history_tokens(64, AutoTokenizer.from_pretrained(model))
    assert counted >= truth
    assert _old_count(c, ANSWER) < truth  # the one-token-a-word count fell short of the real tokens
    print(f"templated={templated}: real longest {truth}, counted {counted}, old count {_old_count(c, ANSWER)}")


def test_without_a_tokenizer_the_estimate_is_two_tokens_a_word():
    c = ConversationConfig(turns=3, user_tokens={"value": 10}, answer_tokens={"value": 20})
    assert c.max_history_tokens(64) == 3 * (2 * 10 + 16) + 2 * (20 + 16) + 20
