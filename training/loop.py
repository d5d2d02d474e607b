"""The training loop: DenseSIRST or clip batches -> detector loss -> DAdaptAdam, with validation, logs and exact resume.

One epoch = the repeated train split in a seeded random order, cut into full batches (the last partial batch is
dropped), optionally capped by ``loop.max_iters_per_epoch``. The batch order depends on (seed, epoch) only and
every augmentation draw on (seed, epoch, sample index), so a run resumed from any checkpoint, even one written
mid-epoch on Ctrl-C, continues with the same batches, lr and optimizer state as if it had never stopped.

Run folder: ``last.pt`` (every epoch, and on Ctrl-C / SIGTERM), ``best.pt`` (best ``evaluation.select_metric``
on the val split, with ``eval_<val>.json`` and ``pr_<val>.png`` of that epoch), ``log_iterations.csv`` (one
row per ``output.log_interval`` iterations), ``log_epochs.csv``, ``curves.png``, and the configs used.
"""
from __future__ import annotations

import contextlib
import io
import math
import random
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader

from models.detector import Detector, build_detector
from models.targets import ImageTargets
from pipeline.errors import UserError
from pipeline.schema import to_dict
from training.batches import Batch
from training.checkpoint import (is_training_checkpoint, load_model_weights, read_checkpoint, restore_rng_states,
                                 rng_states, save_checkpoint)
from training.config import TrainConfig
from training.evaluate import (detector_candidates, metrics, pd_at_false_alarms, predict, score_split,
                               write_evaluation)
from training.logs import CsvLog, TrainingProgress, write_curves
from training.optim import LrSchedule, build_optimizer
from training.splits import collate_grey, evaluation_set, training_set


@dataclass
class TrainingResult:
    run_dir: Path
    iteration: int
    interrupted: bool
    best: dict[str, Any] | None


