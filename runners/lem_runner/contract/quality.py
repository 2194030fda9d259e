"""Quality beside energy (issue 29): the config section ``quality``, the result block ``quality`` and what the
controller tells a run of a study with a reference. Every quality figure is taken after the energy
window, on the engine just measured, and never changes a measured figure (docs/method.md, "Quality").

- ``quality.reference``: a study names one of its points; every point's output is compared with that point's on the
  same prompts (exact match, agreement up to the first divergence, teacher-forced KL): ``quality.fidelity``.
- ``quality.perplexity``: perplexity on a public-domain text shipped with lem: ``quality.perplexity``.
- ``quality.task``: a multiple-choice task on the user's data (contract/task.py): ``quality.task``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lem_runner.contract.backends import backend_spec, registry
from lem_runner.contract.section import Section
from lem_runner.contract.task import TaskConfig, TaskScore

#: the public-domain texts shipped with the runner (lem_runner/quality/texts/<name>.txt) that perplexity reads
PERPLEXITY_TEXTS = ("pride-and-prejudice",)
#: the text ``perplexity: true`` reads
DEFAULT_TEXT = PERPLEXITY_TEXTS[0]
#: the file a reference run writes into its own folder: its outputs, for the points compared with it
REFERENCE_FILE = "reference_outputs.json"
#: the reference's outputs as the controller places them in a compared run's own folder (a hard link or a copy of
#: REFERENCE_FILE), so every launcher's runner reads them where it writes its result (no path to translate)
COMPARED_FILE = "fidelity_reference.json"
#: the file a compared run writes into its own folder: its own prompt and generated token ids (the first pass, in
#: prompt order; no log-probabilities), the outputs its fidelity figures compare with the reference's
OUTPUTS_FILE = "fidelity_outputs.json"


class QualityConfig(Section):
    """What quality figures a run takes, all after the energy window (never inside it)."""

    reference: str | None = Field(
        None, min_length=1, description="study only: the point every point is compared with on the same prompts "
        "(its label as the study lists it, e.g. 'dtype=float32', or its name); needs greedy decoding. Gives "
        "quality.fidelity (exact match, agreement, KL; none: no comparison)")
    kl_top_k: int | None = Field(
        20, ge=1, le=100_000, description="KL against the reference from each position's top-k log-probabilities "
        "plus one bin for the rest (20: what vLLM returns by default); null: the full distribution (exact, but the "
        "reference's file holds vocabulary x tokens numbers)")
    perplexity: bool | Literal[PERPLEXITY_TEXTS] = Field(  # type: ignore[valid-type]
        False, description="perplexity on a public-domain text shipped with lem: true (the default text, "
        f"'{DEFAULT_TEXT}') or its name; false: none")
    task: TaskConfig | None = Field(None, description="a multiple-choice task on your data, scored on the run's "
                                    "engine after the energy window (none: no task)")

    @property
    def perplexity_text(self) -> str | None:
        """The bundled text perplexity reads, or None when it is off."""
        if self.perplexity is True:
            return DEFAULT_TEXT
        return self.perplexity or None


class FidelityFigures(BaseModel):
    """This configuration's output against the reference point's, on the same prompts (docs/method.md, "Output
    fidelity")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reference: str = Field(..., description="the reference point (its label in the study)")
    n_requests: int = Field(..., ge=1, description="requests compared: the prompt set, once")
    exact_match: float = Field(..., ge=0, le=1, description="share of requests whose generated text equals the "
                               "reference's (compared as token sequences, EOS included: same tokenizer, same text)")
    agreement: float = Field(..., ge=0, le=1, description="mean over requests of the share of the reference's "
                             "generated tokens matched before the first divergence")
    first_divergence_mean: float = Field(..., ge=0, description="mean over requests of the position of the first "
                                         "token that differs from the reference's (tokens matched before it; a full "
                                         "match counts the reference's length)")
    kl_mean_nats: float | None = Field(None, ge=0, description="mean over the reference's generated tokens of "
                                       "KL(reference || this) of the next-token distributions, both teacher-forced "
                                       "on the reference's tokens (nats); null where the backend returns no "
                                       "log-probabilities")
    kl_tokens: int = Field(0, ge=0, description="positions the KL mean is over")
    kl_source: str | None = Field(None, description="'full distribution' (exact) or 'top-k N + remainder' (each "
                                  "position's N most likely tokens as bins, the rest one bin: a lower bound)")
    duration_s: float = Field(..., ge=0, description="wall time of the comparison, after the energy window")


class PerplexityFigures(BaseModel):
    """Perplexity of this configuration on a text shipped with lem (docs/method.md, "Perplexity")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    perplexity: float = Field(..., gt=0, description="exp(- sum of log p(token | earlier tokens in its window) / "
                              "tokens) over the text, in windows of window_tokens tokens")
    tokens: int = Field(..., ge=1, description="tokens scored (the text's tokens; the first is conditioned on BOS)")
    window_tokens: int | None = Field(None, ge=2, description="tokens per window: min(the model's context - 1, 1024, "
                                      "on vLLM its max_model_len - 1); each window starts on the last token the one "
                                      "before scored. Figures of different windows are not comparable (null: not "
                                      "recorded, results before it was)")
    text: str = Field(..., description="the bundled text's name (lem_runner/quality/texts)")
    duration_s: float = Field(..., ge=0, description="wall time of the scoring, after the energy window")


class QualityFigures(BaseModel):
    """The quality figures of one run, taken after the energy window; they never change the energy figures."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fidelity: FidelityFigures | None = Field(None, description="output fidelity against the reference point "
                                             "(docs/method.md, 'Output fidelity')")
    perplexity: PerplexityFigures | None = Field(None, description="perplexity on a bundled text (docs/method.md, "
                                                 "'Perplexity')")
    task: TaskScore | None = Field(None, description="task accuracy (docs/method.md, 'Task accuracy')")


