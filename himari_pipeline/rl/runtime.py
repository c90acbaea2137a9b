"""The numeric runtime a run trained on: what makes one config's checkpoints differ between machines.

Training is deterministic for one runtime: the same experiment, splits and seed give bit-identical
weights. Another CPU (its matrix and vector kernels round differently) or other library versions give
another draw of the same training, as a new seed would; every checkpoint records this dict so a
report can say which runtime its numbers came from.
"""

from __future__ import annotations

import platform

import numpy as np
import torch

__all__ = ["describe_runtime", "runtime_info"]


def runtime_info() -> dict[str, str | int]:
    """Python, torch and numpy versions, the CPU architecture, torch's kernel family and thread count."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
    }


def describe_runtime(info: dict) -> str:
    """One phrase naming a recorded runtime (``torch 2.13.0+cpu, numpy 2.4.6, ..., 1 thread``)."""
    threads = int(info.get("torch_threads", 0))
    return (
        f"torch {info.get('torch', '?')}, numpy {info.get('numpy', '?')}, Python {info.get('python', '?')}, "
        f"{info.get('machine', '?')} {info.get('cpu_capability', '?')} kernels, "
        f"{threads} thread{'s' if threads != 1 else ''}"
    )
