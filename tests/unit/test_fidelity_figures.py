"""The output-fidelity and perplexity formulas (lem_runner.quality) on inputs whose answers are worked out by hand
here, and the refusals they share with `lem config validate` (lem_runner.contract.quality.quality_problems)."""

from __future__ import annotations

import math
import re

import pytest
from lem_runner.contract.quality import QualityConfig, ReferenceOutputs, ReferenceRequest, quality_problems
from lem_runner.quality.fidelity import FidelityMismatch, fidelity_figures, matched_prefix, position_kl
from lem_runner.quality.perplexity import bundled_text, perplexity_from

L = math.log


def test_matched_prefix_counts_tokens_before_the_first_difference():
    assert matched_prefix([1, 2, 3, 4], [1, 2, 9, 4]) == 2
    assert matched_prefix([1, 2, 3], [1, 2, 3]) == 3
    assert matched_prefix([1, 2, 3], [1, 2, 3, 4, 5]) == 3  # longer than the reference: all of it matched
    assert matched_prefix([1, 2, 3], [1]) == 1  # stopped early
    assert matched_prefix([5], [6]) == 0


def test_full_distribution_kl_is_the_textbook_sum():
    p, q = [0.5, 0.25, 0.25], [0.25, 0.5, 0.25]
    # KL(p||q) = .5 ln 2 + .25 ln .5 + 0 = .25 ln 2
    kl, exact = position_kl([L(x) for x in p], [L(x) for x in q])
    assert exact and kl == pytest.approx(0.25 * math.log(2), abs=1e-12)
    assert position_kl([L(x) for x in p], [L(x) for x in p]) == (0.0, True)


def test_top_k_kl_coarsens_to_shared_tokens_and_one_remainder_bin():
    # reference p over 4 tokens, this q over 4; only tokens 0 and 1 given (top-2): bins {0, 1, rest}
    p = {0: L(0.5), 1: L(0.3)}  # rest 0.2
    q = {0: L(0.4), 1: L(0.4)}  # rest 0.2
    want = 0.5 * math.log(0.5 / 0.4) + 0.3 * math.log(0.3 / 0.4) + 0.2 * math.log(0.2 / 0.2)
    kl, exact = position_kl(p, q)
    assert not exact and kl == pytest.approx(want, abs=1e-12)
    # the full truth, with the rest split (0.1, 0.1) vs (0.15, 0.05): at least the coarsened figure
    full = position_kl([L(0.5), L(0.3), L(0.1), L(0.1)], [L(0.4), L(0.4), L(0.15), L(0.05)])[0]
    assert full >= kl
    # a token the other side did not return goes to the remainder for both
    kl2, _ = position_kl({0: L(0.5), 7: L(0.3)}, {0: L(0.4), 1: L(0.4)})
    assert kl2 == pytest.approx(0.5 * math.log(0.5 / 0.4) + 0.5 * math.log(0.5 / 0.6), abs=1e-12)
    # one side full, the other top-k: the top-k side's tokens are the bins
    kl3, exact3 = position_kl(p, [L(0.4), L(0.4), L(0.15), L(0.05)])
    assert not exact3 and kl3 == pytest.approx(want, abs=1e-12)


def _ref(outputs, logprobs=None, top_k=None):
    return ReferenceOutputs(reference="dtype=float32", kl_top_k=top_k, requests=[
        ReferenceRequest(prompt_ids=[1, 2], output_ids=o, logprobs=lp) for o, lp in
        zip(outputs, logprobs or [None] * len(outputs))])


def test_exact_match_agreement_and_divergence_averaged_over_requests():
    ref = _ref([[5, 6, 7, 8], [5, 6], [9]])
    mine = [[5, 6, 7, 8], [5, 0], [3, 3]]
    f = fidelity_figures(ref, [[1, 2]] * 3, mine, None)
    assert f.n_requests == 3
    assert f.exact_match == pytest.approx(1 / 3)
    assert f.agreement == pytest.approx((1 + 1 / 2 + 0) / 3)
    assert f.first_divergence_mean == pytest.approx((4 + 1 + 0) / 3)
    assert f.kl_mean_nats is None and f.kl_tokens == 0 and f.kl_source is None


