"""Cross-modal retrieval ranks, tile by tile: never an n × n similarity matrix in memory.

Queries are source rows mapped into the target's score space; candidates are the target rows.
Row i's true match is candidate i. Its rank counts the candidates more similar (cosine) than
the true match by more than TIE (1e-9), plus one. Near-ties count in the query's favour, so
duplicate rows (mfeat has some) rank the same whatever the rounding of the products. Both directions
come from the same tiles: a row of a tile ranks candidates for a query (source → target),
and a column ranks queries for a candidate (target → source).
"""

from __future__ import annotations

import numpy as np

DEFAULT_TILE = 2048
TIE = 1e-9
RECALL_AT = (1, 5, 10)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def match_ranks(
    queries: np.ndarray, candidates: np.ndarray, *, tile: int = DEFAULT_TILE
) -> tuple[np.ndarray, np.ndarray]:
    """(forward, backward) 1-based ranks of each row's true match; memory O(tile²)."""
    q = _unit_rows(np.asarray(queries, dtype=np.float64))
    c = _unit_rows(np.asarray(candidates, dtype=np.float64))
    n = q.shape[0]
    true = np.einsum("ij,ij->i", q, c)
    forward = np.ones(n, dtype=np.int64)
    backward = np.ones(n, dtype=np.int64)
    for a in range(0, n, tile):
        qa = q[a : a + tile]
        for b in range(0, n, tile):
            sim = qa @ c[b : b + tile].T
            if a == b:
                # The true match never outranks itself (its product here may differ from
                # `true` in the last bit).
                np.fill_diagonal(sim, -np.inf)
            forward[a : a + tile] += (sim > true[a : a + tile, None] + TIE).sum(axis=1)
            backward[b : b + tile] += (sim > true[None, b : b + tile] + TIE).sum(axis=0)
    return forward, backward


def rank_metrics(ranks: np.ndarray) -> dict[str, float]:
    """recall@1/5/10 and the median rank."""
    if ranks.size == 0:
        return {**{f"recall@{k}": float("nan") for k in RECALL_AT}, "median_rank": float("nan")}
    out = {f"recall@{k}": float(np.mean(ranks <= k)) for k in RECALL_AT}
    out["median_rank"] = float(np.median(ranks))
    return out
