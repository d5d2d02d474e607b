"""Reading MOTChallenge text files (ground truth or tracker output) into one float array for the metrics."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.errors import UserError

_FORMAT = "frame,id,x,y,w,h[,conf,...] with frame >= 1 and w, h >= 0"


def read_mot_file(path: str | Path, *, ground_truth: bool = False) -> np.ndarray:
    """Rows of a MOTChallenge file as float64 [M, 6]: frame (1-based), id, x, y, w, h (top-left corner and size).

    Columns after the sixth are not returned. With ``ground_truth=True`` rows whose 7th column is 0 are dropped:
    in MOTChallenge ground truth that column is the "consider" flag and 0 marks a box to ignore (TrackEval drops
    them the same way). In tracker output the 7th column is a confidence, so every row is kept. Values may be
    separated by commas and/or spaces; blank lines are skipped. An empty file gives a [0, 6] array.
    Raises UserError naming the file and line for a missing file, a malformed line or a repeated (frame, id).
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read MOT file {path}: {exc}. Give the path of a MOTChallenge text file "
                        f"({_FORMAT}).") from None
    rows, line_numbers = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        values = _parse_line(line, path, number)
        if ground_truth and len(values) >= 7 and values[6] == 0:
            continue
        rows.append(values[:6])
        line_numbers.append(number)
    table = np.array(rows, dtype=np.float64).reshape(-1, 6)
    repeat = _repeated_frame_id(table)
    if repeat is not None:
        frame, track_id = table[repeat[0], :2]
        raise UserError(f"{path} lines {line_numbers[repeat[0]]} and {line_numbers[repeat[1]]}: id {track_id:g} "
                        f"appears twice in frame {frame:g}; each id may appear once per frame.")
    return table


def _parse_line(line: str, path: Path, number: int) -> list[float]:
    def fail(problem: str) -> UserError:
        return UserError(f"{path} line {number}: {problem} in {line.strip()!r}; expected {_FORMAT}")

    try:
        values = [float(v) for v in line.replace(",", " ").split()]
    except ValueError:
        raise fail("a value is not a number") from None
    if len(values) < 6:
        raise fail(f"{len(values)} values where at least 6 are needed")
    frame, track_id, _, _, w, h = values[:6]
    if not np.all(np.isfinite(values[:6])):
        raise fail("a value is NaN or infinite")
    if frame < 1 or frame != int(frame) or track_id != int(track_id):
        raise fail("frame and id must be whole numbers, frame counted from 1")
    if w < 0 or h < 0:
        raise fail("box width and height must not be negative")
    return values


def as_mot_rows(rows: np.ndarray, name: str) -> np.ndarray:
    """``rows`` checked against the [M, 6] contract of ``read_mot_file`` and returned as float64.

    Raises ValueError naming ``name``: these arrays come from code (a tracker, a file already read), not users.
    """
    table = np.asarray(rows, dtype=np.float64)
    if table.ndim != 2 or table.shape[1] != 6:
        raise ValueError(f"{name} must be a [M, 6] array of frame, id, x, y, w, h rows, got shape {table.shape}")
    if not np.all(np.isfinite(table)):
        raise ValueError(f"{name} contains NaN or infinite values")
    repeat = _repeated_frame_id(table)
    if repeat is not None:
        raise ValueError(f"{name} rows {repeat[0]} and {repeat[1]} repeat id {table[repeat[0], 1]:g} in frame "
                         f"{table[repeat[0], 0]:g}; each id may appear once per frame")
    return table


def _repeated_frame_id(table: np.ndarray) -> tuple[int, int] | None:
    """Indices of the first two rows with the same (frame, id), or None: a repeat would be counted twice."""
    order = np.lexsort((np.arange(len(table)), table[:, 1], table[:, 0]))
    keys = table[order, :2]
    same = np.flatnonzero(np.all(keys[1:] == keys[:-1], axis=1))
    if same.size == 0:
        return None
    return int(order[same[0]]), int(order[same[0] + 1])


def write_mot_rows(path: str | Path, rows: np.ndarray) -> None:
    """Write [M, 6] rows (frame, id, x, y, w, h) as a MOTChallenge file that ``read_mot_file`` reads back."""
    table = as_mot_rows(rows, str(path))
    with open(path, "w", encoding="ascii") as out:
        for frame, track_id, x, y, w, h in table.tolist():
            out.write(f"{frame:.0f},{track_id:.0f},{x:.3f},{y:.3f},{w:.3f},{h:.3f},1,-1,-1,-1\n")
