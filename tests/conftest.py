import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared datasets at {SHARED_DATA} (present in CI; absent here)")
    return SHARED_DATA


def sigterm_pipeline(args: list[str], files: list[Path], min_lines: int) -> tuple[int, str]:
    """Start run_pipeline.py with ``args``, send SIGTERM once every file in ``files`` holds ``min_lines`` lines (or after
    two minutes), and return its exit status and stderr."""
    proc = subprocess.Popen([sys.executable, str(REPO / "run_pipeline.py"), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(f.exists() and f.read_text().count("\n") >= min_lines
                                                  for f in files):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr
