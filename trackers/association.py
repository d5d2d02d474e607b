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

# Contested components are solved in blocks of about this many tracks (see _contest_blocks).
BLOCK_MAX_TRACKS = 48


@dataclass(frozen=True)
class Association:
    """pair_tracks, pair_detections int [M] (sorted by track), pair_weights [M]: the pairs that carry weight
    (GNN: the assigned ones; JPDA: all gated ones); miss_weights [T]: weight of "track not detected";
    hard: every track has at most one pair, of weight 1 (GNN)."""

    pair_tracks: np.ndarray
    pair_detections: np.ndarray
    pair_weights: np.ndarray
    miss_weights: np.ndarray
    hard: bool = False

    @property
    def detected(self) -> np.ndarray:
        """bool [T]: tracks more likely detected than not (a hit for the lifecycle)."""
        return self.miss_weights < 0.5

    def best_detection(self) -> np.ndarray:
        """int [T]: each track's most probable detection, -1 for tracks without one."""
        best = np.full(len(self.miss_weights), -1, np.intp)
        if self.hard:
            best[self.pair_tracks] = self.pair_detections
            return best
        order = np.lexsort((self.pair_weights, self.pair_tracks))  # last per track = heaviest
        best[self.pair_tracks[order]] = self.pair_detections[order]
        return best

    def detection_usage(self, n_detections: int) -> np.ndarray:
        """float [N]: total weight with which tracks claim each detection (detections below 0.5 start tracks)."""
        return np.bincount(self.pair_detections, self.pair_weights, minlength=n_detections)


def gate_components(pairs: GatedPairs, n_tracks: int, n_detections: int) -> tuple[np.ndarray, np.ndarray]:
    """Connected components of the bipartite gate graph: (track labels [T], detection labels [N]).

    A label is the smallest node index of its component (tracks are nodes 0..T-1, detections T..T+N-1).
    Vectorised union-find: every edge hooks the larger of its two roots under the smaller (an edge inside one
    root hooks it under itself: no change), then pointer jumping makes every node point at its root again,
    until no edge joins two roots. Two jumps come unchecked: a round of hooks rarely needs fewer.
    """
    u, v = pairs.tracks, n_tracks + pairs.detections
    root = np.arange(n_tracks + n_detections)
    while True:
        root_u, root_v = root[u], root[v]
        if (root_u == root_v).all():
            return root[:n_tracks], root[n_tracks:]
        np.minimum.at(root, np.maximum(root_u, root_v), np.minimum(root_u, root_v))
        root = root[root]
        root = root[root]
        while True:
            jumped = root[root]
            if (jumped == root).all():
                break
            root = jumped


def local_indices(labels: np.ndarray) -> np.ndarray:
    """Rank of each node among the nodes sharing its label (its row or column in its component's matrix)."""
    order = np.argsort(labels, kind="stable")
    position = np.arange(len(labels))
    run_start = np.maximum.accumulate(np.where(_group_starts(labels[order]), position, 0))
    local = np.empty(len(labels), np.intp)
    local[order] = position - run_start
    return local


def _group_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """bool mask of the first element of each run of equal keys."""
    starts = np.ones(len(sorted_keys), bool)
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=starts[1:])
    return starts


def _cheapest_per_track(pairs: GatedPairs) -> np.ndarray:
    """Index of each track's cheapest pair (the first of equal ones), for tracks with pairs (sorted by track).

    A minimum per run of equal tracks, then the first pair at it: no sort, which costs more on fresh data.
    """
    starts = _group_starts(pairs.tracks)
    run = np.cumsum(starts) - 1
    lowest = np.minimum.reduceat(pairs.costs, np.flatnonzero(starts))
    at_lowest = np.flatnonzero(pairs.costs == lowest[run])
    return at_lowest[_group_starts(run[at_lowest])]


