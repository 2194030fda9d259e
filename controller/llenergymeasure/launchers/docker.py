"""Run the runner inside its backend's image, through the docker SDK.

Containment: the exchange directory is the only writable host mount; the model is mounted read-only; the root
filesystem is read-only with a tmpfs /tmp; no network unless the config allows a download; the host user's
uid:gid; all capabilities dropped and no privilege escalation; labels on every container; removed in ``finally``.
A Hugging Face token, when a download needs one, reaches the runner as a read-only file (HF_TOKEN_PATH), never
through argv or the container's environment.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import docker.errors
import docker.types
import requests.exceptions
from lem_runner.contract import REQUEST_FILE, RunRequest, nvml
from lem_runner.contract.atomic import atomic_write_text, current_umask

from llenergymeasure.errors import SetupError
from llenergymeasure.images.catalog import LABEL_MANAGED, image_tag, require_image
from llenergymeasure.launchers.base import LOG_FILE, ErrorMemo, EventSink, Launcher, LaunchOutcome, LaunchSpec
from llenergymeasure.launchers.stream import pump, start_reader
from llenergymeasure.version import __version__

EXCHANGE_MOUNT = "/lem/exchange"
MODEL_MOUNT = "/lem/model"
TOKEN_MOUNT = "/run/secrets/hf_token"
PROMPTS_NAME = "prompts.jsonl"
#: the run folder's subfolder holding the copy of quality.task's JSONL (its file name kept: it names the task)
TASK_FOLDER = "task"

STOP_GRACE_S = 15
#: the study folder an engine session's container works in (a resumed study removes what a killed controller left)
LABEL_STUDY = "lem.study"


def wants_gpu(config, host_gpus: int) -> bool:
    """GPUs go to the container when the config asks for CUDA, or on 'auto' when the host has any."""
    return config.device == "cuda" or (config.device == "auto" and host_gpus > 0)


@dataclass(frozen=True)
class ContainerGpus:
    """Which host GPUs a container gets, and how the runner inside finds them again."""

    device_ids: list[str]  # for the DeviceRequest: UUIDs where known, else host NVML indices
    uuids: list[str] | None  # in config order, for RunRequest.device_uuids; None when the host could not tell
    local_devices: list[int]  # fallback: the container's NVML numbers them from 0 in PCI bus (= host index) order


def container_gpus(devices: list[int], environ: Mapping[str, str],
                   uuid_of: Callable[[str], str | None]) -> ContainerGpus:
    """The config's devices, read like the GPU lock reads them (within the host's CUDA_VISIBLE_DEVICES, when set),
    as host GPUs. The container renumbers what it is given from 0 in PCI bus order, not in the order listed, so the
    runner is told the UUIDs; without them, each device's rank among the requested host indices."""
    visible = [v.strip() for v in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    entries = [visible[d] if d < len(visible) else str(d) for d in devices] if visible else [str(d) for d in devices]
    uuids = [e if not e.isdigit() else uuid_of(e) for e in entries]
    if all(uuids):
        return ContainerGpus(device_ids=list(uuids), uuids=list(uuids), local_devices=list(range(len(entries))))  # type: ignore[arg-type]
    if all(e.isdigit() for e in entries):
        order = sorted(int(e) for e in entries)
        return ContainerGpus(device_ids=entries, uuids=None, local_devices=[order.index(int(e)) for e in entries])
    return ContainerGpus(device_ids=entries, uuids=None, local_devices=list(range(len(entries))))


def container_options(spec: LaunchSpec, image: str, use_gpu: bool, token_file: Path | None,
                      gpus: ContainerGpus | None = None) -> dict:
    """Everything ``containers.create`` gets, as plain data, so containment can be checked without an engine."""
    cfg = spec.request.config
    volumes = {str(spec.exchange_dir.resolve()): {"bind": EXCHANGE_MOUNT, "mode": "rw"}}
    if spec.model.mount_root is not None:
        volumes[str(spec.model.mount_root)] = {"bind": MODEL_MOUNT, "mode": "ro"}
    environment = {"HF_HUB_OFFLINE": "0" if cfg.allow_model_download else "1", "LEM_IN_CONTAINER": "1",
                   "LEM_UMASK": f"{current_umask():04o}"}  # result files get the host user's umask
    if token_file is not None:
        volumes[str(token_file)] = {"bind": TOKEN_MOUNT, "mode": "ro"}
        environment["HF_TOKEN_PATH"] = TOKEN_MOUNT
    volumes.update(simulated_gpu_mounts(environment))
    options = {
        "image": image,
        "command": ["--config", f"{EXCHANGE_MOUNT}/{REQUEST_FILE}", "--out", EXCHANGE_MOUNT],
        "user": f"{os.getuid()}:{os.getgid()}",
        "environment": environment,
        "volumes": volumes,
        "network_mode": "bridge" if cfg.allow_model_download else "none",
        "read_only": True,
        "tmpfs": {"/tmp": "rw,exec,nosuid,size=4g"},
        "shm_size": cfg.spec.shm_size,  # engines that move tensors between worker processes need more
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "privileged": False,
        "labels": {
            LABEL_MANAGED: "true",
            "lem.version": __version__,
            "lem.experiment": spec.request.experiment_id,
            "lem.backend": cfg.backend,
        },
        "detach": True,
    }
    if cfg.spec.ipc_mode:
        options["ipc_mode"] = cfg.spec.ipc_mode
    if use_gpu:
        options["device_requests"] = [
            docker.types.DeviceRequest(device_ids=gpus.device_ids if gpus else [str(d) for d in cfg.devices],
                                       capabilities=[["gpu"]])
        ]
    return options


def simulated_gpu_mounts(environment: dict[str, str]) -> dict[str, dict]:
    """On the simulated GPU (LEM_SIMULATED_GPU), the container gets the same scenario and state: the variable is passed
    on and the folders of the scenario and its state file are bound at their host paths (read-write: the state file
    is how settings persist, as on a real GPU). Nothing when the variable is unset."""
    files = nvml.simulated_files()
    if not files:
        return {}
    environment[nvml.SIMULATED_ENV] = files[0]
    return {f: {"bind": f, "mode": "rw"} for f in sorted({str(Path(p).parent) for p in files})}


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Docker log chunks are not lines: re-split them."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        *complete, buf = buf.split(b"\n")
        for line in complete:
            yield line.decode("utf-8", "replace")
    if buf:
        yield buf.decode("utf-8", "replace")


def _hf_token() -> str | None:
    token = os.environ.get("HF_TOKEN")
    if token:
        return token
    path = Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "token"
    return path.read_text().strip() if path.is_file() else None


class DockerLauncher(Launcher):
    """The runner in a backend image; one container per experiment."""

    name = "docker"
    sessions = True
    contained = True

    #: an engine session's container ends itself after this long without a request (its controller is gone)
    session_idle_exit_s = 3600.0

    def __init__(self, image: str | None = None, client=None, host_gpus: int | None = None) -> None:
        self.image = image
        self._client = client
        self._host_gpus = host_gpus

    @property
    def client(self):
        if self._client is None:
            from llenergymeasure.host.docker_engine import docker_client

            self._client = docker_client()
        return self._client

    def _host_gpu_count(self) -> int:
        if self._host_gpus is None:
            from llenergymeasure.host.inventory import gpu_count

            self._host_gpus = gpu_count()
        return self._host_gpus

    def check_key(self, config):
        return ("docker", self.image, config.backend, config.device)

    def check(self, config) -> None:
        """The engine answers and the image this config would run in is present and current (else SetupError)."""
        use_gpu = wants_gpu(config, self._host_gpu_count())
        require_image(self.client, self.image or image_tag(config.backend, cpu=not use_gpu), config.backend,
                      cpu=not use_gpu)

    def _container_request(self, spec: LaunchSpec, image_id: str, use_gpu: bool, root: Path,
                           exchange: str) -> RunRequest:
        """The request with the container's paths: ``root`` (the mounted folder) is ``exchange`` inside; the prompts
        file is copied into the run's folder."""
        cfg = spec.request.config
        rel = spec.exchange_dir.resolve().relative_to(root.resolve())
        run_dir = exchange if str(rel) == "." else f"{exchange}/{rel}"
        prompts_path = None
        if spec.prompts_file is not None:
            shutil.copyfile(spec.prompts_file, spec.exchange_dir / PROMPTS_NAME)
            prompts_path = f"{run_dir}/{PROMPTS_NAME}"
        model_path = (
            f"{MODEL_MOUNT}/{spec.model.relative}".rstrip("/") if spec.model.mount_root is not None else spec.model.host_path
        )
        update = {"model_path": model_path, "prompts_path": prompts_path, "task_path": None, "image": image_id}
        task = cfg.quality.task
        if task is not None and task.harness == "builtin":  # the JSONL is the whole task; lm_eval is refused
            source = Path(task.path)
            (spec.exchange_dir / TASK_FOLDER).mkdir(exist_ok=True)
            shutil.copyfile(source, spec.exchange_dir / TASK_FOLDER / source.name)
            update["task_path"] = f"{run_dir}/{TASK_FOLDER}/{source.name}"
        gpus = self._gpus(cfg, use_gpu)
        if gpus is not None:
            update.update(local_devices=gpus.local_devices, device_uuids=gpus.uuids)
        return spec.request.model_copy(update=update)

    def _gpus(self, cfg, use_gpu: bool) -> ContainerGpus | None:
        """The GPUs the container gets: only the requested ones, renumbered from 0 in PCI bus order."""
        if not use_gpu:
            return None
        from llenergymeasure.host.inventory import gpu_uuid

        return container_gpus(cfg.devices, os.environ, gpu_uuid)

    def session_request(self, session, spec: LaunchSpec) -> RunRequest:
        """A run of an engine session: container paths, its own folder (under the mounted study folder) as out_dir."""
        image_id, use_gpu, root = session.docker
        request = self._container_request(spec, image_id, use_gpu, root, EXCHANGE_MOUNT)
        out = spec.exchange_dir.resolve().relative_to(root.resolve())
        return request.model_copy(update={"out_dir": f"{EXCHANGE_MOUNT}/{out}"})

    def start_session(self, session, first: LaunchSpec):
        """One container for the session: the study folder (its runs' folders and the session folder) is its one
        writable mount; it ends itself if no request comes for ``session_idle_exit_s`` (a killed controller)."""
        from dataclasses import replace

        from llenergymeasure.launchers.session import RunnerProcess, session_log

        cfg = first.request.config
        use_gpu = wants_gpu(cfg, self._host_gpu_count())
        ref = self.image or image_tag(cfg.backend, cpu=not use_gpu)
        info = require_image(self.client, ref, cfg.backend, cpu=not use_gpu)
        root = session.session_dir.parent.parent  # <study>/.sessions/<id>
        session.docker = (info.id, use_gpu, root)
        token_file = _token_file(cfg)  # the session's runs share allow_model_download (it is in the engine identity)
        options = container_options(replace(first, exchange_dir=root), ref, use_gpu, token_file,
                                    self._gpus(cfg, use_gpu))
        rel = session.session_dir.resolve().relative_to(root.resolve())
        options["command"] = ["--session", f"{EXCHANGE_MOUNT}/{rel}",
                              "--idle-exit-s", f"{self.session_idle_exit_s:g}"]
        options["labels"] = {**options["labels"], "lem.experiment": session.session_dir.name,
                             LABEL_STUDY: str(root.resolve())}
        log_path = session_log(session.session_dir)
        log = open(log_path, "w", encoding="utf-8")
        try:
            container = self.client.containers.create(**options)
            container.start()
            stream = container.logs(stream=True, follow=True, stdout=True, stderr=False)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            log.close()
            _remove_token(token_file)
            raise SetupError(f"the Docker engine could not start the engine session ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200]})") from None

        def wait(timeout: float) -> int | None:
            try:
                return int(container.wait(timeout=timeout).get("StatusCode", -1))
            except (docker.errors.DockerException, requests.exceptions.RequestException):
                return None

        stderr_seen: list[str] = []  # what the container logged, fetched before it is removed

        def finish() -> None:
            try:
                stderr_seen.append(container.logs(stdout=False, stderr=True).decode("utf-8", "replace"))
                log.write(stderr_seen[-1])
            except Exception:
                pass
            log.close()
            _quietly(container.remove, force=True)
            _remove_token(token_file)

        def log_since(mark: object) -> str:
            if stderr_seen:  # removed: what it logged from the mark's second on
                return stderr_seen[-1]
            try:
                return container.logs(stdout=False, stderr=True, since=mark).decode("utf-8", "replace")
            except Exception:
                return ""

        return RunnerProcess(lines=start_reader(_lines(stream)), stop=lambda: _quietly(container.stop,
                             timeout=STOP_GRACE_S), kill=lambda: _quietly(container.kill), wait=wait, finish=finish,
                             where=f"container {container.short_id} ({ref})", log_file=log_path,
                             log_line=lambda line: log.write(f"[stdout] {line}\n"),
                             log_mark=lambda: int(time.time()), log_since=log_since)

    def launch(self, spec: LaunchSpec, on_event: EventSink) -> LaunchOutcome:
        on_event = memo = ErrorMemo(on_event)
        cfg = spec.request.config
        use_gpu = wants_gpu(cfg, self._host_gpu_count())
        ref = self.image or image_tag(cfg.backend, cpu=not use_gpu)
        info = require_image(self.client, ref, cfg.backend, cpu=not use_gpu)
        gpus = self._gpus(cfg, use_gpu)
        request = self._container_request(spec, info.id, use_gpu, spec.exchange_dir, EXCHANGE_MOUNT)
        atomic_write_text(spec.exchange_dir / REQUEST_FILE, request.model_dump_json(indent=2))

        token_file = _token_file(cfg)
        log_path = spec.exchange_dir / LOG_FILE
        container = None
        try:
            container = self.client.containers.create(**container_options(spec, ref, use_gpu, token_file, gpus))
            container.start()
            with open(log_path, "w", encoding="utf-8") as log:
                stream = container.logs(stream=True, follow=True, stdout=True, stderr=False)
                timed_out = pump(
                    start_reader(_lines(stream)),
                    on_event,
                    on_other_line=lambda line: log.write(f"[stdout] {line}\n"),
                    timeouts=spec.timeouts,
                    stop=lambda: _quietly(container.stop, timeout=STOP_GRACE_S),
                    kill=lambda: _quietly(container.kill),
                )
                code = int(container.wait(timeout=STOP_GRACE_S + 30).get("StatusCode", -1))
                log.write(container.logs(stdout=False, stderr=True).decode("utf-8", "replace"))
            return LaunchOutcome(exit_code=code, log_file=log_path, timed_out=timed_out, last_error=memo.message,
                                 where=f"container {container.short_id} ({ref})")
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            # the engine went away or stopped answering mid-run: say so in one line; the folder keeps what was written
            raise SetupError(f"the Docker engine failed during the run ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200]}); files so far are in {spec.exchange_dir}") from None
        finally:
            if container is not None:
                _quietly(container.remove, force=True)
            _remove_token(token_file)


def _token_file(cfg) -> Path | None:
    """The Hugging Face token, when a download may need one, in a fresh 0600 file of its own folder (removed by the
    caller when the container is gone): mounted read-only, never in argv or the environment."""
    token = _hf_token() if cfg.allow_model_download else None
    if not token:
        return None
    token_file = Path(tempfile.mkdtemp(prefix="lem-secret-")) / "hf_token"
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    return token_file


def _remove_token(token_file: Path | None) -> None:
    if token_file is not None:
        shutil.rmtree(token_file.parent, ignore_errors=True)


def _quietly(fn, **kwargs) -> None:
    try:
        fn(**kwargs)
    except Exception:
        pass