def test_kl_is_pooled_over_the_reference_tokens():
    half = [L(0.5), L(0.5)]
    skew = [L(0.75), L(0.25)]
    ref = _ref([[0, 1], [0]], logprobs=[[half, half], [half]])
    theirs = {(1, 2, 0, 1): [skew, half], (1, 2, 0): [skew]}  # the hook, keyed by prompt + continuation
    f = fidelity_figures(ref, [[1, 2]] * 2, [[0, 1], [0]], lambda p, c, k: theirs[(*p, *c)])
    one = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert f.kl_tokens == 3 and f.kl_source == "full distribution"
    assert f.kl_mean_nats == pytest.approx((one + 0 + one) / 3, abs=1e-12)


def test_requests_that_cannot_be_compared_are_refused_not_guessed():
    ref = _ref([[5, 6]])
    with pytest.raises(FidelityMismatch, match="prompt tokens differ"):
        fidelity_figures(ref, [[1, 3]], [[5, 6]], None)
    with pytest.raises(FidelityMismatch, match="0 requests, the reference has 1"):
        fidelity_figures(ref, [], [], None)
    with pytest.raises(FidelityMismatch, match="another vocabulary"):
        position_kl([0.0], [L(0.5), L(0.5)])
    lp = _ref([[5, 6]], logprobs=[[[0.0], [0.0]]])
    with pytest.raises(FidelityMismatch, match="1 positions of log-probabilities"):
        fidelity_figures(lp, [[1, 2]], [[5, 6]], lambda p, c, k: [[0.0]])


def test_perplexity_is_exp_of_the_mean_negative_log_likelihood():
    assert perplexity_from(-4 * math.log(8), 4) == pytest.approx(8.0)  # 4 tokens at p = 1/8 each
    with pytest.raises(ValueError, match="no tokens"):
        perplexity_from(0.0, 0)
    text = bundled_text("pride-and-prejudice")
    assert text.startswith("It is a truth universally acknowledged") and 3_000 < len(text.encode()) < 10_000
    with pytest.raises(ValueError, match="no bundled text 'wiki'"):
        bundled_text("wiki")


def test_quality_problems_refuse_sampling_other_backends_and_serving():
    ref = QualityConfig(reference="dtype=float32")
    assert quality_problems(ref, "pytorch", "offline", do_sample=False) == []
    assert quality_problems(ref, "pytorch", "offline", do_sample=True) == [
        "quality.reference: agreement with the reference needs greedy decoding (decoding.do_sample: false); a "
        "sampled output differs by chance"]
    (serving,) = quality_problems(QualityConfig(perplexity=True), "pytorch", "serving", do_sample=False)
    assert serving.startswith("quality.perplexity: taken on the offline scenario's engine only")
    (other,) = quality_problems(QualityConfig(perplexity=True), "tensorrt", "offline", do_sample=False)
    assert other.startswith("quality.perplexity: the tensorrt backend returns no log-probabilities for it yet")
    assert QualityConfig(perplexity=True).perplexity_text == "pride-and-prejudice"
    assert QualityConfig().perplexity_text is None


class _FailingHooks:
    """A backend whose log-probability hooks fail (out of memory, say), at the backend's protocol seam."""

    def next_token_logprobs(self, prompt_ids, continuation_ids, top_k):
        raise MemoryError("no room for the logits")

    def rolling_loglikelihood(self, text):
        raise RuntimeError("engine gone")