class ReferenceRequest(BaseModel):
    """One request of the reference run: its prompt and generated tokens, and its own next-token log-probabilities
    along them (teacher-forced, after its energy window)."""

    model_config = ConfigDict(extra="forbid")

    prompt_ids: list[int]
    output_ids: list[int]
    #: per generated position: {token id: log p} (top-k and the generated token) or the full vocabulary's list
    logprobs: list[dict[int, float]] | list[list[float]] | None = None


class ReferenceOutputs(BaseModel):
    """What a reference run writes (``REFERENCE_FILE``) and a compared run reads (``COMPARED_FILE``); a compared
    run writes its own outputs in this shape too (``OUTPUTS_FILE``, ``logprobs`` null)."""

    model_config = ConfigDict(extra="forbid")

    reference: str = Field(..., description="the reference point's label")
    kl_top_k: int | None = Field(..., description="the top-k its log-probabilities hold (None: full distribution)")
    requests: list[ReferenceRequest]


class FidelityRequest(BaseModel):
    """What the controller tells a run of a study with a reference (RunRequest.fidelity)."""

    model_config = ConfigDict(extra="forbid")

    reference: str = Field(..., description="the reference point's label")
    is_reference: bool = Field(False, description="this run is the reference: it writes REFERENCE_FILE")
    outputs_file: str | None = Field(None, description="a compared run: the reference's outputs, a file in this "
                                     "run's own folder (COMPARED_FILE) the controller placed there")
    missing: str | None = Field(None, description="why a compared point has no outputs (the reference failed)")


def quality_problems(quality: QualityConfig, backend: str, scenario: str, do_sample: bool) -> list[str]:
    """Why the fidelity or perplexity figures cannot be taken (one line each), or []: the same check at `lem config
    validate` and in the runner before loading."""
    wants = [(name, flag) for name, on, flag in (
        ("reference", quality.reference, "gives_next_token_logprobs"),
        ("perplexity", quality.perplexity, "gives_rolling_loglikelihood")) if on]
    problems = []
    for name, flag in wants:
        if not getattr(backend_spec(backend), flag):
            able = ", ".join(n for n, spec in registry().items() if getattr(spec, flag))
            problems.append(f"quality.{name}: the {backend} backend returns no log-probabilities for it yet "
                            f"(supported: {able})")
        elif scenario != "offline":
            problems.append(f"quality.{name}: taken on the offline scenario's engine only (use scenario: offline)")
    if quality.reference and do_sample:
        problems.append("quality.reference: agreement with the reference needs greedy decoding (decoding.do_sample: "
                        "false); a sampled output differs by chance")
    return problems