def assign_gnn(pairs: GatedPairs, n_tracks: int, n_detections: int) -> Association:
    """Global nearest neighbour: the most pairs possible, then the least total cost d^2 + ln|S|.

    Components of the gate graph are independent. Where no two tracks of a component want the same
    detection, each track taking its cheapest one is optimal (every track matched, every cost minimal); the
    components with a contest (dense clusters) go to the Hungarian solver, several small ones at a time
    (``_contest_blocks``).
    """
    cheapest = _cheapest_per_track(pairs)
    contested = np.bincount(pairs.detections[cheapest], minlength=n_detections) > 1
    if not contested.any():
        return _hard_association(pairs, cheapest, n_tracks)
    track_labels, detection_labels = gate_components(pairs, n_tracks, n_detections)
    n_labels = n_tracks + n_detections
    in_contest = np.zeros(n_labels, bool)
    in_contest[detection_labels[contested]] = True
    pair_in_contest = in_contest[track_labels[pairs.tracks]]
    block_of_label, n_blocks = _contest_blocks(np.flatnonzero(in_contest),
                                               np.bincount(track_labels, minlength=n_labels), n_labels)
    picked = _hungarian_per_block(pairs, np.flatnonzero(pair_in_contest), block_of_label[track_labels],
                                  block_of_label[detection_labels], n_blocks)
    return _hard_association(pairs, np.concatenate([cheapest[~pair_in_contest[cheapest]], picked]), n_tracks)


def _contest_blocks(labels: np.ndarray, tracks_per_label: np.ndarray, n_labels: int) -> tuple[np.ndarray, int]:
    """(block of each label [n_labels], number of blocks): the contested components ``labels`` grouped into
    blocks of about BLOCK_MAX_TRACKS tracks, a larger component alone; other labels get block n_blocks.

    One Hungarian call on a block-diagonal matrix costs about what one call per component costs in the solver,
    without a Python round trip per component; the solver is cubic, so blocks stay small.
    """
    sizes = tracks_per_label[labels]
    large = sizes > BLOCK_MAX_TRACKS
    n_large = int(np.count_nonzero(large))
    small_sizes = sizes[~large]
    blocks = np.empty(len(labels), np.intp)
    blocks[large] = np.arange(n_large)
    blocks[~large] = n_large + (np.cumsum(small_sizes) - small_sizes) // BLOCK_MAX_TRACKS
    n_blocks = int(blocks.max()) + 1
    block_of_label = np.full(n_labels, n_blocks, np.intp)
    block_of_label[labels] = blocks
    return block_of_label, n_blocks


def _hungarian_per_block(pairs: GatedPairs, members: np.ndarray, track_blocks: np.ndarray,
                         detection_blocks: np.ndarray, n_blocks: int) -> np.ndarray:
    """Indices of the pairs the Hungarian solver picks among the pairs ``members``, one solve per block
    (blocks 0 .. n_blocks-1 of every track and detection; n_blocks marks nodes outside all blocks).

    Every block's cost matrix is filled at once into one flat buffer, so the loop only slices and solves.
    """
    n_rows = np.bincount(track_blocks, minlength=n_blocks)[:n_blocks]
    n_cols = np.bincount(detection_blocks, minlength=n_blocks)[:n_blocks]
    sizes = n_rows * n_cols
    offsets = np.cumsum(sizes) - sizes
    tracks, detections = pairs.tracks[members], pairs.detections[members]
    block = track_blocks[tracks]
    flat = (offsets[block] + _local_indices_in_blocks(track_blocks, n_blocks)[tracks] * n_cols[block]
            + _local_indices_in_blocks(detection_blocks, n_blocks)[detections])
    costs = pairs.costs[members]
    # A non-gated entry costs more than any set of gated pairs, so the solver first maximises the number of
    # gated pairs; a row left with only non-gated entries gets one, dropped below. Components sharing a block
    # never trade pairs: a pair across two of them is non-gated.
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


def _local_indices_in_blocks(blocks: np.ndarray, n_blocks: int) -> np.ndarray:
    """Each node's row (or column) in its block's matrix; only nodes in blocks (``blocks`` < n_blocks) are set."""
    in_block = np.flatnonzero(blocks < n_blocks)
    local = np.empty(len(blocks), np.intp)
    local[in_block] = local_indices(blocks[in_block])
    return local


def _hard_association(pairs: GatedPairs, chosen: np.ndarray, n_tracks: int) -> Association:
    """The association of the pairs ``chosen`` (indices into ``pairs``, at most one per track)."""
    chosen = np.sort(chosen)  # pairs are sorted by track, so the chosen ones are too
    tracks = pairs.tracks[chosen]
    miss_weights = np.ones(n_tracks)
    miss_weights[tracks] = 0.0
    return Association(tracks, pairs.detections[chosen], np.ones(len(chosen)), miss_weights, hard=True)
