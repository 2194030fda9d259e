"""A server process the runner owns: started in its own session with its output in a log file, ready when its
health route answers 200, and stopped on every path (SIGTERM to its process group, SIGKILL after a grace).

An engine session keeps one server for several serving runs (lem_runner.session.HeldEngine): before a later run it
must be idle (no request of the last run still running or queued, by its own metrics) and have emptied what a run
leaves behind (vLLM's prefix cache); each run's folder gets the server's log from that run's start to its end."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from lem_runner.serving.client import LoadSpec, outside_plan, run_load
from lem_runner.serving.planned import PlannedRequest
from lem_runner.serving.servers import ServerCommand

LOG_FILE = "server.log"
STOP_GRACE_S = 10.0
#: how long a server may take to report idle after warmup before its reset is tried anyway
WARMUP_IDLE_S = 30.0
WARMUP_METHOD = ("requests shaped like the plan's first ones (lengths, max_tokens) on prompts outside the plan (text "
                 "prefixed, token ids with their first id changed, so no prefix matches a measured prompt), one at a "
                 "time (one closed-loop client), before the load window; a server lem started has its reset routes "
                 "(vLLM's prefix cache) called after them")


class ServerError(RuntimeError):
    """The server could not start, never became ready, or died during the load."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, n: int = 5) -> str:
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-600:]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the runner dies, even by SIGKILL (Linux prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


class ManagedServer:
    def __init__(self, command: ServerCommand, port: int, log_path: Path) -> None:
        self.command, self.port, self.log_path = command, port, log_path
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "w", encoding="utf-8") as log:
            try:
                self.proc = subprocess.Popen(self.command.argv, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, env={**os.environ, **self.command.env},
                                             start_new_session=True, preexec_fn=_die_with_parent)
            except OSError as exc:
                raise ServerError(f"could not start {self.command.argv[0]}: {exc.strerror}") from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout_s: float, poll_s: float = 0.25) -> float:
        """Seconds until the health route answered 200; ServerError if the process exits or the timeout passes."""
        t0 = time.perf_counter()
        url = f"http://127.0.0.1:{self.port}{self.command.health_path}"
        while True:
            if not self.alive():
                code = self.proc.returncode if self.proc else None
                raise ServerError(f"server exited with code {code} before it was ready "
                                  f"({self.log_path.name}: {_tail(self.log_path)})")
            with contextlib.suppress(urllib.error.URLError, OSError, ValueError):
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout_s:
                raise ServerError(f"server not ready after {timeout_s:g} s (serving.server_start_timeout_s; "
                                  f"{self.log_path.name}: {_tail(self.log_path)})")
            time.sleep(poll_s)

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def busy(self) -> int | None:
        """Requests the server reports running or waiting (the sum of its ``busy_metrics`` gauges on /metrics);
        None when it has no such gauges or they cannot be read."""
        names = self.command.busy_metrics
        if not names:
            return None
        sums = self.metric_sums(names)
        if sums is None or not sums:
            return None
        return round(sum(sums.values()))

    def metric_sums(self, names: tuple[str, ...]) -> dict[str, float] | None:
        """Each named metric on GET /metrics summed over its label sets (engines), for the names that appear; None
        when /metrics cannot be read."""
        try:
            with urllib.request.urlopen(self._url("/metrics"), timeout=5) as resp:
                text = resp.read().decode("utf-8", errors="replace")
        except (urllib.error.URLError, OSError, ValueError):
            return None
        sums: dict[str, float] = {}
        for line in text.splitlines():
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in names:
                with contextlib.suppress(ValueError, IndexError):
                    value = float(line.rsplit(" ", 1)[1])
                    sums[name] = sums.get(name, 0.0) + value
        return sums

    def wait_idle(self, timeout_s: float, poll_s: float = 0.1) -> bool:
        """Whether the server reported nothing running or queued within ``timeout_s`` (False also when it cannot
        say: a server that cannot tell it is idle is not handed to another run)."""
        deadline = time.monotonic() + timeout_s
        while True:
            n = self.busy()
            if n == 0:
                return True
            if n is None or time.monotonic() > deadline:
                return False
            time.sleep(poll_s)

    def reset(self) -> list[str]:
        """POST each of the command's ``reset_routes`` (state one run would leave for the next, e.g. vLLM's prefix
        cache); what was reset, in words. ServerError when a route does not answer 200, or answers a JSON body with
        ``"success": false`` (vLLM's reset while blocks are still held)."""
        done = []
        for path in self.command.reset_routes:
            req = urllib.request.Request(self._url(path), data=b"", method="POST")
            body = b""
            try:
                with urllib.request.urlopen(req, timeout=30) as resp:
                    status, body = resp.status, resp.read()
            except urllib.error.HTTPError as exc:
                status = exc.code
            except (urllib.error.URLError, OSError) as exc:
                raise ServerError(f"could not reset the server for the next run (POST {path}: {exc})") from None
            if status != 200:
                raise ServerError(f"the server refused to reset for the next run (POST {path}: HTTP {status})")
            with contextlib.suppress(ValueError):
                answer = json.loads(body) if body.strip() else {}
                if isinstance(answer, dict) and answer.get("success") is False:
                    raise ServerError(f"the server could not reset for the next run (POST {path}: success false)")
            done.append(f"POST {path}")
        return done

    def log_mark(self) -> int:
        """Where the server's log stands now (its size), for :meth:`log_since`."""
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, mark: int) -> bytes:
        """What the server logged since ``mark``."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(mark)
                return f.read()
        except OSError:
            return b""

    def died(self) -> str | None:
        """Why the server is gone, or None while it runs."""
        if self.alive() or self.proc is None:
            return None
        return f"server exited with code {self.proc.returncode} during the load ({self.log_path.name}: " \
               f"{_tail(self.log_path)})"

    def stop(self) -> None:
        """SIGTERM to the whole process group (vLLM's engine core is a child), SIGKILL after the grace."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
        try:
            self.proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)  # children that outlived their parent too
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


