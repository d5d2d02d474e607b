import itertools
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

from pipeline.sources.base import SourceError  # noqa: E402


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared datasets at {SHARED_DATA} (present in CI; absent here)")
    return SHARED_DATA


def sigterm_pipeline(args: list[str], files: list[Path], min_lines: int) -> tuple[int, str]:
    """Start run_pipeline.py with ``args``, send SIGTERM once every file in ``files`` holds ``min_lines`` lines (or
    after two minutes), and return its exit status and stderr."""
    proc = subprocess.Popen([sys.executable, str(REPO / "run_pipeline.py"), *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not all(f.exists() and f.read_text().count("\n") >= min_lines
                                                  for f in files):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


class FakeSource:
    """A source of ``n`` small 16-bit frames (endless when None) for runner and fault tests.

    Pixel [0, 0] numbers the frames from 1 across every source sharing ``counter``, so a reopened camera's frames
    continue the count of the one it replaces. On reaching frame ``fail_at`` it raises SourceError(``error``), as a
    corrupt file or an unplugged camera would.
    """

    fps = 30.0

    def __init__(self, n: int | None = None, live: bool = False, fail_at: int | None = None, stream_id: str = "test",
                 counter: list[int] | None = None, error: str = "frame {index} is corrupt"):
        self.num_frames, self.live, self.fail_at, self.stream_id = n, live, fail_at, stream_id
        self.counter = [0] if counter is None else counter
        self.error, self.closed = error, False

    def __iter__(self):
        for index in itertools.count() if self.num_frames is None else range(self.num_frames):
            if index == self.fail_at:
                raise SourceError(self.error.format(index=index, stream=self.stream_id))
            self.counter[0] += 1
            image = np.zeros((8, 8), np.uint16)
            image[0, 0] = self.counter[0] % 65536
            yield image

    def ground_truth(self):
        return None

    def close(self):
        self.closed = True