def resolve_device(name: str) -> torch.device:
    """'auto': cuda when torch sees a GPU, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("loop.device is 'cuda' but torch sees no CUDA GPU; use loop.device=auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def iterations_per_epoch(num_samples: int, batch_size: int, limit: int | None) -> int:
    """Full batches in an epoch (the last partial one is dropped), at most ``limit``."""
    return num_samples // batch_size if limit is None else min(num_samples // batch_size, limit)


def epoch_batches(num_samples: int, batch_size: int, seed: int, epoch: int, limit: int | None) -> list[list[int]]:
    """The sample indices of each iteration of ``epoch``: a permutation seeded by (seed, epoch), in full batches."""
    order = np.random.default_rng([seed, epoch]).permutation(num_samples)
    return [order[i * batch_size:(i + 1) * batch_size].tolist()
            for i in range(iterations_per_epoch(num_samples, batch_size, limit))]


def batch_targets(batch: Batch, device: torch.device) -> list[ImageTargets]:
    """Single-class targets ("Target" is class 0) with the sky masks when the batch has them."""
    return [ImageTargets(boxes.to(device), torch.zeros(len(boxes), dtype=torch.int64, device=device),
                         None if batch.sky_masks is None else batch.sky_masks[index].to(device))
            for index, boxes in enumerate(batch.boxes)]


def _ignore_interrupts(worker_id: int) -> None:
    """Data workers leave Ctrl-C to the main process, which stops cleanly and shuts them down."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class GracefulStop:
    """While active, the first SIGINT / SIGTERM only sets ``requested`` (the loop stops after the current
    iteration and saves a checkpoint); a second one interrupts at once. Outside the main thread it does nothing."""

    def __init__(self):
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> GracefulStop:
        with contextlib.suppress(ValueError):  # not the main thread
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class Trainer:
    """Builds the model, data, optimizer and schedule a TrainConfig describes; ``run()`` trains to the last epoch.
    ``resume`` continues a run exactly; ``init`` starts a new one from a model's weights (fine-tuning)."""

    def __init__(self, config: TrainConfig, resume: str | Path | None = None, stream=None,
                 init: str | Path | None = None):
        self.config, self.stream = config, stream or sys.stderr
        self.run_dir = config.run_dir()
        if resume is None and (self.run_dir / "last.pt").exists():
            raise UserError(f"run folder {self.run_dir} already holds a training run (last.pt): continue it with "
                            f"--resume {self.run_dir / 'last.pt'}, or start a new one with another name (--set "
                            "name=...) or output.dir")
        self.device = resolve_device(config.loop.device)
        seed_everything(config.loop.seed)
        self.model_config = config.model_config()
        self.model: Detector = build_detector(self.model_config)
        if init is not None:
            if resume is not None:
                raise UserError("--init starts a new run from a model's weights and --resume continues one: give one")
            load_model_weights(self.model, read_checkpoint(init), init, self.model.config.name)
        self.model.to(self.device)
        needs_masks = self.model.config.head.kind == "bafe" or config.data.copy_paste != "off"
        frames = self.model.config.input.previous_frames
        factor = self.model.config.input.resize_factor
        spacing = self.model.config.input.frame_spacing
        self.train_set = training_set(config.data, config.loop.seed, with_masks=needs_masks, previous_frames=frames,
                                      resize_factor=factor, frame_spacing=spacing)
        self.iters_per_epoch = iterations_per_epoch(len(self.train_set), config.loop.batch_size,
                                                    config.loop.max_iters_per_epoch)
        if self.iters_per_epoch == 0:
            raise UserError(f"data.train_split {config.data.train_split!r} gives {len(self.train_set)} samples per "
                            f"epoch, fewer than loop.batch_size ({config.loop.batch_size}): lower the batch size")
        self.val_set = (evaluation_set(config.data, config.data.val_split, previous_frames=frames,
                                       resize_factor=factor, frame_spacing=spacing)
                        if config.data.val_split else None)
        with contextlib.redirect_stdout(io.StringIO()):  # dadaptation prints a notice about decoupled decay
            self.optimizer = build_optimizer(self.model, config.optimizer)
        self.schedule = LrSchedule.from_config(config.schedule, config.optimizer.lr, self.iters_per_epoch)
        self.amp = config.loop.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.total_iters = config.schedule.epochs * self.iters_per_epoch
        self.iteration = 0
        self.best: dict[str, Any] | None = None
        self.epoch_sums: dict[str, float] = {}
        self._window: dict[str, float] = {}
        self._window_count, self._window_start = 0, time.monotonic()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.iteration_log = CsvLog(self.run_dir / "log_iterations.csv")
        self.epoch_log = CsvLog(self.run_dir / "log_epochs.csv")
        if resume is not None:
            self._resume(Path(resume))
        else:
            for log in (self.iteration_log, self.epoch_log):
                log.path.unlink(missing_ok=True)
        (self.run_dir / "train_config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
        (self.run_dir / "model_config.yaml").write_text(yaml.safe_dump(self.model_config, sort_keys=False))

    # ------------------------------------------------------------------------------------------------- the loop
    def run(self) -> TrainingResult:
        progress = TrainingProgress(self.total_iters, self.iteration, self.config.schedule.epochs, self.stream)
        with GracefulStop() as stop:
            while self.iteration < self.total_iters and not stop.requested:
                epoch = self.iteration // self.iters_per_epoch
                self._train_epoch(epoch, progress, stop)
                if self.iteration % self.iters_per_epoch == 0:
                    self._end_epoch(epoch, progress)
        self._log_window()
        interrupted = self.iteration < self.total_iters
        if interrupted:
            path = self._save("last.pt")
            progress.message(f"stopped at iteration {self.iteration}; resume with --resume {path}")
        return TrainingResult(self.run_dir, self.iteration, interrupted, self.best)

    def _train_epoch(self, epoch: int, progress: TrainingProgress, stop: GracefulStop) -> None:
        """The rest of ``epoch`` from the current iteration on, or up to a stop request."""
        self.train_set.set_epoch(epoch)
        batches = epoch_batches(len(self.train_set), self.config.loop.batch_size, self.config.loop.seed, epoch,
                                self.config.loop.max_iters_per_epoch)
        loader = DataLoader(self.train_set, batch_sampler=batches[self.iteration % self.iters_per_epoch:],
                            collate_fn=collate_grey, num_workers=self.config.loop.num_workers,
                            worker_init_fn=_ignore_interrupts)
        self.model.train()
        for batch in loader:
            values = self._step(batch)
            self.iteration += 1
            for key, value in values.items():
                self._window[key] = self._window.get(key, 0.0) + value
                self.epoch_sums[key] = self.epoch_sums.get(key, 0.0) + value
            self._window_count += 1
            progress.update(self.iteration, epoch, values["loss"])
            if self.iteration % self.config.output.log_interval == 0:
                self._log_window()
            if stop.requested:
                break

    def _step(self, batch: Batch) -> dict[str, float]:
        """One optimizer step at the scheduled lr; the loss terms as floats ('loss' is their sum)."""
        lr = self.schedule.apply(self.optimizer, self.iteration)
        images = batch.images.to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            terms = self.model.loss(self.model(self.model.normalize(images)),
                                    batch_targets(batch, self.device))
        total = sum(terms.values())
        *term_values, total_value = torch.stack([*terms.values(), total]).detach().float().tolist()  # one sync
        values = {f"loss_{key}": value for key, value in zip(terms, term_values)}
        if not math.isfinite(total_value):
            raise UserError(f"the training loss became {total_value} at iteration {self.iteration} ({values}); "
                            f"training diverged: resume from {self.run_dir / 'last.pt'} with a lower optimizer.lr")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return {"loss": total_value, **values, "lr": lr,
                "step_size": lr * self.optimizer.param_groups[0]["d"]}

    # ------------------------------------------------------------------------------------------- epoch ends
    def _end_epoch(self, epoch: int, progress: TrainingProgress) -> None:
        count = self.iters_per_epoch
        row: dict[str, Any] = {"epoch": epoch + 1, "iteration": self.iteration}
        row.update({key: value / count for key, value in self.epoch_sums.items()})
        self.epoch_sums = {}
        last_epoch = epoch + 1 == self.config.schedule.epochs
        if self.val_set is not None and ((epoch + 1) % self.config.evaluation.interval == 0 or last_epoch):
            row.update(self._validate(epoch))
        self.epoch_log.append(row)
        self._save("last.pt")
        write_curves(self.iteration_log.rows(), self.epoch_log.rows(), self.run_dir / "curves.png",
                     title=self.config.name)
        progress.message(f"epoch {epoch + 1}: loss {row['loss']:.4f}" + "".join(
            f"  {key} {value:.4f}" for key, value in row.items() if key.startswith("val_") and value is not None))

    def _validate(self, epoch: int) -> dict[str, float | None]:
        """Scores on the val split; a new best (by evaluation.select_metric) writes best.pt and its report."""
        settings = self.config.evaluation
        self.model.eval()
        detections = predict(detector_candidates(self.model), self.val_set, batch_size=self.config.loop.batch_size,
                             num_workers=self.config.loop.num_workers, device=self.device,
                             nms_iou=settings.nms_iou, max_detections=settings.max_detections)
        self.model.train()
        result = score_split(self.val_set, detections)
        scores = metrics(result, pd_at_false_alarms(self.val_set, detections, settings.false_alarms_per_image))
        value = scores[settings.select_metric]
        if value is not None and (self.best is None or value > self.best["value"]):
            self.best = {"metric": settings.select_metric, "value": value, "epoch": epoch + 1,
                         "iteration": self.iteration}
            self._save("best.pt")
            write_evaluation(result, scores, self.run_dir, self.config.data.val_split, self._report_info("best.pt"))
        return {f"val_{key}": value for key, value in scores.items()}

    def _log_window(self) -> None:
        """One row of log_iterations.csv: the means over the iterations since the last row (none: no row)."""
        if not self._window_count:
            return
        now = time.monotonic()
        epoch = (self.iteration - 1) // self.iters_per_epoch + 1
        self.iteration_log.append({"iteration": self.iteration, "epoch": epoch,
                                   **{key: value / self._window_count for key, value in self._window.items()},
                                   "iters_per_s": self._window_count / max(now - self._window_start, 1e-9)})
        self._window, self._window_count, self._window_start = {}, 0, now

    # ------------------------------------------------------------------------------------------ checkpoints
    def _report_info(self, checkpoint: str) -> dict[str, Any]:
        return {"model": self.model.config.name, "checkpoint": str(self.run_dir / checkpoint),
                "epoch": self.iteration // self.iters_per_epoch, "iteration": self.iteration,
                "input_size": self.config.data.input_size, "resize": self.config.data.resize,
                "false_alarms_per_image": self.config.evaluation.false_alarms_per_image}

    def _save(self, name: str) -> Path:
        return save_checkpoint(self.run_dir / name, {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iteration,
            "epoch": self.iteration // self.iters_per_epoch,
            "iters_per_epoch": self.iters_per_epoch,
            "best": self.best,
            "epoch_sums": self.epoch_sums,
            "rng": rng_states(),
            "model_config": self.model_config,
            "train_config": to_dict(self.config),
        })

    def _resume(self, path: Path) -> None:
        contents = read_checkpoint(path)
        if not is_training_checkpoint(contents):
            raise UserError(f"{path} holds model weights only; --resume needs a last.pt / best.pt written by "
                            "train.py train")
        load_model_weights(self.model, contents, path, self.model.config.name)
        if contents["iters_per_epoch"] != self.iters_per_epoch:
            raise UserError(f"checkpoint {path} was trained with {contents['iters_per_epoch']} iterations per epoch, "
                            f"this config gives {self.iters_per_epoch}: resume with the same data.train_split, "
                            "data.repeats, loop.batch_size and loop.max_iters_per_epoch")
        self.optimizer.load_state_dict(contents["optimizer"])
        self.scaler.load_state_dict(contents["scaler"])
        self.iteration, self.best, self.epoch_sums = contents["iteration"], contents["best"], contents["epoch_sums"]
        self.iteration_log.keep_rows_up_to("iteration", self.iteration)
        self.epoch_log.keep_rows_up_to("epoch", self.iteration // self.iters_per_epoch)
        restore_rng_states(contents["rng"])
