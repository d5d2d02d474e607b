"""CLEAR-MOT (MOTA, MOTP), identity (IDF1) and HOTA for point targets matched by centre distance.

The numbers are those py-motmetrics (CLEAR-MOT, IDF1) and TrackEval (HOTA) compute when given a Euclidean
centre-distance matrix, so they compare with published results; neither package (nor pandas) is needed here.
Box IoU is never used: a 3x3 target moved by one pixel has IoU 0.29.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.evaluation.matching import box_centres, centre_distances, check_match_distance, gate, min_cost_matching
from pipeline.evaluation.motfile import as_mot_rows

# TrackEval's HOTA localisation thresholds, built with the same expression so float comparisons agree.
HOTA_ALPHAS = np.arange(0.05, 0.99, 0.05)
_EPS = np.finfo(float).eps


@dataclass(frozen=True)
class _Sequence:
    """gt and predictions split per frame, with ids renumbered 0..n-1 so per-id state lives in arrays.

    Within a frame, rows are in increasing id order (py-motmetrics and TrackEval depend on row order only
    to break exact ties).
    """

    frames: np.ndarray  # [F] frame numbers that have gt or predictions
    gt_ids: list[np.ndarray]  # per frame: dense gt ids [n_gt]
    pred_ids: list[np.ndarray]  # per frame: dense prediction ids [n_pred]
    distances: list[np.ndarray]  # per frame: centre distances [n_gt, n_pred] in pixels
    num_gt_ids: int
    num_pred_ids: int


def evaluate_tracking(gt: np.ndarray, pred: np.ndarray, match_distance_px: float = 5.0) -> dict[str, float | int]:
    """MOTA, MOTP, IDF1, IDP, IDR, HOTA, DetA, AssA, LocA and event counts for one sequence.

    gt, pred: [M, 6] rows frame (1-based), id, x, y, w, h as returned by ``read_mot_file``; targets are their
    box centres. A gt/prediction pair can match when its centre distance is <= ``match_distance_px``; HOTA uses
    the similarity max(0, 1 - d / match_distance_px), averaged over alpha = 0.05..0.95 as TrackEval does.
    MOTP is the mean centre distance (px) of matched pairs. Frames with neither gt nor predictions do not
    matter to any metric; ``num_frames`` counts those with either. Ratios whose denominator is zero (MOTA
    without gt, MOTP without matches) are NaN.
    """
    check_match_distance(match_distance_px)
    seq = _split_by_frame(as_mot_rows(gt, "gt"), as_mot_rows(pred, "pred"))
    num_gt = sum(len(ids) for ids in seq.gt_ids)
    num_pred = sum(len(ids) for ids in seq.pred_ids)
    return {
        **_clear_mot(seq, match_distance_px, num_gt),
        **_identity(seq, match_distance_px, num_gt, num_pred),
        **_hota(seq, match_distance_px, num_gt, num_pred),
        "num_gt": num_gt,
        "num_predictions": num_pred,
        "num_gt_ids": seq.num_gt_ids,
        "num_predicted_ids": seq.num_pred_ids,
        "num_frames": len(seq.frames),
        "match_distance_px": float(match_distance_px),
    }


def _split_by_frame(gt: np.ndarray, pred: np.ndarray) -> _Sequence:
    gt = gt[np.lexsort((gt[:, 1], gt[:, 0]))]
    pred = pred[np.lexsort((pred[:, 1], pred[:, 0]))]
    frames = np.union1d(gt[:, 0], pred[:, 0])
    gt_ids = np.unique(gt[:, 1], return_inverse=True)[1]
    pred_ids = np.unique(pred[:, 1], return_inverse=True)[1]
    gt_bounds = np.searchsorted(gt[:, 0], np.append(frames, np.inf))
    pred_bounds = np.searchsorted(pred[:, 0], np.append(frames, np.inf))
    gt_centres, pred_centres = box_centres(gt), box_centres(pred)
    gt_slices = [slice(a, b) for a, b in zip(gt_bounds[:-1], gt_bounds[1:])]
    pred_slices = [slice(a, b) for a, b in zip(pred_bounds[:-1], pred_bounds[1:])]
    return _Sequence(
        frames=frames,
        gt_ids=[gt_ids[s] for s in gt_slices],
        pred_ids=[pred_ids[s] for s in pred_slices],
        distances=[centre_distances(gt_centres[g], pred_centres[p]) for g, p in zip(gt_slices, pred_slices)],
        num_gt_ids=int(gt_ids.max(initial=-1)) + 1,
        num_pred_ids=int(pred_ids.max(initial=-1)) + 1,
    )


def _clear_mot(seq: _Sequence, match_distance_px: float, num_gt: int) -> dict[str, float | int]:
    """CLEAR-MOT events frame by frame, as py-motmetrics' MOTAccumulator.update generates them.

    Per frame: 1) a gt keeps the prediction it was last matched to (in any earlier frame) if that one is
    present and within D; 2) the rest are matched by Hungarian assignment on distance; a match to another
    prediction than the last one is a switch; 3) unmatched gt are misses, unmatched predictions false positives.
    """
    last_pred = np.full(seq.num_gt_ids, -1)  # prediction each gt was last matched to, -1 if never
    tracked = []  # per frame: bool [n_gt], gt matched (or switched) in that frame
    num_matches = num_switches = num_false_positives = 0
    distance_sum = 0.0
    for gt_ids, pred_ids, distances in zip(seq.gt_ids, seq.pred_ids, seq.distances):
        gated = gate(distances, match_distance_px)
        kept_rows, kept_cols = _kept_correspondences(last_pred[gt_ids], pred_ids, gated)
        rest = gated.copy()
        rest[kept_rows, :] = np.nan
        rest[:, kept_cols] = np.nan
        rows, cols = min_cost_matching(rest)
        previous = last_pred[gt_ids[rows]]
        switches = int(np.count_nonzero((previous >= 0) & (previous != pred_ids[cols])))
        last_pred[gt_ids[rows]] = pred_ids[cols]

        matched = np.zeros(len(gt_ids), bool)
        matched[kept_rows] = matched[rows] = True
        tracked.append(matched)
        num_switches += switches
        num_matches += len(kept_rows) + len(rows) - switches
        num_false_positives += len(pred_ids) - len(kept_rows) - len(rows)
        distance_sum += gated[kept_rows, kept_cols].sum() + gated[rows, cols].sum()

    num_misses = num_gt - num_matches - num_switches
    tracked_flags = np.concatenate(tracked) if tracked else np.zeros(0, bool)
    gt_ids = np.concatenate(seq.gt_ids) if seq.gt_ids else np.zeros(0, int)
    return {
        "MOTA": _ratio(num_misses + num_switches + num_false_positives, num_gt, complement=True),
        "MOTP": _ratio(distance_sum, num_matches + num_switches),
        "num_matches": num_matches,
        "num_switches": num_switches,
        "num_false_positives": num_false_positives,
        "num_misses": num_misses,
        "num_fragmentations": _fragmentations(gt_ids, tracked_flags),
        **_track_coverage(gt_ids, tracked_flags, seq.num_gt_ids),
    }


def _kept_correspondences(last_pred: np.ndarray, pred_ids: np.ndarray, gated: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of gt whose last matched prediction is in this frame and still within D.

    When two gt last matched the same prediction, the first gt in id order keeps it (motmetrics' loop order).
    """
    if len(pred_ids) == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    cols = np.minimum(np.searchsorted(pred_ids, last_pred), len(pred_ids) - 1)
    rows = np.flatnonzero((last_pred >= 0) & (pred_ids[cols] == last_pred))
    rows = rows[np.isfinite(gated[rows, cols[rows]])]
    _, first = np.unique(cols[rows], return_index=True)
    rows = np.sort(rows[first])
    return rows, cols[rows]


