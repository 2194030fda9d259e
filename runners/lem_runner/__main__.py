"""Runner entry point: ``python -m lem_runner --config request.json --out DIR`` (one run), or ``--session SDIR``
(an engine session: several runs on one loaded engine, requested one by one; see contract/protocol.py).

stdout carries progress events only (one JSON object per line); anything a library prints goes to stderr. The run
ends with exactly one of ``DIR/result.json`` (exit 0) or ``DIR/error.json`` (exit 1; 2 for an unreadable request or
a setting the engine refused before loading, phase ``config``; 130/143 when interrupted), each written atomically.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import traceback
from pathlib import Path

from lem_runner import __version__
from lem_runner.contract.atomic import atomic_write_text
from lem_runner.contract.engine_args import CONFIG_PHASE, EngineArgumentError
from lem_runner.contract.fingerprint import contract_fingerprint
from lem_runner.contract.protocol import (
    ERROR_FILE,
    EXIT_BAD_REQUEST,
    EXIT_FAILED,
    EXIT_OK,
    RESULT_FILE,
    ProgressEvent,
    RunError,
    RunRequest,
)


class _Terminated(Exception):
    """SIGTERM (e.g. ``docker stop``) or SIGHUP turned into an exception so error.json still gets written."""


#: signals that stop a run gracefully (error.json written, status interrupted), besides SIGINT
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _interrupted(exc: BaseException, phase: str, progress: dict) -> tuple[str, str, int | None]:
    """The signal, the one-line message for an interrupted run, and how many measured requests were dropped."""
    signame = "SIGINT" if isinstance(exc, KeyboardInterrupt) else str(exc)
    message = f"stopped during {phase}"
    done = progress.get("done") if phase == "measure" else None
    if done is not None:
        total = progress.get("total")
        message += (f" after {done}{f' of {total}' if total else ''} measured requests; their partial measurement "
                    "was dropped (a window cut short is not a result)")
    return signame, message, done


def _protocol_stream():
    """Keep the real stdout for events and point fd 1 at stderr, so stray library prints cannot corrupt the stream."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return out


