"""Questions grouped by what they ask: a leader clustering of their embedding vectors.

The gaps report (:mod:`shared.qa.gaps_report`) groups the questions the docs did not answer with
:func:`group_vectors`, over the vectors stored with each answer (:mod:`shared.qa.answer_log`).

A leader clustering with centroids, made insensitive to the order rows arrive in by seeding: the first
pass over a sample (at most :data:`SEED_SAMPLE` rows) finds groups; the sample is then clustered again in
the order "largest group first, its most central row first", and those centroids seed one blocked pass
over every row (a block of rows is compared with all centroids in one matrix product; a row close to
none starts a group, up to :data:`MAX_GROUPS`). When every row was in the sample, a last pass moves each
row to its nearest final centroid. Cost: one product of (rows x groups x 384) beyond the sample's;
memory: the float16 vectors plus one block of similarities. ``tests/test_gaps.py`` measures purity and
group count on a labelled fixture; ``bench/gaps.py`` the time and memory at 100,000 rows.
"""

from __future__ import annotations

import re

import numpy as np

SEED_SAMPLE = 4096  # rows clustered twice to seed the full pass
MAX_GROUPS = 2000  # beyond this many groups, a row close to none stays on its own ("ungrouped")
BLOCK = 4096  # rows compared with the centroids in one matrix product
_SPACES = re.compile(r"\s+")