def _fragmentations(gt_ids: np.ndarray, tracked: np.ndarray) -> int:
    """Times a gt goes from tracked to untracked and is tracked again later (motmetrics' num_fragmentations)."""
    order = np.argsort(gt_ids, kind="stable")  # rows were in frame order: now per gt, in frame order
    ids, flags = gt_ids[order], tracked[order]
    position = np.arange(len(ids))
    last_tracked = np.full(int(ids.max(initial=-1)) + 1, -1)
    np.maximum.at(last_tracked, ids[flags], position[flags])
    lost = (ids[1:] == ids[:-1]) & flags[:-1] & ~flags[1:] & (position[1:] < last_tracked[ids[1:]])
    return int(np.count_nonzero(lost))


def _track_coverage(gt_ids: np.ndarray, tracked: np.ndarray, num_gt_ids: int) -> dict[str, int]:
    """Gt tracked in >= 80 % of their frames (mostly tracked), 20-80 % (partially), < 20 % (mostly lost)."""
    ratio = np.bincount(gt_ids, tracked, num_gt_ids) / np.maximum(np.bincount(gt_ids, minlength=num_gt_ids), 1)
    return {
        "mostly_tracked": int(np.count_nonzero(ratio >= 0.8)),
        "partially_tracked": int(np.count_nonzero((ratio >= 0.2) & (ratio < 0.8))),
        "mostly_lost": int(np.count_nonzero(ratio < 0.2)),
    }


