"""The scoring pass: predictions of every task, split and α in one more blocked pass.

Everything that needs per-row predictions is an affine map of raw input columns, composed in
memory once per split: standardize, project on the PCA basis, maybe map through W, maybe
apply a classifier. Each row block then costs one matrix product per split and task.

- Classification and transfer (:class:`LinearScorer`): a block contributes a confusion matrix
  per (scorer, split, α), and the matrices are summed in a tree. Only counts leave the workers.
- Retrieval (:class:`Embedder`): a block returns the embeddings of its rows that belong to
  the retrieval subset of a split: source rows mapped into the target's score space, and the
  target's own scores. They are gathered per split (bounded by the subset size) and ranked in
  tiles (:mod:`mmpipe.stats.retrieval`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from dask.delayed import Delayed, delayed

from mmpipe.cluster import compute_pass
from mmpipe.io.dataset import Dataset
from mmpipe.stats.blocked import tree_reduce
from mmpipe.stats.folds import FoldPlan
from mmpipe.stats.retrieval import DEFAULT_TILE, match_ranks
from mmpipe.stats.rowblocks import RowBlock, map_row_blocks


@dataclass(frozen=True, eq=False)
class LinearScorer:
    """Class decisions = x_inputs @ maps[s] + bias[s], for every α side by side."""

    name: str
    inputs: tuple[str, ...]
    """Modalities whose columns, side by side, are x_inputs."""
    require: tuple[str, ...]
    """Modalities that must be present in a row for it to count (a superset of inputs)."""
    maps: np.ndarray
    """(n_splits, d_inputs, n_alpha · n_classes)."""
    bias: np.ndarray
    """(n_splits, n_alpha · n_classes)."""
    n_alpha: int


@dataclass(frozen=True, eq=False)
class Embedder:
    """Embeddings of a pair's validation rows in the target's score space, per split.

    query = x_source @ query_maps[s] + query_bias[s] (source mapped through W);
    candidate = x_target @ candidate_maps[s] + candidate_bias[s] (target's own scores).
    """

    name: str
    source: str
    target: str
    query_maps: np.ndarray
    """(n_splits, d_source, k)."""
    query_bias: np.ndarray
    """(n_splits, k)."""
    candidate_maps: np.ndarray
    """(n_splits, d_target, k)."""
    candidate_bias: np.ndarray
    """(n_splits, k)."""
    fraction: np.ndarray
    """(n_splits,) keep a validation row when its draw u < fraction (1: every row)."""


@dataclass(frozen=True)
class Embeddings:
    """Rows (global positions), queries and candidates of one (embedder, split)."""

    rows: np.ndarray
    queries: np.ndarray
    candidates: np.ndarray


@dataclass(frozen=True)
class BlockScores:
    confusions: dict[str, np.ndarray] = field(default_factory=dict)
    """scorer name -> (n_splits, n_alpha, C, C)."""
    embeddings: dict[tuple[str, int], Embeddings] = field(default_factory=dict)
    """(embedder name, split) -> the block's rows of that retrieval subset."""


def score_block(
    block: RowBlock,
    label_codes: np.ndarray | None,
    fold_groups: np.ndarray,
    draws: np.ndarray | None,
    validation_groups: Sequence[np.ndarray],
    scorers: Sequence[LinearScorer],
    embedders: Sequence[Embedder],
    n_classes: int,
) -> BlockScores:
    """Confusion matrices per scorer and retrieval embeddings per embedder for one row block."""
    present = {name: block.present([name]) for name in block.masks}
    validation = [np.isin(fold_groups, groups) for groups in validation_groups]

    def columns(names: Sequence[str], take: np.ndarray) -> np.ndarray:
        return np.concatenate(
            [np.asarray(block.values[n][take], dtype=np.float64) for n in names], 1
        )

    out = BlockScores()
    if scorers and label_codes is None:
        raise ValueError("classification scorers need label codes")
    for scorer in scorers:
        assert label_codes is not None
        confusion = np.zeros((len(validation), scorer.n_alpha, n_classes, n_classes))
        usable = np.logical_and.reduce([present[n] for n in scorer.require])
        for s, in_split in enumerate(validation):
            take = usable & in_split
            if not take.any():
                continue
            decisions = columns(scorer.inputs, take) @ scorer.maps[s] + scorer.bias[s]
            predicted = decisions.reshape(-1, scorer.n_alpha, n_classes).argmax(axis=2)
            truth = label_codes[take]
            for a in range(scorer.n_alpha):
                cells = np.bincount(truth * n_classes + predicted[:, a], minlength=n_classes**2)
                confusion[s, a] += cells.reshape(n_classes, n_classes)
        out.confusions[scorer.name] = confusion
    for emb in embedders:
        assert draws is not None  # made whenever there are embedders
        usable = present[emb.source] & present[emb.target]
        for s, in_split in enumerate(validation):
            take = usable & in_split & (draws < emb.fraction[s])
            out.embeddings[(emb.name, s)] = Embeddings(
                rows=block.start + np.flatnonzero(take),
                queries=columns([emb.source], take) @ emb.query_maps[s] + emb.query_bias[s],
                candidates=columns([emb.target], take) @ emb.candidate_maps[s]
                + emb.candidate_bias[s],
            )
    return out


def _merge(*parts: BlockScores) -> BlockScores:
    confusions = {k: v.copy() for k, v in parts[0].confusions.items()}
    for part in parts[1:]:
        for k, v in part.confusions.items():
            confusions[k] += v
    embeddings = {
        key: Embeddings(
            rows=np.concatenate([p.embeddings[key].rows for p in parts]),
            queries=np.concatenate([p.embeddings[key].queries for p in parts]),
            candidates=np.concatenate([p.embeddings[key].candidates for p in parts]),
        )
        for key in parts[0].embeddings
    }
    return BlockScores(confusions, embeddings)


@dataclass(frozen=True)
class MatchRanks:
    """Ranks of the true matches of one (embedder, split) retrieval subset."""

    rows: np.ndarray
    """Global row positions of the subset."""
    forward: np.ndarray
    """Rank of each row's target among the candidates for its mapped source (source → target)."""
    backward: np.ndarray
    """Rank of each row's mapped source among the queries for its target (target → source)."""


@dataclass(frozen=True)
class ScoringResult:
    confusions: dict[str, np.ndarray] = field(default_factory=dict)
    ranks: dict[tuple[str, int], MatchRanks] = field(default_factory=dict)


def rank_all(merged: BlockScores, tile: int) -> ScoringResult:
    """Rank every gathered retrieval subset (on a worker); only the ranks come back."""
    ranks = {}
    for key, emb in merged.embeddings.items():
        forward, backward = match_ranks(emb.queries, emb.candidates, tile=tile)
        ranks[key] = MatchRanks(emb.rows, forward, backward)
    return ScoringResult(merged.confusions, ranks)


def retrieval_draws(n_rows: int, seed: int) -> np.ndarray:
    """One uniform draw per row position, independent of chunking: picks retrieval subsets."""
    return np.random.default_rng([seed, 0x5EED]).random(n_rows)


def scoring_graph(
    ds: Dataset,
    plan: FoldPlan,
    label_codes: np.ndarray | None,
    n_classes: int,
    scorers: Sequence[LinearScorer],
    embedders: Sequence[Embedder] = (),
    *,
    split_every: int = 8,
    tile: int = DEFAULT_TILE,
) -> Delayed:
    """One task per row block reading only the modalities some job needs, then a tree merge."""
    names = sorted(
        {n for s in scorers for n in s.require}
        | {n for e in embedders for n in (e.source, e.target)}
    )
    # One draw per row picks the retrieval subsets; not made when nothing is retrieved.
    draws = retrieval_draws(ds.n_rows, plan.seed) if embedders else None
    validation = [np.asarray(val) for _, val in plan.splits]
    parts = map_row_blocks(
        ds,
        names,
        score_block,
        per_row=(label_codes, plan.assignment, draws),
        shared=(validation, list(scorers), list(embedders), n_classes),
    )
    return delayed(rank_all, pure=True)(tree_reduce(parts, _merge, split_every), tile)


def run_scoring_pass(
    ds: Dataset,
    plan: FoldPlan,
    label_codes: np.ndarray | None,
    n_classes: int,
    scorers: Sequence[LinearScorer],
    embedders: Sequence[Embedder] = (),
    *,
    tile: int = DEFAULT_TILE,
) -> ScoringResult:
    """Run the scoring pass: confusion matrices per scorer, match ranks per (embedder, split)."""
    if not scorers and not embedders:
        return ScoringResult()
    graph = scoring_graph(ds, plan, label_codes, n_classes, scorers, embedders, tile=tile)
    result: ScoringResult = compute_pass(graph, "scoring", rows=ds.n_rows)
    return result