def _add_rows(sums: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> None:
    """``sums[labels[i]] += rows[i]`` for every i (``np.add.at``, but one sort and one ``reduceat``)."""
    if not len(labels):
        return
    order = np.argsort(labels, kind="stable")
    ordered = labels[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sums[ordered[starts]] += np.add.reduceat(rows[order], starts, axis=0)


def _normalized(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    unit: np.ndarray = rows / np.maximum(norms, 1e-12)
    return unit


class _Leader:
    """Centroids of groups built row by row: a row joins the most similar centroid if its cosine is at
    least ``threshold``, else starts a group (while there is room)."""

    def __init__(self, dim: int, threshold: float, max_groups: int, seeds: np.ndarray | None = None) -> None:
        self.threshold = threshold
        self.max_groups = max_groups
        self.sums = np.zeros((max_groups, dim), dtype=np.float32)
        self.unit = np.zeros((max_groups, dim), dtype=np.float32)
        self.k = 0
        if seeds is not None and len(seeds):
            self.k = min(len(seeds), max_groups)
            self.unit[: self.k] = _normalized(seeds[: self.k].astype(np.float32))

    def run(self, vectors: np.ndarray, order: np.ndarray, weights: np.ndarray, block: int) -> np.ndarray:
        labels = np.full(len(vectors), -1, dtype=np.int64)
        for start in range(0, len(order), block):
            idx = order[start : start + block]
            rows = vectors[idx].astype(np.float32)
            w = weights[idx]
            matched = np.zeros(len(idx), dtype=bool)
            if self.k:
                sims = rows @ self.unit[: self.k].T
                best = sims.argmax(axis=1)
                matched = sims[np.arange(len(idx)), best] >= self.threshold
                labels[idx[matched]] = best[matched]
                _add_rows(self.sums, best[matched], rows[matched] * w[matched, None])
                touched = np.unique(best[matched])
            else:
                touched = np.empty(0, dtype=np.int64)
            first_new = self.k
            for i in np.flatnonzero(~matched):
                labels[idx[i]] = self._place(rows[i], float(w[i]), first_new)
            changed = np.union1d(touched, np.arange(first_new, self.k))
            if len(changed):
                self.unit[changed] = _normalized(self.sums[changed])
        return labels

    def _place(self, row: np.ndarray, weight: float, first_new: int) -> int:
        # Only groups started in this block can take the row: the older ones were just compared.
        if self.k > first_new:
            sims = self.unit[first_new : self.k] @ row
            j = int(sims.argmax())
            if sims[j] >= self.threshold:
                self.sums[first_new + j] += row * weight
                self.unit[first_new + j] = _normalized(self.sums[first_new + j : first_new + j + 1])[0]
                return first_new + j
        if self.k == self.max_groups:
            return -1
        self.sums[self.k] = row * weight
        self.unit[self.k] = _normalized(row[None, :])[0]
        self.k += 1
        return self.k - 1

    def centroids(self) -> np.ndarray:
        return self.unit[: self.k]


def _central_order(vectors: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Rows of the largest group first, each group's most central row first."""
    valid = labels >= 0
    safe = np.where(valid, labels, 0)
    k = int(safe.max()) + 1 if len(safe) else 0
    sums = np.zeros((k, vectors.shape[1]), dtype=np.float32)
    _add_rows(sums, safe[valid], vectors[valid].astype(np.float32) * weights[valid, None])
    unit = _normalized(sums)
    sizes = np.bincount(safe[valid], weights=weights[valid], minlength=k)
    central = np.einsum("ij,ij->i", vectors.astype(np.float32), unit[safe])
    size = np.where(valid, sizes[safe], 0.0)
    return np.lexsort((-central, -size))


def _nearest(vectors: np.ndarray, centroids: np.ndarray, block: int) -> np.ndarray:
    labels = np.empty(len(vectors), dtype=np.int64)
    for start in range(0, len(vectors), block):
        sims = vectors[start : start + block].astype(np.float32) @ centroids.T
        labels[start : start + block] = sims.argmax(axis=1)
    return labels


def group_vectors(
    vectors: np.ndarray,
    threshold: float,
    weights: np.ndarray | None = None,
    *,
    max_groups: int = MAX_GROUPS,
    sample: int = SEED_SAMPLE,
    block: int = BLOCK,
) -> np.ndarray:
    """A group label 0..k-1 for each row of ``vectors`` (unit rows, float16 or float32), similar rows
    together; ``threshold`` is the cosine a row needs with a group's centroid to join it. ``weights``
    (default 1) count a row that stands for several identical questions. Deterministic."""
    n = len(vectors)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    w = np.ones(n, dtype=np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
    dim = vectors.shape[1]
    # Seeds: the sample clustered in arrival order, then again largest-and-most-central first.
    picked = np.unique(np.linspace(0, n - 1, num=min(n, sample)).astype(np.int64))
    seed_vectors, seed_weights = vectors[picked], w[picked]
    first = _Leader(dim, threshold, max_groups).run(seed_vectors, np.arange(len(picked)), seed_weights, block)
    second = _Leader(dim, threshold, max_groups)
    second.run(seed_vectors, _central_order(seed_vectors, first, seed_weights), seed_weights, block)
    full = _Leader(dim, threshold, max_groups, seeds=second.centroids())
    labels = full.run(vectors, np.arange(n), w, block)
    # Final pass, while the rows are few (all of them were in the sample): each grouped row to its
    # nearest final centroid. With more rows the sample's centroids have settled the groups already, and
    # another product of every row with every centroid would cost a third of the time (bench/gaps.py).
    grouped = labels >= 0
    if grouped.any() and n <= sample:
        sums = full.sums[: full.k]
        live = np.flatnonzero(np.linalg.norm(sums, axis=1) > 0)
        nearest = live[_nearest(vectors, _normalized(sums[live]), block)]
        labels[grouped] = nearest[grouped]
    # Rows left over once MAX_GROUPS was reached are groups of their own.
    loose = np.flatnonzero(~grouped)
    labels[loose] = (int(labels.max()) + 1 if grouped.any() else 0) + np.arange(len(loose))
    _, compact = np.unique(labels, return_inverse=True)
    return np.asarray(compact.reshape(-1), dtype=np.int64)


def normalize_question(question: str) -> str:
    """A question as compared for "the same question": lower-cased, spaces collapsed, no end marks."""
    return _SPACES.sub(" ", question.lower()).strip().rstrip("?!. ")
