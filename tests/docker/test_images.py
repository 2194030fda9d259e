"""Runner images on the real engine: labels, the fingerprint check, containment of created containers, doctor."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from conftest import make_config, run_lem
from lem_runner.contract import RunRequest, contract_fingerprint
from llenergymeasure.images.catalog import LABEL_CONTRACT, LABEL_MANAGED
from llenergymeasure.launchers.base import LaunchSpec
from llenergymeasure.launchers.docker import container_options
from llenergymeasure.models import ResolvedModel
from testcontainers.core.container import DockerContainer

pytestmark = pytest.mark.docker


def test_image_labels_carry_version_backend_and_contract(engine, cpu_image):
    labels = engine.images.get(cpu_image.tag).labels
    assert labels[LABEL_CONTRACT] == contract_fingerprint()
    assert labels["lem.backend"] == "pytorch" and labels["lem.variant"] == "cpu"
    assert labels["lem.backend.version"]  # transformers pinned to the host's version
    listed = run_lem("images", "list", env={"COLUMNS": "250"})
    assert listed.returncode == 0 and cpu_image.tag in listed.stdout


def test_runner_in_image_reports_the_labelled_fingerprint(cpu_image):
    """testcontainers starts the image as-is: the runner inside speaks the contract its label claims."""
    container = DockerContainer(cpu_image.tag).with_command("--fingerprint")
    container.start()
    try:
        status = container.get_wrapped_container().wait(timeout=60)
        stdout, _ = container.get_logs()
    finally:
        container.stop()
    assert status["StatusCode"] == 0
    assert stdout.decode().strip() == contract_fingerprint()


def test_image_with_another_contract_is_refused_with_the_rebuild_command(engine, cpu_image, tmp_path, tiny_config):
    dockerfile = f"FROM {cpu_image.tag}\nLABEL {LABEL_CONTRACT}=0000000000000000\n"
    image, _ = engine.images.build(fileobj=io.BytesIO(dockerfile.encode()), tag="lem-test/stale:1", rm=True,
                                   labels={LABEL_MANAGED: "true"})
    try:
        proc = run_lem("run", str(tiny_config), "-o", str(tmp_path / "r"), "--image", "lem-test/stale:1")
        assert proc.returncode == 3, proc.stderr
        assert "0000000000000000" in proc.stderr and "lem images build pytorch" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        engine.images.remove(image.id, force=True)


def test_missing_image_says_how_to_build_it(tmp_path, tiny_config, engine):
    proc = run_lem("run", str(tiny_config), "-o", str(tmp_path / "r"), "--image", "lem-test/absent:0")
    assert proc.returncode == 3 and "not found" in proc.stderr and "lem images build" in proc.stderr


def test_created_container_is_contained(engine, cpu_image, tmp_path, tiny_model_path):
    """The options the launcher uses, applied by the real engine and read back from `docker inspect`."""
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    config = make_config(model=str(tiny_model_path))
    spec = LaunchSpec(exchange_dir=exchange, request=RunRequest(experiment_id="t", config=config, model_path="x"),
                      model=ResolvedModel(str(tiny_model_path), mount_root=Path(tiny_model_path)))
    container = engine.containers.create(**container_options(spec, cpu_image.tag, use_gpu=False, token_file=None))
    try:
        host = container.attrs["HostConfig"]
        assert host["Privileged"] is False
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
        assert "no-new-privileges" in host["SecurityOpt"]
        assert host["ReadonlyRootfs"] is True
        assert host["NetworkMode"] == "none"
        assert container.attrs["Config"]["User"] == f"{os.getuid()}:{os.getgid()}"
        mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
        assert mounts["/lem/exchange"]["RW"] is True
        assert mounts["/lem/model"]["RW"] is False
        assert [d for d, m in mounts.items() if m["RW"]] == ["/lem/exchange"]
        assert container.labels[LABEL_MANAGED] == "true" and container.labels["lem.experiment"] == "t"
        assert not any("TOKEN" in e and "PATH" not in e for e in container.attrs["Config"]["Env"])
    finally:
        container.remove(force=True)


def test_doctor_says_what_works_and_what_is_missing(engine):
    proc = run_lem("doctor", env={"COLUMNS": "250"})
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "Docker engine" in out and "NVIDIA container runtime" in out and "NVML" in out
    if "nvidia" not in (engine.info().get("Runtimes") or {}):
        assert "nvidia-container-toolkit" in out  # the fix is named


def test_a_missing_base_image_is_built_by_the_script_and_a_present_one_is_left(engine, tmp_path):
    """`lem images build --cpu` reaches ensure_base_image: the real script is a no-op for the base the engine has;
    a missing one is built (here by a stand-in script: the real one debootstraps for minutes), and a failing
    build is one error naming the script."""
    import subprocess

    from llenergymeasure.errors import SetupError
    from llenergymeasure.images.build import BASE_IMAGE_SCRIPT, ensure_base_image, source_root
    from llenergymeasure.images.catalog import BASE_IMAGE_CPU

    real = source_root() / BASE_IMAGE_SCRIPT
    if ensure_base_image(engine, BASE_IMAGE_CPU, script=tmp_path / "never-run.sh") is False:
        done = subprocess.run(["bash", str(real), BASE_IMAGE_CPU], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "already present" in done.stdout
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "marker").write_text("base\n")
    script = tmp_path / "build.sh"
    script.write_text(f'set -e\necho "building $1"\ntar -C {tmp_path / "root"} -c . | docker import - "$1" >/dev/null\n')
    tag = f"lem-test/base:{os.getpid()}"
    lines: list[str] = []
    try:
        assert ensure_base_image(engine, tag, lines.append, script=script) is True
        assert engine.images.get(tag) and f"building {tag}" in lines
        assert ensure_base_image(engine, tag, script=tmp_path / "never-run.sh") is False  # present: not rebuilt
    finally:
        engine.images.remove(tag, force=True)
    failing = tmp_path / "fail.sh"
    failing.write_text('echo "no debootstrap here"\nexit 7\n')
    with pytest.raises(SetupError) as info:
        ensure_base_image(engine, tag, script=failing)
    assert "exit 7" in str(info.value) and str(failing) in str(info.value) and "no debootstrap here" in str(info.value)