def _write_error(out_dir: Path, err: RunError) -> None:
    """error.json, atomically; when even that cannot be written (a full disk), say so on stderr and go on: the
    controller still has the cause from the error event, sent on the stdout pipe before this write."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / ERROR_FILE, err.model_dump_json(indent=2))
    except OSError as exc:
        with contextlib.suppress(OSError):
            print(f"lem_runner: could not write {out_dir / ERROR_FILE}: {exc}", file=sys.stderr)


def _adopt_umask() -> None:
    """In a container, create files with the host user's umask (LEM_UMASK, octal), not the image's default."""
    value = os.environ.get("LEM_UMASK")
    if value:
        try:
            os.umask(int(value, 8) & 0o777)
        except ValueError:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lem_runner", description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="run request JSON written by the controller")
    parser.add_argument("--out", help="exchange directory for result.json / error.json")
    parser.add_argument("--session", help="engine session folder: measure request-0001.json, ... as they appear")
    parser.add_argument("--idle-exit-s", type=float, default=None,
                        help="engine session: end after this long without a request or end marker")
    parser.add_argument("--fingerprint", action="store_true", help="print the contract fingerprint and exit")
    parser.add_argument("--version", action="version", version=f"lem_runner {__version__}")
    args = parser.parse_args(argv)
    if args.fingerprint:
        print(contract_fingerprint())
        return EXIT_OK
    if not args.session and (not args.config or not args.out):
        parser.error("--config and --out are required (or --session)")

    _adopt_umask()
    stream = _protocol_stream()

    progress: dict = {}  # the last progress event's counts, for an interrupted run's error.json

    def emit(event: ProgressEvent) -> None:
        if event.event == "progress":
            progress.update(done=event.done, total=event.total)
        stream.write(event.to_line() + "\n")

    def _on_term(signum, frame):
        raise _Terminated(signal.Signals(signum).name)

    for sig in _STOP_SIGNALS:
        signal.signal(sig, _on_term)
    # Python leaves SIGINT ignored when it starts ignored (a `nohup lem run … &` or a script's background job passes
    # SIG_IGN down through exec), and the controller stops its runner with SIGINT: take it explicitly
    signal.signal(signal.SIGINT, signal.default_int_handler)

    from lem_runner.session import HeldEngine, serve_session

    if args.session:
        def measure(path: Path, n: int, held: HeldEngine) -> int:
            progress.clear()
            return _run_request(path, None, emit, progress, held, n)

        try:
            return serve_session(Path(args.session), measure, emit, args.idle_exit_s)
        except (KeyboardInterrupt, _Terminated) as exc:  # between runs: nothing was being measured
            return 130 if isinstance(exc, KeyboardInterrupt) else 143
    held = HeldEngine()
    try:
        return _run_request(Path(args.config), Path(args.out), emit, progress, held, None)
    finally:
        held.close()


def _run_request(config_path: Path, out: Path | None, emit, progress: dict, held, number: int | None) -> int:
    """Measure one request on ``held``'s engine (loading it when it holds none) and leave result.json or error.json
    in its folder (``out``, else the request's ``out_dir``). Returns the exit code this run means. ``number``: its
    place in an engine session (carried by its events as ``data.request``)."""
    tag = {"request": number} if number is not None else {}
    out_dir = out or config_path.parent
    try:
        request = RunRequest.model_validate_json(config_path.read_bytes())
        out_dir = out or (Path(request.out_dir) if request.out_dir else config_path.parent)
    except (OSError, ValueError) as exc:
        message = f"{config_path}: {exc.strerror if isinstance(exc, OSError) else exc}"
        emit(ProgressEvent(event="error", message=message.splitlines()[0], data=tag))
        _write_error(out_dir, RunError(error_type=type(exc).__name__, message=message, phase="request"))
        return EXIT_BAD_REQUEST

    emit(ProgressEvent(event="started", message=request.experiment_id,
                       data={"contract": contract_fingerprint(), **tag}))

    from lem_runner.devices import DeviceError, NvmlLookup, bind_devices, check_cuda_sees, torch_cuda_uuids
    from lem_runner.energy import select_energy_source
    from lem_runner.energy.select import measures_gpu
    from lem_runner.measure import Phase
    from lem_runner.measurement.environment import collect_environment
    from lem_runner.scenarios import SCENARIOS, RunContext

    phase = Phase()
    run_config = request.config
    failed = True
    try:
        # Before anything touches CUDA: the engine sees exactly the measured GPUs (found by UUID) as cuda:0..n-1; the
        # backend and NVML then address them so, and the result keeps the config as written. A session binds once:
        # its runs share the engine, hence the devices.
        binding = held.binding if held.bound else None
        if not held.bound:
            lookup = NvmlLookup.open() if run_config.device != "cpu" else None
            if lookup is not None or run_config.device == "cuda":  # 'auto' without NVML: no GPU to bind or measure
                binding = bind_devices(request.local_devices or run_config.devices, os.environ, lookup,
                                       request.device_uuids)
                os.environ.update(binding.environment)
            held.binding, held.bound = binding, True
        if binding is not None:
            run_config = run_config.model_copy(update={"devices": binding.local_devices})

        def energy_for(device_kind: str, checked: bool = True):
            # the engine's GPUs are the ones NVML will measure (on the simulated GPU, as CUDA would number them)
            if checked and binding is not None and measures_gpu(run_config, device_kind):
                check_cuda_sees(binding, torch_cuda_uuids())
            return select_energy_source(run_config, device_kind)

        context = RunContext(
            request=request, config=run_config, held=held, emit=emit, phase=phase, out_dir=out_dir,
            energy_for=energy_for,
            environment_for=lambda libraries, kind, cuda: collect_environment(
                libraries, run_config.devices, measures_gpu(run_config, kind), cuda, request.image,
                request.config.devices),
        )
        result = SCENARIOS[run_config.scenario].run(context)
        phase.name = "write"
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / RESULT_FILE, result.model_dump_json(indent=2))
        failed = False
    except (KeyboardInterrupt, _Terminated) as exc:
        signame, message, done = _interrupted(exc, phase.name, progress)
        emit(ProgressEvent(event="error", message=f"{signame}: {message}", data={"status": "interrupted", **tag}))
        _write_error(out_dir, RunError(experiment_id=request.experiment_id, error_type=signame,
                                       message=message, phase=phase.name, status="interrupted", requests_done=done))
        return 130 if isinstance(exc, KeyboardInterrupt) else 143
    except EngineArgumentError as exc:  # the engine refused a setting before loading: a config error, exit 2
        emit(ProgressEvent(event="error", message=f"config: {str(exc).splitlines()[0][:500]}"))
        with contextlib.suppress(OSError):  # runner.log says it too
            print(f"lem_runner: refused before loading: {exc}", file=sys.stderr)
        _write_error(out_dir, RunError(experiment_id=request.experiment_id, error_type="EngineArgumentError",
                                       message=str(exc), phase=CONFIG_PHASE))
        return EXIT_BAD_REQUEST
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}".strip()
        if phase.name == "load" and not isinstance(exc, DeviceError) and run_config.scenario != "serving":
            message = f"could not load the model from {request.model_path}: {message}"
        emit(ProgressEvent(event="error", message=f"during {phase.name}: {message.splitlines()[0][:500]}", data=tag))
        with contextlib.suppress(OSError):  # stderr is runner.log: on a full disk it cannot take the traceback
            traceback.print_exc(file=sys.stderr)  # the launcher keeps stderr as runner.log, beside error.json
        _write_error(
            out_dir,
            RunError(experiment_id=request.experiment_id, error_type=type(exc).__name__, message=message,
                     phase=phase.name, traceback=traceback.format_exc()),
        )
        return EXIT_FAILED
    finally:
        if failed:  # an engine (or server) a run failed on is in an unknown state: never measured on again
            held.close()
    emit(ProgressEvent(event="done", message=str(out_dir / RESULT_FILE), data=tag))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