def warm_up(spec: LoadSpec, plan: list[PlannedRequest], n: int, server: ManagedServer | None,
            alive=lambda: True) -> list[str]:
    """Send ``n`` warmup requests outside the plan (client.outside_plan), one at a time, then empty what they left
    on a server lem started (its reset routes: vLLM's prefix cache) so the first measured requests are not cache
    hits; the result's warnings (a reset that failed). ServerError when a warmup request fails."""
    if n <= 0 or not plan:
        return []
    records, _ = run_load(dataclasses.replace(spec, closed_loop_clients=1, duration_s=None), outside_plan(plan, n),
                          alive=alive)
    bad = [r for r in records if not r.ok]
    if bad:
        raise ServerError(server.died() if server and server.died() else
                          f"warmup request failed: {bad[0].status}: {bad[0].error}")
    if server is None or not server.command.reset_routes:
        return []
    if server.command.busy_metrics:
        server.wait_idle(WARMUP_IDLE_S)
    try:
        server.reset()
    except ServerError as exc:
        return [f"after warmup: {exc}; the warmup prompts were outside the plan, so no measured prompt is cached"]
    return []


def settle(server: ManagedServer) -> list[str]:
    """Between two loads on one server (a capacity search's probes): wait until it reports nothing running or queued
    and empty what the last load left (its reset routes: vLLM's prefix cache); the result's warnings."""
    if server.command.busy_metrics and not server.wait_idle(WARMUP_IDLE_S):
        return [f"between capacity probes: the server did not report idle within {WARMUP_IDLE_S:g} s"]
    if not server.command.reset_routes:
        return []
    try:
        server.reset()
    except ServerError as exc:
        return [f"between capacity probes: {exc}; the next probe may find the last one's prompts cached"]
    return []


#: scalar settings vLLM's engine core logs once at start ("Initializing a V1 LLM engine (v…) with config: …")
VLLM_LOGGED = ("dtype", "max_seq_len", "quantization", "enforce_eager", "kv_cache_dtype", "tensor_parallel_size",
               "pipeline_parallel_size", "data_parallel_size", "device_config", "seed", "enable_prefix_caching",
               "enable_chunked_prefill", "load_format", "served_model_name")
_MODEL_CARD_KEYS = ("root", "max_model_len", "lem_settings")


def _scalar(text: str):
    text = text.strip().strip("'\"")
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    with contextlib.suppress(ValueError):
        return int(text)
    return text.removeprefix("torch.")


def logged_engine_config(log: str) -> dict:
    """The :data:`VLLM_LOGGED` values of the last engine-config line in a vLLM server's log ({} when there is none)."""
    lines = [ln for ln in log.splitlines() if "with config: " in ln]
    if not lines:
        return {}
    body = lines[-1].split("with config: ", 1)[1]
    out = {}
    for key in VLLM_LOGGED:
        m = re.search(rf"(?:^|, ){key}=(.*?)(?=, [A-Za-z_]+=|$)", body)
        if m:
            out[key] = _scalar(m.group(1))
    return out


def _model_card(base_url: str) -> dict:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=5) as resp:
            card = json.loads(resp.read())["data"][0]
    except (urllib.error.URLError, OSError, ValueError, KeyError, IndexError, TypeError):
        return {}
    return card if isinstance(card, dict) else {}


def served_settings(base_url: str, server: ManagedServer | None) -> dict:
    """What the server ran, read back from it, for the result's ``engine_settings``: ``arguments`` (the command lem
    started it with, host and port left out; none for a user's endpoint), ``resolved`` (its ``GET /v1/models`` card:
    vLLM's ``root`` and ``max_model_len``, lem's own server's ``lem_settings``; and the settings vLLM's engine logged at
    start) and ``sources`` (where each came from). A value the server does not report is absent, never guessed."""
    resolved: dict = {}
    sources = []
    card = _model_card(base_url)
    if card:
        sources.append("GET /v1/models")
        resolved.update({k: card[k] for k in _MODEL_CARD_KEYS if k in card and k != "lem_settings"})
        resolved.update(card.get("lem_settings") or {})
    arguments = None
    if server is not None:
        argv, arguments = server.command.argv, []
        skip = False
        for a in argv[1:]:
            if skip:
                skip = False
                continue
            if a in ("--host", "--port"):
                skip = True
                continue
            arguments.append(a)
        logged = logged_engine_config(server.log_since(0).decode("utf-8", errors="replace"))
        if logged:
            sources.append(f"{server.log_path.name}: the engine's config line")
            resolved.update(logged)
    return {"sources": sources, "arguments": arguments, "resolved": resolved}