def test_a_failing_quality_pass_keeps_the_measured_result_and_says_why(tmp_path):
    from conftest import make_config, make_result
    from lem_runner.contract import RunRequest
    from lem_runner.contract.quality import FidelityRequest
    from lem_runner.quality.run import with_fidelity_and_perplexity
    from lem_runner.records import GenerationRecord

    config = make_config(n_prompts=1, quality={"reference": "r", "perplexity": True})
    request = RunRequest(experiment_id="x", config=config, model_path="/m",
                         fidelity=FidelityRequest(reference="r", is_reference=True))
    result = make_result(config=config)
    records = [GenerationRecord(3, 2, 0.0, [0.1, 0.2], prompt_ids=(1, 2, 3), output_ids=(4, 5))]
    out = with_fidelity_and_perplexity(request, _FailingHooks(), result, records, tmp_path)
    assert out.quality.fidelity is None and out.quality.perplexity is None
    assert out.total_energy_j == result.total_energy_j and out.output_tokens == result.output_tokens
    assert "quality.fidelity: not compared with 'r': failed after the window (MemoryError: no room for the logits)" \
        in out.warnings
    assert "quality.perplexity: failed after the window (RuntimeError: engine gone)" in out.warnings
    assert not (tmp_path / "reference_outputs.json").exists()


def test_a_compared_run_with_an_unreadable_reference_file_says_so(tmp_path):
    from conftest import make_config, make_result
    from lem_runner.contract import RunRequest
    from lem_runner.contract.quality import COMPARED_FILE, FidelityRequest
    from lem_runner.quality.run import with_fidelity_and_perplexity
    from lem_runner.records import GenerationRecord

    config = make_config(n_prompts=1, quality={"reference": "r"})
    request = RunRequest(experiment_id="x", config=config, model_path="/m",
                         fidelity=FidelityRequest(reference="r", outputs_file=COMPARED_FILE))
    (tmp_path / COMPARED_FILE).write_text("{truncated")
    records = [GenerationRecord(3, 2, 0.0, [0.1, 0.2], prompt_ids=(1, 2, 3), output_ids=(4, 5))]
    out = with_fidelity_and_perplexity(request, _FailingHooks(), make_result(config=config), records, tmp_path)
    assert out.quality.fidelity is None
    (warning,) = [w for w in out.warnings if w.startswith("quality.fidelity")]
    assert warning.startswith("quality.fidelity: not compared with 'r': cannot read the reference's outputs "
                              "(fidelity_reference.json: ")


def test_rolling_windows_score_every_token_once_and_the_last_window_reaches_back():
    from lem_runner.quality.perplexity import rolling_windows

    # 10 tokens (BOS + 9), windows of 4: [0,4) scores 1..3; [3,7) scores 4..6; [6,10) scores 7..9
    assert rolling_windows(10, 4) == [(0, 4, 3), (3, 7, 3), (6, 10, 3)]
    # 8 tokens: the last window [4,8) has only token 7 new; it keeps 3 tokens of context (lm-eval's rule)
    assert rolling_windows(8, 4) == [(0, 4, 3), (3, 7, 3), (4, 8, 1)]
    assert rolling_windows(3, 1024) == [(0, 3, 2)]  # fits one window
    for n, size in [(2, 2), (9, 2), (2500, 1023), (1024, 1023), (1023, 1023)]:
        windows = rolling_windows(n, size)
        scored = [i for start, end, k in windows for i in range(end - k, end)]
        assert scored == list(range(1, n)), (n, size)  # every token after BOS once, in order
        assert all(end - start <= size and k <= end - start - 1 for start, end, k in windows)
        # each window but the first starts on (or before) the last token scored before it: no token without context
        assert all(start < prev_end for (start, _, _), (_, prev_end, _) in zip(windows[1:], windows))


def test_rolling_windows_are_lm_evals_get_rolling_token_windows():
    """The definition docs/method.md claims: lm-eval's windows with max_seq_len = size - 1, context_len = 1, BOS as the
    prefix token (tests/quality_truth.py writes out lm_eval.utils.get_rolling_token_windows)."""
    from lem_runner.quality.perplexity import rolling_windows
    from quality_truth import lm_eval_rolling_windows

    for n_text, size in [(9, 4), (7, 4), (30, 8), (5, 16)]:
        seq = [100] + list(range(n_text))  # BOS 100, then the text's tokens
        ours = [(seq[start:end - 1], seq[end - k:end]) for start, end, k in rolling_windows(len(seq), size)]
        assert ours == list(lm_eval_rolling_windows(seq[1:], 100, size - 1)), (n_text, size)


