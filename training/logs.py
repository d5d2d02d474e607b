"""What a training run shows and leaves behind besides checkpoints: a progress line, CSV logs, a curves PNG."""
from __future__ import annotations

import csv
import math
import sys
import time
from pathlib import Path


class CsvLog:
    """Rows appended to a CSV file, flushed at once (a crash loses nothing). A row with a column the file lacks
    (e.g. the first validated epoch, when validation runs every few epochs) rewrites it with that column added."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, row: dict[str, float | int | str]) -> None:
        new = not self.path.is_file() or self.path.stat().st_size == 0
        columns = list(row) if new else self._columns()
        if not new and not set(row) <= set(columns):
            self._rewrite(columns + [key for key in row if key not in columns], self.rows())
            columns = self._columns()
        with self.path.open("a", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns)
            if new:
                writer.writeheader()
            writer.writerow(row)

    def rows(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as file:
            return list(csv.DictReader(file))

    def keep_rows_up_to(self, column: str, last: int) -> None:
        """Drop rows whose ``column`` exceeds ``last``: on resume, what a crashed run logged after its checkpoint."""
        rows = self.rows()
        kept = [row for row in rows if int(row[column]) <= last]
        if len(kept) == len(rows):
            return
        self._rewrite(list(rows[0]), kept)

    def _rewrite(self, columns: list[str], rows: list[dict[str, str]]) -> None:
        with self.path.open("w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    def _columns(self) -> list[str]:
        with self.path.open(newline="") as file:
            return next(csv.reader(file))


def write_curves(iteration_rows: list[dict[str, str]], epoch_rows: list[dict[str, str]], path: Path,
                 title: str) -> Path:
    """Three panels: loss terms per logged window, the step size (schedule lr and D-Adaptation's d x lr), and the
    validation metrics per epoch. Agg backend: no display needed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(13, 4), dpi=100)
    FigureCanvasAgg(figure)
    losses, steps, metrics = figure.subplots(1, 3)
    iterations = [int(row["iteration"]) for row in iteration_rows]
    for column in (c for c in (iteration_rows[0] if iteration_rows else {}) if c.startswith("loss")):
        losses.plot(iterations, [float(row[column]) for row in iteration_rows], label=column)
    losses.set(xlabel="iteration", ylabel="loss (window mean)", yscale="log", title=title)
    for column, label in (("lr", "schedule lr"), ("step_size", "d x lr (D-Adaptation)")):
        steps.plot(iterations, [float(row[column]) for row in iteration_rows], label=label)
    steps.set(xlabel="iteration", yscale="log", title="step size")
    epochs = [int(row["epoch"]) for row in epoch_rows if row.get("val_mAP12")]
    for column in ("val_mAP07", "val_mAP12", "val_recall"):
        metrics.plot(epochs, [float(row[column]) for row in epoch_rows if row.get("val_mAP12")], marker="o",
                     label=column)
    metrics.set(xlabel="epoch", ylim=(0, 1), title="validation")
    for axes in (losses, steps, metrics):
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    return path


class TrainingProgress:
    """One console line: epoch, iteration, iterations/s since (re)start, smoothed loss, ETA of the whole run.
    Rewritten in place on a terminal; a plain line every ``interval_s`` seconds otherwise (logs, CI)."""

    def __init__(self, total_iters: int, start_iteration: int, epochs: int, stream=None):
        self.total, self.start, self.epochs = total_iters, start_iteration, epochs
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.interval_s = 0.5 if self.tty else 30.0
        self._started = self._shown = time.monotonic()
        self._loss = math.nan

    def update(self, iteration: int, epoch: int, loss: float) -> None:
        """``iteration``: iterations done so far in the run; ``loss`` the last iteration's total loss."""
        self._loss = loss if math.isnan(self._loss) else 0.9 * self._loss + 0.1 * loss
        now = time.monotonic()
        if now - self._shown >= self.interval_s or iteration == self.total:
            self._shown = now
            self._write(self._text(iteration, epoch, now), final=iteration == self.total)

    def message(self, text: str) -> None:
        """A line of its own (epoch results), not overwritten by the next update."""
        self._write(text, final=True)

    def _text(self, iteration: int, epoch: int, now: float) -> str:
        rate = (iteration - self.start) / max(now - self._started, 1e-9)
        eta = (self.total - iteration) / rate if rate > 0 else math.inf
        eta_text = "?" if math.isinf(eta) else time.strftime("%H:%M:%S", time.gmtime(eta)) if eta < 86400 \
            else f"{eta / 86400:.1f} d"
        return (f"epoch {epoch + 1}/{self.epochs}  iter {iteration}/{self.total}  {rate:.2f} it/s  "
                f"loss {self._loss:.4f}  ETA {eta_text}")

    def _write(self, text: str, final: bool) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