def _identity(seq: _Sequence, match_distance_px: float, num_gt: int, num_pred: int) -> dict[str, float]:
    """IDF1, IDP, IDR: the one-to-one pairing of gt and predicted trajectories that maximises the number of
    frames in which the pair is within D (IDTP), as motmetrics' global min-cost assignment finds it."""
    together = np.zeros((seq.num_gt_ids, seq.num_pred_ids))
    for gt_ids, pred_ids, distances in zip(seq.gt_ids, seq.pred_ids, seq.distances):
        rows, cols = np.nonzero(distances <= match_distance_px)
        together[gt_ids[rows], pred_ids[cols]] += 1  # ids are unique per frame: no repeated index
    rows, cols = linear_sum_assignment(together, maximize=True)
    id_true_positives = together[rows, cols].sum()
    return {
        "IDF1": _ratio(2 * id_true_positives, num_gt + num_pred),
        "IDP": _ratio(id_true_positives, num_pred),
        "IDR": _ratio(id_true_positives, num_gt),
    }


def _hota(seq: _Sequence, match_distance_px: float, num_gt: int, num_pred: int) -> dict[str, float]:
    """HOTA, DetA, AssA, LocA averaged over HOTA_ALPHAS, computed as TrackEval's HOTA.eval_sequence does."""
    if num_gt == 0 or num_pred == 0:
        # TrackEval: no matches, so DetA = AssA = HOTA = 0 and LocA = 1 at every alpha.
        return {"HOTA": 0.0, "DetA": 0.0, "AssA": 0.0, "LocA": 1.0}
    similarities = [np.maximum(0.0, 1.0 - d / match_distance_px) for d in seq.distances]
    gt_count = np.bincount(np.concatenate(seq.gt_ids), minlength=seq.num_gt_ids).astype(float)
    pred_count = np.bincount(np.concatenate(seq.pred_ids), minlength=seq.num_pred_ids).astype(float)

    # Global alignment between ids: how often they overlap, each frame's similarity normalised like an IoU.
    potential = np.zeros((seq.num_gt_ids, seq.num_pred_ids))
    for gt_ids, pred_ids, sim in zip(seq.gt_ids, seq.pred_ids, similarities):
        denominator = sim.sum(0)[None, :] + sim.sum(1)[:, None] - sim
        normalised = np.zeros_like(sim)
        positive = denominator > _EPS
        normalised[positive] = sim[positive] / denominator[positive]
        potential[gt_ids[:, None], pred_ids[None, :]] += normalised
    alignment = potential / (gt_count[:, None] + pred_count[None, :] - potential)

    # Per frame: Hungarian on alignment x similarity, then keep pairs by similarity threshold per alpha.
    matched_gt, matched_pred, matched_sim = [np.zeros(0, int)], [np.zeros(0, int)], [np.zeros(0)]
    for gt_ids, pred_ids, sim in zip(seq.gt_ids, seq.pred_ids, similarities):
        if sim.size == 0:
            continue
        rows, cols = linear_sum_assignment(-(alignment[gt_ids[:, None], pred_ids[None, :]] * sim))
        keep = sim[rows, cols] >= HOTA_ALPHAS[0] - _EPS
        matched_gt.append(gt_ids[rows[keep]])
        matched_pred.append(pred_ids[cols[keep]])
        matched_sim.append(sim[rows[keep], cols[keep]])
    matched_sim = np.concatenate(matched_sim)
    pairs, pair_index = np.unique(
        np.concatenate(matched_gt) * seq.num_pred_ids + np.concatenate(matched_pred), return_inverse=True)
    pair_gt, pair_pred = np.divmod(pairs, seq.num_pred_ids)

    is_match = matched_sim[None, :] >= HOTA_ALPHAS[:, None] - _EPS  # [alphas, matches]
    true_positives = is_match.sum(1).astype(float)
    pair_matches = np.stack([np.bincount(pair_index, m, len(pairs)) for m in is_match])  # [alphas, pairs]
    pair_union = np.maximum(1.0, gt_count[pair_gt] + pred_count[pair_pred] - pair_matches)
    det_a = true_positives / np.maximum(1.0, num_gt + num_pred - true_positives)
    ass_a = (pair_matches ** 2 / pair_union).sum(1) / np.maximum(1.0, true_positives)
    loc_a = np.maximum(1e-10, (is_match * matched_sim).sum(1)) / np.maximum(1e-10, true_positives)
    return {
        "HOTA": float(np.mean(np.sqrt(det_a * ass_a))),
        "DetA": float(np.mean(det_a)),
        "AssA": float(np.mean(ass_a)),
        "LocA": float(np.mean(loc_a)),
    }


def _ratio(numerator: float, denominator: float, complement: bool = False) -> float:
    """numerator / denominator (1 minus it if ``complement``), NaN when the denominator is zero."""
    if denominator == 0:
        return float("nan")
    value = numerator / denominator
    return float(1.0 - value if complement else value)
