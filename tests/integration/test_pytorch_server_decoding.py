"""lem's transformers server runs the decoding the recorded config names (issue 24, item 8): started for real on
loopback with the tiny model by the pytorch backend's own command, it samples when the config samples (the same prompt
gives different continuations; greedy gives the same one every time), and it refuses a request whose decoding differs
from what it was started with instead of dropping it. Knobs transformers' continuous batching cannot apply are
refused before anything starts."""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import pytest
from conftest import make_config
from lem_runner.serving.servers import server_command
from pydantic import ValidationError

PROMPT = [5, 17, 42, 9, 33, 71]  # token ids: the tokenizer plays no part


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _server(cfg, model_path, tmp_path):
    port = _port()
    cmd = server_command(cfg, str(model_path), port, on_cpu=True)
    log = open(tmp_path / f"server-{port}.log", "wb")
    proc = subprocess.Popen(cmd.argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / f"server-{port}.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{cmd.health_path}", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "server never became healthy"
                time.sleep(0.3)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _complete(url: str, **body) -> tuple[int, dict]:
    data = json.dumps({"model": "lem", "prompt": PROMPT, "max_tokens": 8, **body}).encode()
    req = urllib.request.Request(f"{url}/v1/completions", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _serving(**decoding):
    return make_config(scenario="serving", device="cpu", dtype="float32", max_output_tokens=8,
                       serving={"rate": 1}, decoding=decoding)


def test_the_pytorch_server_samples_when_the_config_samples(tmp_path, tiny_model_path):
    sampled = _serving(do_sample=True, temperature=1.0, top_p=1.0)
    with _server(sampled, tiny_model_path, tmp_path) as url:
        texts = []
        for _ in range(4):  # the body lem's load generator sends for this config
            status, out = _complete(url, temperature=1.0, top_p=1.0, seed=sampled.seed)
            assert status == 200, out
            texts.append(out["choices"][0]["text"])
    assert len(set(texts)) > 1, texts  # a random tiny model: four samples of 8 tokens are never all alike
    with _server(_serving(), tiny_model_path, tmp_path) as url:
        greedy = [_complete(url, temperature=0.0)[1]["choices"][0]["text"] for _ in range(3)]
    assert len(set(greedy)) == 1, greedy


def test_a_request_asking_other_decoding_than_the_server_runs_is_refused(tmp_path, tiny_model_path):
    with _server(_serving(), tiny_model_path, tmp_path) as url:
        status, out = _complete(url, temperature=0.7, top_p=0.9)
        assert status == 400 and "temperature" in out["error"]["message"], out
        status, out = _complete(url, repetition_penalty=1.3)
        assert status == 400 and "repetition_penalty" in out["error"]["message"], out
        status, out = _complete(url, min_tokens=4)  # without ignore_eos: not applied, so not accepted
        assert status == 400 and "min_tokens" in out["error"]["message"], out
        status, out = _complete(url, temperature=0.0, ignore_eos=True, min_tokens=8)  # what lem sends: served
        assert status == 200 and out["usage"]["completion_tokens"] == 8, out


def test_the_servers_decoding_is_part_of_its_engine_identity():
    from lem_runner.contract import engine_identity

    assert engine_identity(_serving(do_sample=True)) != engine_identity(_serving())
    assert engine_identity(_serving(do_sample=True, top_k=5)) != engine_identity(_serving(do_sample=True))


@pytest.mark.parametrize("knob, value", [("repetition_penalty", 1.3), ("min_p", 0.05)])
def test_knobs_continuous_batching_cannot_apply_are_refused_for_serving(knob, value):
    from lem_runner.backends.pytorch.check import pytorch_problems

    cfg = _serving(do_sample=True, **{knob: value})
    assert any(p.startswith(f"decoding.{knob}: not applied") for p in pytorch_problems(cfg)), pytorch_problems(cfg)
    with pytest.raises(ValidationError):
        make_config(scenario="serving", decoding={"top_k": 3})  # sampling knobs still need do_sample
