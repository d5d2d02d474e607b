"""What this machine can run, probed without importing the optional packages that are absent: the runtime
(pipeline/) installs and runs without torch, TensorRT and CUDA."""
from __future__ import annotations

import functools
import importlib.util


def installed(module: str) -> bool:
    """Whether ``module`` can be imported (found on the path), without importing it."""
    return importlib.util.find_spec(module) is not None


def tensorrt_installed() -> bool:
    return installed("tensorrt")


@functools.cache
def cuda_available() -> bool:
    """Whether a CUDA GPU is usable: through torch when it is installed, else through cuda-bindings."""
    if installed("torch"):
        import torch

        return torch.cuda.is_available()
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return False
    error, count = cudart.cudaGetDeviceCount()
    return error == cudart.cudaError_t.cudaSuccess and count > 0


def require_installed(module: str, engine: str, extra: str) -> None:
    """Raise UserError unless ``module`` is installed: engine ``engine`` needs the ``extra`` install."""
    if not installed(module):
        from pipeline.errors import UserError

        raise UserError(f"engine '{engine}' needs {module}, which is not installed: pip install -e '.[{extra}]'"
                        + (" on a machine with an NVIDIA GPU and driver" if extra == "tensorrt" else ""))
