"""The ``serving.conversations:`` section: multi-turn conversations (what GuideLLM and AIPerf call a multi-turn
session; "session" in lem is an engine session). Each turn's prompt is the whole history so far — the earlier user
messages and the model's actual answers — plus the new user message; the next turn is sent when the answer has
arrived plus a think time. Conversations arrive by ``serving.arrival`` (``rate`` is then new conversations per
second) or, with ``arrival: concurrency``, as a closed loop of ``concurrency`` users each starting a new
conversation when their last one ends."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from lem_runner.contract.lengths import LengthDistribution

#: ConversationFigures.prompt_format: how the history became a prompt
PLAIN = "plain concatenation with role labels ('User:' / 'Assistant:'): the model's tokenizer has no chat template"
TEMPLATED = "the model's chat template (its tokenizer's apply_chat_template, generation prompt added)"
CHAT_ROUTE = ("messages on the server's chat route (/v1/chat/completions): the server applies the model's chat "
              "template (vllm.reasoning_parser)")

#: words a synthetic user message is drawn from (after its tag ``c<conversation>t<turn>``)
WORDS = ("time", "river", "light", "stone", "music", "garden", "number", "window", "paper", "cloud", "engine",
         "market", "winter", "story", "question", "bridge")
#: the context check's estimate without the model's tokenizer: tokens per word of a synthetic user message (the
#: tag included) and template tokens per message; an upper bound for common tokenizers (WORDS are common English
#: words: 1-2 tokens each in Llama/GPT/Qwen vocabularies), never the 1 token a word that undercounts byte-level BPEs
ESTIMATE_TOKENS_PER_WORD = 2
ESTIMATE_TEMPLATE_TOKENS = 16


def plain_prompt(history: list[tuple[str, str]]) -> str:
    """A history as plain text with role labels (the model has no chat template)."""
    return "".join(f"{'User' if r == 'user' else 'Assistant'}: {t}\n" for r, t in history) + "Assistant:"


def leading_bos(tokenizer) -> str | None:
    """The BOS text the server's tokenizer adds itself (so a template's own is not sent a second time), or None."""
    bos = tokenizer.bos_token_id
    if tokenizer.bos_token and bos is not None and tokenizer("x")["input_ids"][:1] == [bos]:
        return tokenizer.bos_token
    return None


def render_history(tokenizer, history: list[tuple[str, str]]) -> str:
    """The completions route's prompt text for ``history``: the tokenizer's chat template (generation prompt added;
    a BOS it writes dropped where the tokenizer adds one: the completions route adds special tokens, the chat route
    does not, and the model would get two), else :func:`plain_prompt` (no tokenizer, or no template)."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return plain_prompt(history)
    text = tokenizer.apply_chat_template([{"role": r, "content": t} for r, t in history], tokenize=False,
                                         add_generation_prompt=True)
    bos = leading_bos(tokenizer)
    return text[len(bos):] if bos and text.startswith(bos) else text


