"""Association results, connected components of the gate graph, and global nearest neighbour (Hungarian).

An ``Association`` holds a weight per gated pair and per track a "not detected" weight, summing to 1 per
track. GNN (here) gives weights 0 or 1; JPDA (trackers/jpda.py) the probabilities that the detection is the
track's.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from trackers.gating import GatedPairs


@dataclass(frozen=True)
class Association:
    """pair_tracks, pair_detections int [M] (sorted by track), pair_weights [M]: the pairs that carry weight
    (GNN: the assigned ones; JPDA: all gated ones); miss_weights [T]: weight of "track not detected"."""

    pair_tracks: np.ndarray
    pair_detections: np.ndarray
    pair_weights: np.ndarray
    miss_weights: np.ndarray

    @property
    def detected(self) -> np.ndarray:
        """bool [T]: tracks more likely detected than not (a hit for the lifecycle)."""
        return self.miss_weights < 0.5

    def best_detection(self) -> np.ndarray:
        """int [T]: each track's most probable detection, -1 for tracks without one."""
        best = np.full(len(self.miss_weights), -1, np.intp)
        order = np.lexsort((self.pair_weights, self.pair_tracks))  # last per track = heaviest
        best[self.pair_tracks[order]] = self.pair_detections[order]
        return best

    def detection_usage(self, n_detections: int) -> np.ndarray:
        """float [N]: total weight with which tracks claim each detection (detections below 0.5 start tracks)."""
        return np.bincount(self.pair_detections, self.pair_weights, minlength=n_detections)


def gate_components(pairs: GatedPairs, n_tracks: int, n_detections: int) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the bipartite gate graph: (track labels [T], detection labels [N]).

    A label is the smallest node index of its component (tracks are nodes 0..T-1, detections T..T+N-1).
    Vectorised union-find: every edge hooks the larger of its two roots under the smaller, then pointer
    jumping makes every node point at its root again, until no edge joins two roots.
    """
    u, v = pairs.tracks, n_tracks + pairs.detections
    root = np.arange(n_tracks + n_detections)
    while True:
        root_u, root_v = root[u], root[v]
        joins = root_u != root_v
        if not joins.any():
            return root[:n_tracks], root[n_tracks:]
        np.minimum.at(root, np.maximum(root_u[joins], root_v[joins]), np.minimum(root_u[joins], root_v[joins]))
        while True:
            jumped = root[root]
            if np.array_equal(jumped, root):
                break
            root = jumped


def local_indices(labels: np.ndarray) -> np.ndarray:
    """Rank of each node among the nodes sharing its label (its row or column in its component's matrix)."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.flatnonzero(_group_starts(sorted_labels))
    local = np.empty(len(labels), np.intp)
    local[order] = np.arange(len(labels)) - np.repeat(starts, np.diff(np.r_[starts, len(labels)]))
    return local


def _dense_ids(labels: np.ndarray, n_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct labels in increasing order, each entry's index among them): np.unique(labels,
    return_inverse=True) for labels below n_labels, without sorting."""
    present = np.zeros(n_labels, bool)
    present[labels] = True
    return np.flatnonzero(present), (np.cumsum(present) - 1)[labels]


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """bool mask of the first element of each run of equal keys."""
    starts = np.ones(len(sorted_keys), bool)
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=starts[1:])
    return starts


def _cheapest_per_group(keys: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Index of the lowest cost among the entries of each key (one per distinct key)."""
    by_key_then_cost = np.lexsort((costs, keys))
    return by_key_then_cost[_group_starts(keys[by_key_then_cost])]


def assign_gnn(pairs: GatedPairs, n_tracks: int, n_detections: int) -> Association:
    """Global nearest neighbour: the most pairs possible, then the least total cost d^2 + ln|S|.

    Solved per connected component of the gate graph, cheapest first: where no two tracks of a component want
    the same detection, each track taking its cheapest one is optimal (every track matched, every cost minimal);
    a contested component with one detection gives it to its cheapest track; the rest (dense clusters) go to
    the Hungarian solver one by one.
    """
    cheapest = _cheapest_per_group(pairs.tracks, pairs.costs)
    contested = np.bincount(pairs.detections[cheapest], minlength=n_detections) > 1
    if not contested.any():
        return _hard_association(pairs, cheapest, n_tracks)
    track_labels, detection_labels = gate_components(pairs, n_tracks, n_detections)
    n_labels = n_tracks + n_detections
    is_contested = np.zeros(n_labels, bool)
    is_contested[detection_labels[contested]] = True
    chosen = [cheapest[~is_contested[track_labels[pairs.tracks[cheapest]]]]]

    in_contest = np.flatnonzero(is_contested[track_labels[pairs.tracks]])
    labels = track_labels[pairs.tracks[in_contest]]
    detections_per = np.bincount(detection_labels, minlength=n_labels)
    one_detection = detections_per[labels] == 1
    chosen.append(in_contest[one_detection][_cheapest_per_group(labels[one_detection],
                                                                 pairs.costs[in_contest[one_detection]])])
    members = in_contest[~one_detection]
    if len(members):
        chosen.append(_hungarian_per_component(pairs, members, track_labels, detection_labels, n_labels))
    return _hard_association(pairs, np.concatenate(chosen), n_tracks)


def _hungarian_per_component(pairs: GatedPairs, members: np.ndarray, track_labels: np.ndarray,
                             detection_labels: np.ndarray, n_labels: int) -> np.ndarray:
    """Indices of the pairs the Hungarian solver picks in each component that the pairs ``members`` make up.

    Every component's cost matrix is filled at once into one flat buffer, so the loop only slices and solves.
    """
    components, component_of = _dense_ids(track_labels[pairs.tracks[members]], n_labels)
    n_rows = np.bincount(track_labels, minlength=n_labels)[components]
    n_cols = np.bincount(detection_labels, minlength=n_labels)[components]
    sizes = n_rows * n_cols
    offsets = np.cumsum(sizes) - sizes
    flat = (offsets[component_of] + local_indices(track_labels)[pairs.tracks[members]] * n_cols[component_of]
            + local_indices(detection_labels)[pairs.detections[members]])
    costs = pairs.costs[members]
    # A non-gated entry costs more than any set of gated pairs, so the solver first maximises the number of
    # gated pairs; a row left with only non-gated entries gets one, dropped below.
    forbidden = 2.0 * np.minimum(n_rows, n_cols).max() * (np.abs(costs).max() + 1.0)
    matrices = np.full(sizes.sum(), forbidden)
    matrices[flat] = costs
    pair_at = np.full(sizes.sum(), -1, np.intp)
    pair_at[flat] = members
    picked = []
    for offset, rows, cols in zip(offsets.tolist(), n_rows.tolist(), n_cols.tolist()):
        solution_rows, solution_cols = linear_sum_assignment(matrices[offset:offset + rows * cols].reshape(rows, cols))
        picked.append(offset + solution_rows * cols + solution_cols)
    picked = pair_at[np.concatenate(picked)]
    return picked[picked >= 0]


def _hard_association(pairs: GatedPairs, chosen: np.ndarray, n_tracks: int) -> Association:
    miss_weights = np.ones(n_tracks)
    miss_weights[pairs.tracks[chosen]] = 0.0
    return Association(pairs.tracks[chosen], pairs.detections[chosen], np.ones(len(chosen)), miss_weights)
