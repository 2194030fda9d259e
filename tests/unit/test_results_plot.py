"""The PNGs: axes labelled with units, the Pareto front, error bars from cycles, the power timeseries with the window
shaded, and a plain statement (not a crash) when energy is null. GPU-like results are made with the shared
``make_result`` factory and the runner's own timeseries writer."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import make_config, make_result
from lem_runner.contract.config import CarbonConfig
from lem_runner.energy.device import DeviceSample
from lem_runner.energy.sampler import SampleRow
from lem_runner.energy.timeseries import write_timeseries
from llenergymeasure.errors import ConfigError
from llenergymeasure.render.report import write_report
from llenergymeasure.results.discover import find_experiments
from llenergymeasure.results.pareto import pareto_front
from llenergymeasure.results.plot import configurations, efficiency_figure, plot_results
from matplotlib.container import ErrorbarContainer
from matplotlib.text import Text

PNG = b"\x89PNG\r\n\x1a\n"


def _gpu_result(exp_id: str, tps: float, jpt: float, batch: int = 1, backend: str = "pytorch", series: bool = True):
    out_tokens = 32
    window = out_tokens / tps
    energy = jpt * out_tokens
    config = make_config(backend=backend, pytorch={"batch_size": batch}) if backend == "pytorch" else \
        make_config(backend=backend)
    return make_result(
        config=config, experiment_id=exp_id, output_tokens_per_second=tps, inference_time_s=window,
        total_energy_j=energy, energy_per_token_j=jpt, adjusted_energy_per_token_j=jpt * 0.7,
        adjusted_energy_j=energy * 0.7,
        energy={"source": "nvml_counter", "method": "NVML energy counter",
                "timeseries_file": "timeseries.parquet" if series else None,
                "baseline": {"power_w": 60.0, "power_std_w": 2.0, "duration_s": 5.0, "n_samples": 50,
                             "measured_at": "2025-01-01T11:59:00Z"}},
        windows={"total": {"start_offset_s": 0.0, "duration_s": window, "output_tokens": out_tokens,
                           "tokens_per_second": tps, "energy_j": energy}},
        phases={"prefill": {"time_s": window * 0.3, "energy_j": energy * 0.4, "tokens": 40},
                "decode": {"time_s": window * 0.7, "energy_j": energy * 0.6, "tokens": 32},
                "method": "request timestamps", "prefill_spans_s": [(0.0, window * 0.15), (window / 2, window * 0.65)]},
    )


def _write(folder: Path, result, series: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(result.model_dump_json())
    if series:
        rows = [SampleRow(t / 10, "0", None, DeviceSample(power_w=60.0 + (200.0 if 0 <= t / 10 <= 1 else 0)))
                for t in range(-5, 16)]
        write_timeseries(rows, folder / "timeseries.parquet", 0.0)
    return folder


@pytest.fixture
def gpu_results(tmp_path) -> Path:
    root = tmp_path / "results"
    study = root / "st-20250101-120000"
    entries = []
    for point, (batch, tps) in enumerate(((1, 10.0), (4, 30.0))):
        for cycle, jitter in ((1, 0.9), (2, 1.1)):
            name = f"st-00{point + 1}-pytorch-c{cycle}-x"
            _write(study / name, _gpu_result(name, tps * jitter, 2.0 / (point + 1) * jitter, batch), series=False)
            entries.append({"label": f"pytorch.batch_size={batch}", "cycle": cycle, "result_path": name})
    (study / "manifest.json").write_text(json.dumps({"study": "st", "entries": entries}))
    _write(root / "single-a", _gpu_result("single-a", 20.0, 0.5, backend="vllm"))
    return root


def test_efficiency_and_power_plots_have_unit_labels(gpu_results, tmp_path):
    written = plot_results(gpu_results, tmp_path / "plots")
    assert [p.path.name for p in written] == ["efficiency.png", "power-single-a.png"]
    for p in written:
        assert p.path.read_bytes()[:8] == PNG and p.path.stat().st_size > 10_000
    eff, power = written
    assert eff.xlabel == "throughput (output tokens/s)" and eff.ylabel == "energy per output token (J/token)"
    assert "95 % CI" in eff.title
    assert power.xlabel.endswith("(s)") and power.ylabel == "power (W)"
    assert "shaded: measurement window 0–1.60 s, prefill spans" in power.title


def test_adjusted_plot_says_so(gpu_results, tmp_path):
    (eff, _) = plot_results(gpu_results, tmp_path / "p", adjusted=True)
    assert eff.ylabel == "idle-adjusted energy per output token (J/token)"


def test_adjusted_without_baseline_says_why(tmp_path):
    root = tmp_path / "results"
    _write(root / "a", _gpu_result("a", 10.0, 1.0).model_copy(update={"adjusted_energy_per_token_j": None}),
           series=False)
    (eff,) = plot_results(root, tmp_path / "p", adjusted=True)
    assert "no idle-adjusted figure" in eff.title


def test_configurations_group_cycles_and_keep_singles(gpu_results):
    configs = {c.label: c for c in configurations(find_experiments(gpu_results))}
    assert set(configs) == {"st: pytorch.batch_size=1", "st: pytorch.batch_size=4", "tiny-llama single-a"}
    point = configs["st: pytorch.batch_size=4"]
    assert point.tps.n == 2 and point.tps.mean == pytest.approx(30.0) and point.tps.ci95 > 0
    assert point.jpt.mean == pytest.approx(1.0)
    single = configs["tiny-llama single-a"]
    assert single.backend == "vllm" and single.tps.n == 1 and single.tps.ci95 is None


def test_pareto_front_keeps_only_undominated_points():
    # (tok/s, J/token): higher throughput and lower energy are better
    points = [(10.0, 2.0), (30.0, 1.0), (20.0, 0.5), (5.0, 3.0), (30.0, 1.5)]
    assert pareto_front(points) == [2, 1]
    assert pareto_front([(1.0, 1.0)]) == [0]
    assert pareto_front([(1.0, 1.0), (1.0, 1.0)]) == [0, 1]  # ties dominate neither


def test_cpu_results_plot_throughput_only_and_say_energy_is_null(tmp_path):
    root = tmp_path / "results"
    _write(root / "cpu-a", make_result(experiment_id="cpu-a"), series=False)
    (eff,) = plot_results(root, tmp_path / "plots")
    assert eff.path.read_bytes()[:8] == PNG
    assert eff.xlabel == "throughput (output tokens/s)"
    assert "Energy not measured" in eff.title and "run is on CPU" in eff.title


def test_throughput_only_bars_give_a_single_run_no_error_tick(tmp_path):
    """CPU runs: a study's bars carry their 95 % CI, clipped at 0; the single run's bar has no whisker of length 0."""
    root = tmp_path / "results"
    study = root / "cs-20250101-120000"
    entries = []
    for cycle, tps in ((1, 10.0), (2, 30.0)):
        name = f"cs-001-c{cycle}"
        _write(study / name, make_result(experiment_id=name, output_tokens_per_second=tps), series=False)
        entries.append({"label": "pytorch.batch_size=1", "cycle": cycle, "result_path": name})
    (study / "manifest.json").write_text(json.dumps({"study": "cs", "entries": entries}))
    _write(root / "cpu-single", make_result(experiment_id="cpu-single", output_tokens_per_second=5.0), series=False)
    configs = configurations(find_experiments(root))
    fig, ax = efficiency_figure(configs)
    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    single_y = next(i for i, c in enumerate(configs) if c.tps.ci95 is None)
    segments = [seg for coll in bars.lines[2] for seg in coll.get_segments()]
    assert len(segments) == 1 and all(y != single_y for seg in segments for _, y in seg)
    # mean 20, CI 12.71 x 14.14 / sqrt(2) = 127: the whisker starts at 0, not at -107
    assert min(x for seg in segments for x, _ in seg) == 0.0


def test_mixed_results_leave_out_null_energy_and_say_how_many(gpu_results, tmp_path):
    _write(gpu_results / "cpu-a", make_result(experiment_id="cpu-a"), series=False)
    eff = plot_results(gpu_results, tmp_path / "plots")[0]
    assert "1 configuration(s) without energy left out" in eff.title


def test_only_failed_runs_is_bad_input(tmp_path):
    folder = tmp_path / "r" / "x"
    folder.mkdir(parents=True)
    (folder / "error.json").write_text(json.dumps({"error_type": "E", "message": "m", "phase": "load"}))
    with pytest.raises(ConfigError, match="nothing to plot"):
        plot_results(tmp_path / "r")


def _many(root: Path, n: int) -> Path:
    """A study with n - 1 points (3 cycles each, close together so labels compete) and one single vLLM run."""
    study = root / "a-long-study-name-20250101-120000"
    entries = []
    for point in range(n - 1):
        batch, dtype = 2 ** (point % 5), ("float32", "bfloat16", "float16", "auto")[point // 5 % 4]
        for cycle, jitter in ((1, 0.95), (2, 1.0), (3, 1.06)):
            name = f"st-{point + 1:03d}-pytorch-c{cycle}-x"
            _write(study / name, _gpu_result(name, (10 + 3 * batch + 0.3 * point) * jitter,
                                             2.0 / (1 + batch) * jitter + 0.01 * point, batch), series=False)
            entries.append({"label": f"pytorch.batch_size={batch}, dtype={dtype}", "cycle": cycle,
                            "result_path": name})
    (study / "manifest.json").write_text(json.dumps({"study": "a-long-study-name", "entries": entries}))
    _write(root / "single-run-with-a-very-long-experiment-name-20250101",
           _gpu_result("single-run-with-a-very-long-experiment-name-20250101", 20.0, 0.5, backend="vllm"),
           series=False)
    return root


@pytest.mark.parametrize("n", [2, 6, 20])
def test_efficiency_text_stays_inside_the_figure_and_labels_never_overlap(tmp_path, n):
    configs = configurations(find_experiments(_many(tmp_path / "r", n)))
    fig, ax = efficiency_figure(configs)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    ticks = {id(t) for axis in (ax.xaxis, ax.yaxis) for tick in axis.get_major_ticks() + axis.get_minor_ticks()
             for t in (tick.label1, tick.label2)}
    drawn_ticks = [t for axis in (ax.xaxis, ax.yaxis) for t in axis.get_ticklabels()
                   if min(axis.get_view_interval()) <= t.get_position()[axis is ax.yaxis] <= max(axis.get_view_interval())]
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in ticks]
    texts += drawn_ticks
    assert texts and drawn_ticks
    for t in texts:  # nothing clipped at any edge: title, axis labels, tick labels, key, point labels
        box = t.get_window_extent(renderer)
        assert page.x0 - 0.5 <= box.x0 and box.x1 <= page.x1 + 0.5 and page.y0 - 0.5 <= box.y0 \
            and box.y1 <= page.y1 + 0.5, (t.get_text(), box, page)
    numbers = [t for t in ax.texts if t.get_text().isdigit()]
    assert sorted(int(t.get_text()) for t in numbers) == list(range(1, n + 1))
    boxes = [t.get_window_extent(renderer) for t in numbers]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), "two point labels overlap"
    assert ax.get_xlabel().endswith("(output tokens/s)") and ax.get_ylabel().endswith("(J/token)")
    # the key names every configuration by what sets it apart, not a cut-off common prefix
    key = [t.get_text() for t in fig.legends[0].get_texts()]
    assert key[0] == "1  bs=1 · fp32 (pytorch)" and len(set(key)) == n


def test_single_runs_get_no_stub_error_bars(tmp_path):
    root = tmp_path / "r"
    _write(root / "a", _gpu_result("a", 10.0, 1.0), series=False)
    _write(root / "b", _gpu_result("b", 20.0, 0.5), series=False)
    fig, ax = efficiency_figure(configurations(find_experiments(root)))
    assert not [c for c in ax.containers if isinstance(c, ErrorbarContainer)]  # markers only: no zero-length ticks
    (dots,) = [line for line in ax.get_lines() if line.get_label() == "pytorch"]
    assert sorted(dots.get_xdata()) == [10.0, 20.0]
    assert "single runs: no error bars" in ax.get_title()


def test_a_single_run_beside_a_study_of_its_backend_gets_no_error_tick(gpu_results):
    """The study's points have 95 % CIs; the single pytorch run beside them is a marker, not a bar of length 0 (the
    old figure drew it through one errorbar call per backend, with a 0 half-width: a cap tick on the dot)."""
    _write(gpu_results / "single-p", _gpu_result("single-p", 50.0, 0.25), series=False)
    fig, ax = efficiency_figure(configurations(find_experiments(gpu_results)))
    (bars,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer) and c.get_label() == "pytorch"]
    assert 50.0 not in list(bars.lines[0].get_xdata())  # the single run is not among the points with bars
    assert any(50.0 in list(line.get_xdata()) for line in ax.get_lines() if line.get_marker() == "o")
    # and no bar reaches below zero (asymmetric, clipped at 0)
    for segments in bars.lines[2]:
        assert min(y for seg in segments.get_segments() for _, y in seg) >= 0
        assert min(x for seg in segments.get_segments() for x, _ in seg) >= 0


def test_the_key_names_the_backend_once(gpu_results):
    fig, ax = efficiency_figure(configurations(find_experiments(gpu_results)))
    key = [t.get_text() for t in fig.legends[0].get_texts()]
    assert all(k.count("vllm") + k.count("pytorch") == 1 for k in key), key


@pytest.mark.parametrize("fmt,magic", [("svg", b"<?xml"), ("pdf", b"%PDF")])
def test_vector_formats_beside_png(gpu_results, tmp_path, fmt, magic):
    written = plot_results(gpu_results, tmp_path / fmt, fmt=fmt)
    assert [p.path.name for p in written] == [f"efficiency.{fmt}", f"power-single-a.{fmt}"]
    assert all(p.path.read_bytes()[:5].startswith(magic) for p in written)
    with pytest.raises(ConfigError, match="--format"):
        plot_results(gpu_results, tmp_path / "x", fmt="gif")


def test_report_is_one_self_contained_file_with_figures_emissions_and_notes(gpu_results, tmp_path):
    out = write_report(gpu_results, tmp_path / "report.html", CarbonConfig(grid_intensity_g_per_kwh=400, pue=1.2))
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 2  # efficiency + one power figure, inline
    # nothing fetched: no external script, stylesheet, image or font (SVG namespaces are names, not requests)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page) and "<link" not in page \
        and "<script" not in page and "url(http" not in page and "@import" not in page
    for text in ("Results", "single runs", "Efficiency", "Power", "Environment", "Method", "Warnings", "test-host",
                 "gCO2e/kWh × PUE 1.2", "nvml_counter"):
        assert text in page, text
    # single-a: 0.5 J/token x 32 tokens = 16 J -> 16 / 3.6e6 kWh x 1.2 x 400 g = 0.00213 g (3 significant digits)
    assert "0.00213" in page



def test_the_report_gives_serving_runs_their_own_section_figures_and_columns(tmp_path):
    """A serving study (J/good token by hand: E/N_good per point, 95 % CI t(1) = 12.706 over cycles at 0.9x and
    1.1x), an offline single run and a failed run: the serving study's table sits under Serving with goodput, TPOT,
    achieved rate and J per good token, serving.png is drawn there, the efficiency figure holds the offline run only,
    and the failed run shows the model and backend of the config.json in its folder (it showed `?`)."""
    from llenergymeasure.study.aggregate import aggregate_point
    from test_serving_plot import POINTS, _study

    root = _study(tmp_path)  # results/rates-…: 4 rates x 2 cycles, energy measured
    by_label: dict[str, list] = {}
    for e in find_experiments(root):
        by_label.setdefault(e.label, []).append(e.result)
    summary = {"study": "rates", "status": "complete", "finished": 8, "planned": 8, "failed": 0, "n_cycles": 2,
               "order": "interleave", "aggregates": [aggregate_point(k, "vllm", v).as_dict() for k, v in by_label.items()]}
    (root / "study_summary.json").write_text(json.dumps(summary))
    results = root.parent
    _write(results / "offline-a", _gpu_result("offline-a", 20.0, 0.5), series=False)
    failed = results / "broken-20250101-000000"
    failed.mkdir()
    (failed / "config.json").write_text(make_config(backend="vllm", model="org/Some-Model").model_dump_json())
    (failed / "error.json").write_text(json.dumps({"error_type": "OSError", "message": "gone", "phase": "load"}))
    page = write_report(results, tmp_path / "report.html").read_text(encoding="utf-8")
    serving = page[page.index("<h2>Serving</h2>"):page.index("<h2>Environment</h2>")]
    for header in ("goodput (req/s)", "TPOT p50 (ms)", "achieved rate (req/s)", "J/good token"):
        assert f">{header}<" in serving, header
    from llenergymeasure.render.compare import format_value
    from llenergymeasure.results.compare import Value

    for _, energy, _, good, _ in POINTS:
        x = energy / good
        assert format_value(Value(x, 12.7062047 * 0.2 * x / 2)).replace(" ± ", " ±&nbsp;") in serving
    assert serving.count("<svg") == 1 and "against the offered load" in serving  # serving.png, inline
    results_part = page[:page.index("<h2>Serving</h2>")]
    assert "rates" not in results_part.split("<h2>Efficiency</h2>")[0]  # not among the offline results
    assert page.count("<svg") == 2  # efficiency (offline-a only) + serving
    (row,) = [r.split("</tr>")[0] for r in page.split("<tr>") if "broken-20250101-000000" in r.split("</tr>")[0]]
    assert ">Some-Model<" in row and ">vllm<" in row and ">?<" not in row