class ThinkTime(BaseModel):
    """Seconds between an answer's arrival and the next turn's submission: ``fixed`` (``value``), ``exponential``
    (``mean``), ``uniform`` (``min``..``max``) or ``lognormal`` (``mean`` is the median, ``sigma`` of ln); drawn
    with the serving seed."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    dist: Literal["fixed", "exponential", "uniform", "lognormal"] = "fixed"
    value: float | None = Field(None, ge=0, le=3600, description="think time in seconds (dist: fixed)")
    mean: float | None = Field(None, gt=0, le=3600, description="mean (exponential) or median (lognormal), s")
    sigma: float | None = Field(None, gt=0, le=10, description="standard deviation of ln(think time) (lognormal)")
    min: float | None = Field(None, ge=0, le=3600, description="lower bound in seconds (uniform)")
    max: float | None = Field(None, ge=0, le=3600, description="upper bound in seconds (uniform)")

    @model_validator(mode="after")
    def _needs(self) -> ThinkTime:
        need = {"fixed": ["value"], "exponential": ["mean"], "uniform": ["min", "max"],
                "lognormal": ["mean", "sigma"]}[self.dist]
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise ValueError(f"think_time dist '{self.dist}' needs {', '.join(missing)}")
        if self.dist == "uniform" and self.min > self.max:  # type: ignore[operator]
            raise ValueError(f"think_time min {self.min} exceeds max {self.max}")
        return self


class ConversationConfig(BaseModel):
    """Multi-turn conversations: synthetic (``turns``, ``user_tokens``, ``answer_tokens``) or replayed from a
    ShareGPT-style JSONL (``dataset``: each line's human turns are the user messages, in order; the recorded
    replies' lengths are only the answers' max_tokens — the prompts carry the model's own answers)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    n_conversations: int = Field(8, ge=1, le=100_000, description="conversations to run")
    turns: int | LengthDistribution = Field(
        4, description="user turns per conversation: a number or a length distribution (synthetic only)")
    user_tokens: LengthDistribution = Field(
        LengthDistribution(value=32), description="length of each new user message in words (synthetic)")
    answer_tokens: LengthDistribution | None = Field(
        None, description="max_tokens of each answer; None: the experiment's max_output_tokens")
    think_time: ThinkTime = Field(ThinkTime(value=0.0), description="gap between an answer and the next turn")
    dataset: str | None = Field(None, min_length=1, description="ShareGPT-style multi-turn JSONL to replay")

    @model_validator(mode="after")
    def _check(self) -> ConversationConfig:
        if isinstance(self.turns, int) and not 1 <= self.turns <= 1000:
            raise ValueError("turns must be between 1 and 1000")
        return self

    def max_turns(self) -> int:
        return self.turns if isinstance(self.turns, int) else min(self.turns.max, 1000) if self.turns.dist != \
            "fixed" else int(self.turns.value)  # type: ignore[arg-type]

    def longest_lengths(self, max_output_tokens: int) -> tuple[int, int, int]:
        """(turns, user message words, answer tokens) at their maxima."""
        user = self.user_tokens.value if self.user_tokens.dist == "fixed" else self.user_tokens.max
        a = self.answer_tokens
        answer = max_output_tokens if a is None else a.value if a.dist == "fixed" else a.max
        return self.max_turns(), int(user), int(answer)  # type: ignore[arg-type]

    def max_history_tokens(self, max_output_tokens: int, tokenizer=None) -> int:
        """The longest possible last request (synthetic): its prompt — every user message and every earlier answer
        at its maximum — plus its own answer. With the model's ``tokenizer`` the prompt is counted by it: the
        history rendered as the client renders it (:func:`render_history`), each user message its tag and then its
        words all as the costliest word of :data:`WORDS` (words are tokenized apart, so no mix of them costs more),
        each earlier answer empty in the text and counted at its max_tokens (what the model generates; known error:
        the answer's text re-tokenized in the history may differ by a few tokens). Without one, an estimate:
        ESTIMATE_TOKENS_PER_WORD tokens a word and ESTIMATE_TEMPLATE_TOKENS a message."""
        turns, user, answer = self.longest_lengths(max_output_tokens)
        if tokenizer is None:
            per_message = ESTIMATE_TEMPLATE_TOKENS
            return (turns * (ESTIMATE_TOKENS_PER_WORD * user + per_message)
                    + (turns - 1) * (answer + per_message) + answer)
        worst = max(WORDS, key=lambda w: len(tokenizer(" " + w, add_special_tokens=False)["input_ids"]))
        last = self.n_conversations - 1  # the longest tag: the most digits
        history: list[tuple[str, str]] = []
        for k in range(turns):
            history.append(("user", f"c{last}t{k} " + " ".join([worst] * (user - 1))))  # as the plan writes it
            if k < turns - 1:
                history.append(("assistant", ""))
        prompt = len(tokenizer(render_history(tokenizer, history))["input_ids"])
        return prompt + (turns - 1) * answer + answer


class TurnFigures(BaseModel):
    """One turn index across conversations (turn 0 is each conversation's first request). Latencies over the ok
    requests of that turn, in milliseconds, as defined for requests (client side); energy: the sum and mean of those
    requests' attributed energy (the request attribution, serving.energy_attribution_method), null when not
    measured."""

    model_config = ConfigDict(extra="forbid")
    turn: int = Field(..., ge=0, description="turn index, from 0")
    n: int = Field(..., description="requests sent at this turn")
    n_ok: int = Field(..., description="of them, completed")
    input_tokens_mean: float | None = Field(None, description="mean prompt tokens (server usage): the history grows")
    ttft_p50_ms: float | None = Field(None, description="median time to first token at this turn (ms)")
    tpot_p50_ms: float | None = Field(None, description="median time per output token after the first (ms)")
    e2e_p50_ms: float | None = Field(None, description="median submission-to-end latency at this turn (ms)")
    energy_j: float | None = Field(None, description="sum of this turn's ok requests' attributed energy (J)")
    energy_mean_j: float | None = Field(None, description="mean attributed energy per ok request of this turn (J)")


class ConversationFigures(BaseModel):
    """Multi-turn figures (serving.conversations). A conversation's span runs from its first turn's submission to
    its last answer's end; its energy is the sum of its requests' attributed energies. Think-time gaps are not
    attributed: a piece of the window with no request in flight is idle energy (serving.idle_energy_j), whoever is
    thinking."""

    model_config = ConfigDict(extra="forbid")
    n_conversations: int = Field(..., description="conversations started")
    n_complete: int = Field(..., description="conversations whose every turn completed")
    turns_sent: int = Field(..., description="requests sent over all conversations")
    prompt_format: str = Field(..., description="how the history became a prompt: the model's chat template, or "
                                                "plain concatenation with role labels (no template)")
    think_lag_p50_ms: float | None = Field(None, description="median of (later turn's submission - (previous "
                                                             "answer's end + think time)), ms")
    think_lag_p99_ms: float | None = Field(None, description="99th percentile of that lag, ms")
    duration_mean_s: float | None = Field(None, description="mean conversation span (first submit to last end), s")
    energy_per_conversation_mean_j: float | None = Field(
        None, description="mean over complete conversations of the sum of their requests' attributed energy (J)")
    energy_per_conversation_p50_j: float | None = Field(None, description="median of the same (J)")
    by_turn: list[TurnFigures] = Field(default_factory=list, description="figures per turn index")
