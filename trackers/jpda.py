"""JPDA association probabilities: exact for each cluster of the gate graph, belief propagation for huge ones.

A joint event matches some tracks to distinct detections in their gates; its weight is the product over its
pairs of psi = P_D N(y; 0, S) / (lambda (1 - P_D P_G)) (Poisson clutter of density lambda, a missed track and
a clutter detection both weigh 1 after this normalisation). The marginal probability of a pair is the summed
weight of the events containing it over the summed weight Z of all events.
"""
from __future__ import annotations

import numpy as np

from trackers.association import Association, gate_components, local_indices
from trackers.gating import GatedPairs

# Exact marginals walk all subsets of the smaller side of a cluster: up to 2^8 states per cluster.
EXACT_MAX_SHORT_SIDE = 8
# Belief propagation stops when no message changes by more than this (messages lie in (0, 1]).
BP_TOLERANCE = 1e-7
BP_MAX_ITERATIONS = 100


def pair_weights(pairs: GatedPairs, detection_probability: float, gate_probability: float,
                 clutter_density: float) -> np.ndarray:
    """psi [M]: each pair's likelihood ratio against "track missed, detection is clutter"."""
    likelihood = np.exp(-0.5 * pairs.costs) / (2.0 * np.pi)  # costs = d^2 + ln|S|
    return detection_probability * likelihood / (clutter_density * (1.0 - detection_probability * gate_probability))


def jpda_marginals(pairs: GatedPairs, n_tracks: int, n_detections: int, detection_probability: float,
                   gate_probability: float, clutter_density: float) -> Association:
    """Association probabilities of every gated pair (pairs sorted by track, as mahalanobis_gate gives them).

    Clusters (connected components of the gate graph) are independent. Each one with at most
    EXACT_MAX_SHORT_SIDE tracks or detections is solved exactly (``exact_marginals``), all of them at once per
    size; larger ones use belief propagation (``belief_propagation_marginals``), exact where the cluster is a
    tree and an approximation otherwise.
    """
    psi = pair_weights(pairs, detection_probability, gate_probability, clutter_density)
    track_labels, detection_labels = gate_components(pairs, n_tracks, n_detections)
    n_labels = n_tracks + n_detections
    tracks_per = np.bincount(track_labels, minlength=n_labels)
    detections_per = np.bincount(detection_labels, minlength=n_labels)
    labels = track_labels[pairs.tracks]
    short_side = np.minimum(tracks_per, detections_per)[labels]
    weights = np.empty(len(pairs))

    large = np.flatnonzero(short_side > EXACT_MAX_SHORT_SIDE)
    weights[large] = belief_propagation_marginals(pairs.tracks[large], pairs.detections[large], psi[large],
                                                  n_tracks, n_detections)
    # A pair's row and column in its cluster's matrix, which has the longer side (tracks or detections) as rows.
    local_track = local_indices(track_labels)[pairs.tracks]
    local_detection = local_indices(detection_labels)[pairs.detections]
    tracks_long = tracks_per[labels] > detections_per[labels]
    rows = np.where(tracks_long, local_track, local_detection)
    cols = np.where(tracks_long, local_detection, local_track)
    for size in np.unique(short_side[short_side <= EXACT_MAX_SHORT_SIDE]):
        members = np.flatnonzero(short_side == size)
        clusters, cluster_of = np.unique(labels[members], return_inverse=True)
        matrices = np.zeros((len(clusters), rows[members].max() + 1, size))
        matrices[cluster_of, rows[members], cols[members]] = psi[members]
        weights[members] = exact_marginals(matrices)[cluster_of, rows[members], cols[members]]
    miss_weights = np.clip(1.0 - np.bincount(pairs.tracks, weights, minlength=n_tracks), 0.0, 1.0)
    return Association(pairs.tracks, pairs.detections, weights, miss_weights)


def exact_marginals(psi: np.ndarray) -> np.ndarray:
    """Exact pair marginals [C, m, n] of C clusters given psi [C, m, n] (0 where a pair is not gated), n <= m.

    Forward pass over the m rows, with the set of columns already matched as the state (2^n of them):
    f_{k+1}(U) = f_k(U) + sum_{j in U} psi[k, j] f_k(U - {j}), from f_0 = [U empty]; then Z = sum_U f_m(U).
    A pair's marginal is psi d(ln Z)/d(psi), and the backward pass is exactly the adjoint of the forward one,
    so all marginals cost about two forward passes. Zero-padded rows or clusters change nothing.
    """
    n_clusters, m, n = psi.shape
    subsets = np.arange(1 << n)
    column_bits = 1 << np.arange(n)
    contains = (subsets[None, :] & column_bits[:, None]) != 0  # [n, 2^n]: column j is in subset U
    toggled = subsets[None, :] ^ column_bits[:, None]           # U - {j} where j is in U, else U + {j}
    f = np.zeros((n_clusters, 1 << n))
    f[:, 0] = 1.0
    without = []  # without[k][c, j, U] = f_k(U - {j}) where j is in U, else 0
    for k in range(m):
        without.append(np.where(contains, f[:, toggled], 0.0))
        f = f + (psi[:, k, None, :] @ without[k])[:, 0]
    Z = f.sum(axis=1)
    adjoint = np.ones_like(f)  # dZ/df_k, from k = m down
    gradient = np.empty_like(psi)
    for k in reversed(range(m)):
        gradient[:, k] = (without[k] @ adjoint[:, :, None])[:, :, 0]
        adjoint = adjoint + (psi[:, k, None, :] @ np.where(contains, 0.0, adjoint[:, toggled]))[:, 0]
    return psi * gradient / Z[:, None, None]


def belief_propagation_marginals(tracks: np.ndarray, detections: np.ndarray, psi: np.ndarray, n_tracks: int,
                                 n_detections: int) -> np.ndarray:
    """Approximate pair marginals [M] by loopy belief propagation (Williams & Lau, "Approximate evaluation of
    marginal association probabilities with belief propagation", IEEE TAES 2014): exact on trees, converges.

    Messages per pair: mu (track -> detection) and nu (detection -> track).
    """
    nu = np.ones(len(psi))
    for _ in range(BP_MAX_ITERATIONS):
        evidence = psi * nu
        mu = psi / (1.0 + np.bincount(tracks, evidence, minlength=n_tracks)[tracks] - evidence)
        new_nu = 1.0 / (1.0 + np.bincount(detections, mu, minlength=n_detections)[detections] - mu)
        converged = np.abs(new_nu - nu).max(initial=0.0) < BP_TOLERANCE
        nu = new_nu
        if converged:
            break
    evidence = psi * nu
    return evidence / (1.0 + np.bincount(tracks, evidence, minlength=n_tracks)[tracks])
