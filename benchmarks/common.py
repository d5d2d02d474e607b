"""What every benchmark records next to its numbers: the machine and the package versions."""
from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version


def machine(packages: tuple[str, ...] = (), **extra) -> dict:
    """CPU model, core count, Python and the versions of `packages`, so results can be compared."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}
    for package in ("numpy",) + tuple(packages):
        try:
            info[package] = version(package)
        except PackageNotFoundError:
            info[package] = None
    info.update(extra)
    return info
