"""Long answers on the PyTorch path for real: lem's transformers server on loopback, four requests whose output
lengths are drawn from a long-tailed lognormal (one over 1,000 tokens), each forced to its drawn length; the lengths,
the energy-per-answer and J/token fields (null with the reason on CPU) checked against the draw computed apart
(tests/long_answers.py)."""

from __future__ import annotations

import pyarrow.parquet as pq
from conftest import write_yaml
from long_answers import HIGH, SERVING, check_long_answers, long_context_copy


def test_long_tailed_answers_run_to_their_drawn_lengths_on_the_pytorch_path(tmp_path, tiny_model_path):
    import llenergymeasure as lem

    model = long_context_copy(tiny_model_path, tmp_path / "model")
    cfg = write_yaml(tmp_path / "long.yaml", f"""\
name: long
model: {model}
scenario: serving
device: cpu
dtype: float32
max_input_tokens: 32
max_output_tokens: {HIGH}
force_output_length: true
runner: local
pytorch: {{batch_size: 4}}
serving:
{SERVING}""")
    lem.run_experiment(str(cfg), output=tmp_path / "out")
    run_dir = next((tmp_path / "out").iterdir())
    check_long_answers(run_dir / "result.json", pq.read_table(run_dir / "requests.parquet").to_pylist())
