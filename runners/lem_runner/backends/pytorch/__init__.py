"""The pytorch backend: its config section (config.py), spec (spec.py) and implementation (backend.py, which
imports the engine's library; nothing here does).

transformers imports torchao whenever it is installed (the ``torchao`` extra), and torchao's import logs warnings
that say nothing about the run: kernels built for other Pythons or CUDA versions that it skips ("Failed to load
..._C_mxfp8.cpython-310...so"), no triton on a CPU host, and torch's deprecation of its enum registrations. They
would land on stderr beside lem's one-line refusal of a bad config, so those two loggers keep errors only; a
quantization that needs the missing kernels still fails loudly, at load."""

import logging

for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)
