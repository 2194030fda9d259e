"""Output fidelity against a reference point: exact match, agreement up to the first divergence and the
teacher-forced KL(reference || this) along the reference's tokens (docs/method.md, "Output fidelity").

The formulas take plain Python (token id sequences; per position a {token: log p} dict or the full vocabulary's
list), so every backend's ``next_token_logprobs`` feeds them the same way."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from lem_runner.contract.quality import FidelityFigures, ReferenceOutputs, ReferenceRequest

#: (prompt_ids, continuation_ids, top_k) -> per continuation position the next-token log-probabilities
NextTokenLogprobs = Callable[[list[int], list[int], int | None], list]
#: remainders below this probability mass are rounding, not mass: no remainder bin
REMAINDER_FLOOR = 1e-9


class FidelityMismatch(ValueError):
    """This run's requests cannot be compared with the reference's (another prompt set or tokenizer)."""


def matched_prefix(reference: Sequence[int], this: Sequence[int]) -> int:
    """Tokens of ``reference`` matched before the first one ``this`` differs in (a full match: its length)."""
    n = 0
    for a, b in zip(reference, this):
        if a != b:
            break
        n += 1
    return n


def position_kl(p: dict[int, float] | Sequence[float], q: dict[int, float] | Sequence[float]) -> tuple[float, bool]:
    """KL(p || q) in nats of one position's next-token distributions, given as log-probabilities, and whether it is
    exact. Two full lists: the exact sum over the vocabulary. Otherwise the tokens both sides give are the bins and
    everything else one remainder bin (p_r = 1 - sum p, q_r likewise): the KL of the coarsened distributions, which
    is never above the true KL (log-sum inequality). A dict that holds the whole vocabulary (vLLM with
    ``max_logprobs: -1``) beside a full list is a full distribution too."""
    if isinstance(p, dict) and not isinstance(q, dict) and len(p) >= len(q):
        p = [p.get(i, -math.inf) for i in range(len(q))]
    if isinstance(q, dict) and not isinstance(p, dict) and len(q) >= len(p):
        q = [q.get(i, -math.inf) for i in range(len(p))]
    if not isinstance(p, dict) and not isinstance(q, dict):
        if len(p) != len(q):
            raise FidelityMismatch(f"full distributions of {len(p)} and {len(q)} tokens (another vocabulary?)")
        return max(0.0, sum(math.exp(a) * (a - b) for a, b in zip(p, q) if a > -math.inf)), True
    if not isinstance(p, dict):
        p = {i: p[i] for i in q}
    if not isinstance(q, dict):
        q = {i: q[i] for i in p}
    shared = [i for i in p if i in q]
    kl = sum(math.exp(p[i]) * (p[i] - q[i]) for i in shared if p[i] > -math.inf)
    p_rest = 1.0 - sum(math.exp(p[i]) for i in shared)
    q_rest = 1.0 - sum(math.exp(q[i]) for i in shared)
    if p_rest > REMAINDER_FLOOR:
        kl += p_rest * math.log(p_rest / max(q_rest, REMAINDER_FLOOR))
    return max(0.0, kl), False


def kl_source(top_k: int | None, exact: bool) -> str:
    return "full distribution" if exact else f"top-k {top_k} + remainder"


def fidelity_figures(reference: ReferenceOutputs, prompts: Sequence[Sequence[int]], outputs: Sequence[Sequence[int]],
                     logprobs: NextTokenLogprobs | None, clock: Callable[[], float] = time.perf_counter,
                     own: list | None = None) -> FidelityFigures:
    """The figures of this run's requests (``prompts`` and ``outputs`` token ids, in prompt order) against the
    reference's. ``logprobs``: this engine's hook, called along each reference output (None: no KL); ``own``: this
    run's log-probabilities per request where they are already known (the reference compared with itself)."""
    t0 = clock()
    refs = reference.requests
    if len(prompts) < len(refs):
        raise FidelityMismatch(f"{len(prompts)} requests, the reference has {len(refs)} (another prompt set?)")
    for i, (ref, prompt) in enumerate(zip(refs, prompts)):
        if list(prompt) != ref.prompt_ids:
            raise FidelityMismatch(f"request {i + 1}'s prompt tokens differ from the reference's (another prompt set "
                                   "or tokenizer?)")
    exact = agreement = divergence = 0.0
    kl_sum, kl_n, all_exact = 0.0, 0, True
    for i, ref in enumerate(refs):
        out = list(outputs[i])
        n = matched_prefix(ref.output_ids, out)
        exact += out == ref.output_ids
        agreement += n / len(ref.output_ids) if ref.output_ids else float(not out)
        divergence += n
        if ref.logprobs is None or not ref.output_ids or (logprobs is None and own is None):
            continue
        mine = own[i] if own is not None else logprobs(ref.prompt_ids, ref.output_ids, reference.kl_top_k)
        if len(mine) != len(ref.logprobs):
            raise FidelityMismatch(f"request {i + 1}: {len(mine)} positions of log-probabilities, the reference's "
                                   f"output has {len(ref.logprobs)}")
        for p, q in zip(ref.logprobs, mine):
            kl, is_exact = position_kl(p, q)
            kl_sum, kl_n, all_exact = kl_sum + kl, kl_n + 1, all_exact and is_exact
    n_req = len(refs)
    return FidelityFigures(
        reference=reference.reference, n_requests=n_req, exact_match=exact / n_req, agreement=agreement / n_req,
        first_divergence_mean=divergence / n_req, kl_mean_nats=kl_sum / kl_n if kl_n else None, kl_tokens=kl_n,
        kl_source=kl_source(reference.kl_top_k, all_exact) if kl_n else None, duration_s=clock() - t0)


def reference_outputs(label: str, prompts: Sequence[Sequence[int]], outputs: Sequence[Sequence[int]],
                      logprobs: NextTokenLogprobs, top_k: int | None) -> ReferenceOutputs:
    """What a reference run leaves for the points compared with it: its tokens and its own teacher-forced
    log-probabilities along them."""
    requests = [ReferenceRequest(prompt_ids=list(p), output_ids=list(o),
                                 logprobs=logprobs(list(p), list(o), top_k) if o else [])
                for p, o in zip(prompts, outputs)]
    return ReferenceOutputs(reference=label, kl_top_k=top_k, requests=requests)