def test_window_size_leaves_room_for_vllms_generated_token():
    from lem_runner.quality.perplexity import window_size

    assert window_size(1024) == 1023  # the tiny model: one less than its context, on both backends
    assert window_size(8192) == 1024 and window_size(None) == 1024
    assert window_size(8192, engine_limit=512) == 511  # vLLM with max_model_len 512
    with pytest.raises(ValueError, match="scores nothing"):
        window_size(2)


def test_a_vllm_point_refuses_a_kl_top_k_above_what_vllm_returns():
    from conftest import make_config
    from pydantic import ValidationError

    base = {"backend": "vllm", "quality": {"reference": "backend=pytorch"}}
    assert make_config(**base).quality.kl_top_k == 20  # the default: vLLM's own max_logprobs
    for k, said in [(None, "null (the full distribution)"), (21, "21")]:
        with pytest.raises(ValidationError, match=r"quality.kl_top_k: " + re.escape(said) + " on a vllm point"):
            make_config(**{**base, "quality": {"reference": "backend=pytorch", "kl_top_k": k}})
    lifted = make_config(**{**base, "quality": {"reference": "r", "kl_top_k": None},
                            "vllm": {"engine_args": {"max_logprobs": -1}}})
    assert lifted.quality.kl_top_k is None
    assert make_config(backend="vllm", quality={"kl_top_k": None}).quality.kl_top_k is None  # no reference: no KL


def test_a_full_vocabulary_dict_beside_a_full_list_is_an_exact_kl():
    p = [L(0.5), L(0.25), L(0.25)]
    q = {0: L(0.25), 1: L(0.5), 2: L(0.25)}  # vLLM with max_logprobs -1: every token listed
    kl, exact = position_kl(p, q)
    assert exact and kl == pytest.approx(0.25 * math.log(2), abs=1e-12)
    assert position_kl(q, p)[1] is True
    assert position_kl(p, {0: L(0.25), 1: L(0.5)})[1] is False  # a top-2 dict: coarsened


def test_a_compared_run_writes_its_own_tokens_beside_its_figures(tmp_path):
    from conftest import make_config, make_result
    from lem_runner.contract import RunRequest
    from lem_runner.contract.quality import COMPARED_FILE, OUTPUTS_FILE, FidelityRequest
    from lem_runner.quality.run import with_fidelity_and_perplexity
    from lem_runner.records import GenerationRecord

    config = make_config(n_prompts=1, quality={"reference": "r", "kl_top_k": 1})
    ref = ReferenceOutputs(reference="r", kl_top_k=1, requests=[
        ReferenceRequest(prompt_ids=[1, 2, 3], output_ids=[4, 5], logprobs=[{4: L(0.5)}, {5: L(0.5)}])])
    (tmp_path / COMPARED_FILE).write_text(ref.model_dump_json())
    request = RunRequest(experiment_id="x", config=config, model_path="/m",
                         fidelity=FidelityRequest(reference="r", outputs_file=COMPARED_FILE))
    records = [GenerationRecord(3, 2, 0.0, [0.1, 0.2], prompt_ids=(1, 2, 3), output_ids=(4, 6))]

    class Hooks:  # this engine's distributions: the reference's exactly
        def next_token_logprobs(self, prompt_ids, continuation_ids, top_k):
            return [{4: L(0.5)}, {5: L(0.5)}]

    out = with_fidelity_and_perplexity(request, Hooks(), make_result(config=config), records, tmp_path)
    fid = out.quality.fidelity
    assert (fid.exact_match, fid.agreement, fid.first_divergence_mean, fid.kl_mean_nats) == (0.0, 0.5, 1.0, 0.0)
    mine = ReferenceOutputs.model_validate_json((tmp_path / OUTPUTS_FILE).read_text())
    assert [(r.prompt_ids, r.output_ids, r.logprobs) for r in mine.requests] == [([1, 2, 3], [4, 6], None)]
