"""The point-target tracker: batched Kalman filter, Mahalanobis gating, GNN or JPDA, M-of-N lifecycle."""
from __future__ import annotations

import numpy as np

from pipeline.errors import UserError
from pipeline.types import Detections, Tracks
from trackers import initiation, kalman
from trackers.association import Association, assign_gnn
from trackers.camera_motion import PhaseCorrelationMotion
from trackers.config import TrackerConfig
from trackers.gating import GatedPairs, gate_threshold, mahalanobis_gate
from trackers.jpda import jpda_marginals
from trackers.measurements import Measurements, check_shapes, to_measurements
from trackers.motion import MotionModel
from trackers.track_table import Lifecycle, TrackTable


class PointTargetTracker:
    """Multi-target tracker for small point-like targets of one stream (implements trackers.base.Tracker).

    Each frame: predict all tracks -> gate (track, detection) pairs by Mahalanobis distance -> associate
    (GNN or JPDA) -> Kalman-update the tracks that got detections -> lifecycle (confirm, coast, delete,
    start tracks from unused detections). Counters for callers: ``dropped_detections`` (invalid rows dropped
    so far) and ``camera_shift`` (the last applied global shift, px).
    """

    def __init__(self, config: TrackerConfig | None = None, stream_id: str = "stream"):
        self.config = config = config or TrackerConfig()
        self.stream_id = stream_id
        self.motion = MotionModel.named(config.motion, config.process_noise)
        self.lifecycle = Lifecycle(config.confirm_hits, config.confirm_window, config.max_misses)
        self.gate = gate_threshold(config.gate_probability)
        self.camera = (PhaseCorrelationMotion(config.camera_motion_downscale, config.camera_motion_min_response)
                       if config.camera_motion else None)
        self.tracks = TrackTable.empty(self.motion.state_dims)
        self.next_id = 1
        self.frame_index: int | None = None
        self.dropped_detections = 0
        self.camera_shift = np.zeros(2)

    def update(self, frame_index: int, detections: Detections, image: np.ndarray | None = None) -> Tracks:
        measurements = self._measurements(detections)
        dt = self._advance_to(frame_index)
        self._predict(dt, image)
        pairs = self._gate(measurements)
        association = self._associate(pairs, len(measurements))
        self._update(association, measurements, frame_index)
        self._manage_lifecycle(association, measurements, frame_index)
        return self.lifecycle.report(self.tracks)

    def _advance_to(self, frame_index: int) -> int:
        """Frames elapsed since the last update (1 for the first); frames must come strictly in order."""
        previous = self.frame_index
        if previous is not None and frame_index <= previous:
            raise UserError(f"stream '{self.stream_id}': frame index {frame_index} does not come after {previous}; "
                            "a tracker takes each stream's frames in increasing order (use a new tracker to "
                            "restart a stream)")
        self.frame_index = int(frame_index)
        return 1 if previous is None else self.frame_index - previous

    def _measurements(self, detections: Detections) -> Measurements:
        check_shapes(detections, self.stream_id)
        measurements, dropped = to_measurements(detections, self.config.measurement_noise_px,
                                                self.config.measurement_noise_size_fraction)
        self.dropped_detections += dropped
        return measurements

    def _predict(self, dt: int, image: np.ndarray | None) -> None:
        if self.camera is not None:
            if image is None:
                raise UserError(f"stream '{self.stream_id}': tracker.camera_motion is on but no frame image was "
                                "given to the tracker; pass the image or turn tracker.camera_motion off")
            self.camera_shift = self.camera.estimate(image)
        F, Q = self.motion.matrices(dt)
        self.tracks.x, self.tracks.P = kalman.predict(self.tracks.x, self.tracks.P, F, Q,
                                                      self.camera_shift if self.camera is not None else None)

    def _gate(self, measurements: Measurements) -> GatedPairs:
        return mahalanobis_gate(self.tracks.x[:, :2], self.tracks.P[:, :2, :2], measurements.positions,
                                measurements.covariances, self.gate)

    def _associate(self, pairs: GatedPairs, n_detections: int) -> Association:
        if self.config.kind == "jpda":
            return jpda_marginals(pairs, len(self.tracks), n_detections, self.config.detection_probability,
                                  self.config.gate_probability, self.config.clutter_density)
        return assign_gnn(pairs, len(self.tracks), n_detections)

    def _update(self, association: Association, measurements: Measurements, frame_index: int) -> None:
        """Tracks on their second hit start over from two points; the others get the Kalman update (GNN) or the
        merge of their association hypotheses (JPDA). Detected tracks take their detection's box size."""
        best = association.best_detection()
        one_hit = self.tracks.hits == 1
        self._start_from_two_points(np.flatnonzero(association.detected & one_hit), best, measurements, frame_index)
        self._filter(association, measurements, ~one_hit)
        detected = np.flatnonzero(association.detected)
        self.tracks.sizes[detected] = measurements.sizes.take(best[detected], axis=0)

    def _start_from_two_points(self, rows: np.ndarray, best: np.ndarray, measurements: Measurements,
                               frame_index: int) -> None:
        """Tracks ``rows`` restart at their detection ``best[rows]`` with the velocity from their first one."""
        tracks, detections = self.tracks, best[rows]
        if len(rows):
            tracks.x[rows], tracks.P[rows] = initiation.two_point_states(
                tracks.x.take(rows, axis=0)[:, :2], tracks.first_covariances.take(rows, axis=0),
                measurements.positions.take(detections, axis=0), measurements.covariances.take(detections, axis=0),
                frame_index - tracks.first_frames[rows],
                self.motion.state_dims, self.config.initial_acceleration_std ** 2)

    def _filter(self, association: Association, measurements: Measurements, eligible: np.ndarray) -> None:
        """Measurement update of the ``eligible`` [T] tracks: each of their pairs updated (batched), then GNN
        keeps the one pair a track has and JPDA merges all of them with the "not detected" prior."""
        tracks = self.tracks
        in_pairs = eligible[association.pair_tracks]
        rows, cols = association.pair_tracks[in_pairs], association.pair_detections[in_pairs]
        # take() rather than x[rows]: several times faster for rows of multi-dimensional arrays
        x_pairs, P_pairs = kalman.update(tracks.x.take(rows, axis=0), tracks.P.take(rows, axis=0),
                                         measurements.positions.take(cols, axis=0),
                                         measurements.covariances.take(cols, axis=0))
        if self.config.kind == "gnn":
            tracks.x[rows], tracks.P[rows] = x_pairs, P_pairs
            return
        merged = np.flatnonzero(eligible)
        tracks.x[merged], tracks.P[merged] = kalman.merge_hypotheses(
            tracks.x.take(merged, axis=0), tracks.P.take(merged, axis=0), association.miss_weights[merged],
            np.cumsum(eligible)[rows] - 1, association.pair_weights[in_pairs], x_pairs, P_pairs)

    def _manage_lifecycle(self, association: Association, measurements: Measurements, frame_index: int) -> None:
        """Count hits and misses, confirm, delete, then start tentative tracks from detections no track claimed."""
        self.tracks.record(association.detected)
        alive = self.lifecycle.alive(self.tracks)
        if not alive.all():
            self.tracks.keep(alive)
        unused = np.flatnonzero(association.detection_usage(len(measurements)) < 0.5)
        if len(unused):
            z, R = measurements.positions.take(unused, axis=0), measurements.covariances.take(unused, axis=0)
            x, P = initiation.one_point_states(z, R, self.motion.state_dims, self.config.initial_velocity_std ** 2,
                                               self.config.initial_acceleration_std ** 2)
            ids = np.arange(self.next_id, self.next_id + len(unused))
            self.next_id += len(unused)
            self.tracks.extend(TrackTable.born(ids, x, P, frame_index, R, measurements.sizes.take(unused, axis=0)))
