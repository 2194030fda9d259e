"""resolve_model: local folders, hub ids in a real Hugging Face cache layout, downloads, and what is rejected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_config
from llenergymeasure.errors import ConfigError
from llenergymeasure.models import ResolvedModel, resolve_model

#: a hub id that no real cache on any machine holds
UNCACHED = "lem-tests-nobody/never-cached-model-7f3a9c"


def _model_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    return path


def _config_error(**overrides) -> str:
    with pytest.raises(ConfigError) as info:
        resolve_model(make_config(**overrides))
    assert info.value.exit_code == 2
    return str(info.value)


# --- local folders ----------------------------------------------------------------------------------------------


def test_a_model_folder_is_mounted_from_its_resolved_path(tmp_path):
    folder = _model_folder(tmp_path / "real" / "model")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    model = resolve_model(make_config(model=str(tmp_path / "link" / "model")))
    assert model.mount_root == folder.resolve()
    assert (model.relative, model.hub_id) == ("", None)
    assert model.host_path == str(folder.resolve())


def test_a_relative_folder_resolves_against_the_cwd(tmp_path, monkeypatch):
    folder = _model_folder(tmp_path / "models" / "tiny")
    monkeypatch.chdir(tmp_path)
    assert resolve_model(make_config(model="./models/tiny")).mount_root == folder.resolve()


def test_a_folder_without_config_json_is_not_a_model(tmp_path):
    (tmp_path / "weights").mkdir()
    message = _config_error(model=str(tmp_path / "weights"))
    assert message == f"model: '{tmp_path / 'weights'}' has no config.json, so it is not a transformers model folder"


def test_a_missing_absolute_path_is_a_missing_folder(tmp_path):
    assert _config_error(model=str(tmp_path / "gone")) == f"model: folder '{tmp_path / 'gone'}' does not exist"


def test_a_file_is_not_a_model_folder(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert "does not exist" in _config_error(model=str(tmp_path / "config.json"))


@pytest.mark.parametrize("ref", ["a b/c d", "org/name/extra", "-org/name", "org/na me"])
def test_a_string_that_is_neither_a_path_nor_a_hub_id_is_rejected(ref):
    assert _config_error(model=ref) == f"model: '{ref}' is neither an existing folder nor a hub id like 'org/name'"


def test_an_unknown_embedded_model_names_the_known_one():
    message = _config_error(model="embedded:foo")
    assert message.startswith("model: unknown embedded model 'embedded:foo'")
    assert "embedded:SmolLM2-135M-Instruct" in message


# --- hub ids that are not cached --------------------------------------------------------------------------------


def test_an_uncached_hub_id_without_download_permission_says_how_to_allow_it():
    message = _config_error(model=UNCACHED)
    assert UNCACHED in message
    assert "allow_model_download: true" in message


def test_an_uncached_hub_id_with_download_permission_is_left_to_the_runner():
    model = resolve_model(make_config(model=UNCACHED, allow_model_download=True))
    assert model == ResolvedModel(UNCACHED, mount_root=None, relative="", hub_id=UNCACHED)
    assert model.host_path == UNCACHED


# --- hub ids in a real cache layout -----------------------------------------------------------------------------
# huggingface_hub reads HF_HOME into huggingface_hub.constants when it is first imported, and resolve_model passes
# no cache_dir, so setting HF_HOME in this process would not reach it. Each lookup runs in a fresh interpreter that
# inherits the test's environment: the real code, reading the real layout, with nothing patched.

_RESOLVE = """
import json, sys
from lem_runner.contract import ExperimentConfig
from llenergymeasure.errors import ConfigError
from llenergymeasure.models import resolve_model
try:
    m = resolve_model(ExperimentConfig(model=sys.argv[1], allow_model_download=sys.argv[2] == "1"))
except ConfigError as exc:
    print(json.dumps({"error": str(exc)}))
else:
    print(json.dumps({"mount_root": m.mount_root and str(m.mount_root), "relative": m.relative,
                      "host_path": m.host_path, "hub_id": m.hub_id}))
"""

REV = "0123456789abcdef0123456789abcdef01234567"


def _resolve_in_fresh_process(ref: str, allow_download: bool = False) -> dict:
    proc = subprocess.run([sys.executable, "-c", _RESOLVE, ref, "1" if allow_download else "0"],
                          capture_output=True, text=True, timeout=120, check=False, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty HF_HOME in tmp, with no other cache variable overriding it."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path / "hf-home" / "hub"


def _cache_repo(hub: Path, repo_id: str, files: dict[str, str], ref: str = REV) -> Path:
    """The layout huggingface_hub writes: blobs/<hash>, snapshots/<rev>/<file> symlinked to the blob, refs/main."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / REV
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for i, (name, content) in enumerate(files.items()):
        (repo / "blobs" / f"blob{i}").write_text(content)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", f"blob{i}"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(ref)  # no newline, as huggingface_hub writes it
    return repo


def test_a_cached_hub_id_mounts_its_repo_folder_and_points_at_the_snapshot(hub_cache):
    repo = _cache_repo(hub_cache, "org/name", {"config.json": "{}", "tokenizer.json": "{}"})
    found = _resolve_in_fresh_process("org/name")
    assert found == {"mount_root": str(repo), "relative": f"snapshots/{REV}",
                     "host_path": str(repo / "snapshots" / REV), "hub_id": None}
    assert (Path(found["host_path"]) / "config.json").read_text() == "{}"  # the symlink into blobs/ resolves


def test_a_cached_repo_without_config_json_counts_as_not_cached(hub_cache):
    _cache_repo(hub_cache, "org/name", {"tokenizer.json": "{}"})
    assert "allow_model_download: true" in _resolve_in_fresh_process("org/name")["error"]


def test_a_cache_whose_main_ref_names_a_missing_snapshot_counts_as_not_cached(hub_cache):
    _cache_repo(hub_cache, "org/name", {"config.json": "{}"}, ref="f" * 40)
    assert _resolve_in_fresh_process("org/name", allow_download=True)["hub_id"] == "org/name"


def test_another_repo_in_the_cache_does_not_match(hub_cache):
    _cache_repo(hub_cache, "org/other", {"config.json": "{}"})
    assert "not in the Hugging Face cache" in _resolve_in_fresh_process("org/name")["error"]


def test_an_endpoint_run_needs_no_local_model_unless_it_sends_exact_input_lengths():
    # the user's server holds the model and its usage gives the token counts
    serving = {"endpoint": "http://127.0.0.1:8000/v1", "rate": 2}
    resolved = resolve_model(make_config(model=UNCACHED, scenario="serving", serving=serving))
    assert resolved == ResolvedModel(UNCACHED) and resolved.host_path == UNCACHED
    # exact input lengths are token ids from the vocabulary in config.json: that needs the model's folder
    message = _config_error(model=UNCACHED, scenario="serving",
                            serving={**serving, "input_tokens": {"dist": "fixed", "value": 16}})
    assert message.startswith("serving.input_tokens: ") and UNCACHED in message
    # without an endpoint the rules stay: an uncached hub id without download permission is refused
    assert _config_error(model=UNCACHED, scenario="serving", serving={"rate": 2}).startswith("model: ")
