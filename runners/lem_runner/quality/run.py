"""The fidelity and perplexity step of an offline run, after its energy window: the reference writes its outputs,
a compared point computes its figures against the reference's, either may score the bundled text. What cannot be
compared, or fails, is a warning and a null figure, never an invented one; the measured figures are kept either
way (a quality pass that runs out of memory does not cost the run its energy result)."""

from __future__ import annotations

import time
from pathlib import Path

from lem_runner.contract.atomic import atomic_write_text
from lem_runner.contract.protocol import RunRequest
from lem_runner.contract.quality import (
    OUTPUTS_FILE,
    REFERENCE_FILE,
    QualityFigures,
    ReferenceOutputs,
    ReferenceRequest,
)
from lem_runner.contract.result import ExperimentResult
from lem_runner.quality.fidelity import FidelityMismatch, fidelity_figures, reference_outputs
from lem_runner.quality.perplexity import perplexity_figures
from lem_runner.records import GenerationRecord


def with_fidelity_and_perplexity(request: RunRequest, backend, result: ExperimentResult,
                                 records: list[GenerationRecord], out_dir: Path) -> ExperimentResult:
    quality = request.config.quality
    warnings = list(result.warnings)
    update: dict = {}
    if quality.reference:
        try:
            figures, why = _fidelity(request, backend, records, out_dir)
        except Exception as exc:  # the measured figures stand; the failure is said in the result
            figures, why = None, f"failed after the window ({type(exc).__name__}: {exc})"
        if figures is not None:
            update["fidelity"] = figures
        else:
            warnings.append(f"quality.fidelity: not compared with '{quality.reference}': {why}")
    if quality.perplexity_text:
        try:
            update["perplexity"] = perplexity_figures(quality.perplexity_text, backend.rolling_loglikelihood)
        except Exception as exc:  # as above
            warnings.append(f"quality.perplexity: failed after the window ({type(exc).__name__}: {exc})")
    figures = (result.quality or QualityFigures()).model_copy(update=update)
    return result.model_copy(update={"quality": figures, "warnings": warnings})


def _fidelity(request: RunRequest, backend, records: list[GenerationRecord], out_dir: Path):
    """(figures, None) or (None, why not)."""
    fid = request.fidelity
    if fid is None:
        return None, "no reference outputs were handed to this run (quality.reference belongs to a study)"
    t0 = time.perf_counter()
    theirs = None
    if not fid.is_reference:
        if fid.outputs_file is None:
            return None, fid.missing or "the reference left no outputs"
        try:
            theirs = ReferenceOutputs.model_validate_json((out_dir / fid.outputs_file).read_bytes())
        except (OSError, ValueError) as exc:
            return None, f"cannot read the reference's outputs ({fid.outputs_file}: {str(exc).splitlines()[0]})"
    n = len(theirs.requests) if theirs is not None else request.config.n_prompts
    first = records[:n]  # the first pass over the prompt set, in prompt order
    if any(r.prompt_ids is None or r.output_ids is None for r in first):
        return None, f"the {request.config.backend} backend kept no token ids"
    prompts, outputs = [r.prompt_ids for r in first], [r.output_ids for r in first]
    try:
        if fid.is_reference:
            mine = reference_outputs(fid.reference, prompts, outputs, backend.next_token_logprobs,
                                     request.config.quality.kl_top_k)
            atomic_write_text(out_dir / REFERENCE_FILE, mine.model_dump_json())
            figures = fidelity_figures(mine, prompts, outputs, None, own=[r.logprobs for r in mine.requests])
        else:  # this run's own tokens beside its figures, for reading where it parted from the reference
            own = ReferenceOutputs(reference=fid.reference, kl_top_k=theirs.kl_top_k, requests=[
                ReferenceRequest(prompt_ids=list(p), output_ids=list(o)) for p, o in zip(prompts, outputs)])
            atomic_write_text(out_dir / OUTPUTS_FILE, own.model_dump_json())
            figures = fidelity_figures(theirs, prompts, outputs, backend.next_token_logprobs)
    except FidelityMismatch as exc:
        return None, str(exc)
    return figures.model_copy(update={"duration_s": time.perf_counter() - t0}), None
