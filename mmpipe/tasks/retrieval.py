"""Cross-modal retrieval: source rows mapped through W rank the target's rows by cosine
similarity (recall@1/5/10, median rank, both directions), on each split's validation rows or
a seeded subset of them.

``retrieval=True`` (``retrieval_rows`` per split); results in ``result.retrieval``, stored
under ``retrieval/<s>--<t>/split_<s>/``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from mmpipe.io.results import pair_key, write_array
from mmpipe.jsonable import to_json
from mmpipe.models.pair import PairModels
from mmpipe.stats.retrieval import rank_metrics
from mmpipe.stats.scoring import Embedder, MatchRanks, ScoringResult
from mmpipe.tables import Summary, arrow, rounded, task_row
from mmpipe.tasks.base import ScoringRequest, Task, TaskContext

if TYPE_CHECKING:
    from mmpipe.options import FitConfig


def retrieval_embedder(
    name: str, pairs: Sequence[PairModels], map_index: int, fractions: Sequence[float],
    source: str, target: str,
) -> Embedder:  # fmt: skip
    """Embeddings in the target's score space: source rows through W(map_index), target rows
    through its own scaler and PCA, one pair of maps per split."""
    qmaps, qbias, cmaps, cbias = [], [], [], []
    for pair in pairs:
        basis = pair.source_pca.basis_ @ pair.ridge.coef_[map_index]
        qmaps.append(basis)
        qbias.append(pair.ridge.intercept_[map_index] - pair.source_pca.mean_ @ basis)
        cmaps.append(pair.target_pca.basis_)
        cbias.append(-pair.target_pca.mean_ @ pair.target_pca.basis_)
    return Embedder(
        name, source, target, np.stack(qmaps), np.stack(qbias), np.stack(cmaps),
        np.stack(cbias), np.asarray(fractions, dtype=np.float64),
    )  # fmt: skip


@dataclass(frozen=True, eq=False)
class RetrievalResult:
    """Cross-modal retrieval on each split's validation rows (or a seeded subset of them)."""

    source: str
    target: str
    map_alpha: float
    """The α of W used to map source rows into the target's space (the pair's chosen α)."""
    ranks: list[MatchRanks]
    """Per split: the rows ranked and the ranks of their true matches, both directions."""

    def fold_metrics(self, direction: str = "forward") -> list[dict[str, float]]:
        return [rank_metrics(getattr(r, direction)) for r in self.ranks]

    def summary(self) -> dict[str, Any]:
        def mean(direction: str) -> dict[str, float]:
            folds = self.fold_metrics(direction)
            return {k: float(np.mean([f[k] for f in folds])) for k in folds[0]}

        return {
            "source": self.source,
            "target": self.target,
            "map_alpha": self.map_alpha,
            "rows_per_split": [int(r.rows.size) for r in self.ranks],
            "source_to_target": mean("forward"),
            "target_to_source": mean("backward"),
        }


class Retrieval(Task):
    name = "retrieval"
    table_title = "Retrieval: source mapped through W ranks the target's rows (cosine)"
    table_columns = (
        "source → target",
        "rows/split",
        "R@1 →",
        "R@10 →",
        "med. rank →",
        "R@1 ←",
        "R@10 ←",
        "med. rank ←",
    )

    def active(self, config: FitConfig) -> bool:
        return bool(config.retrieval)

    def score(self, context: TaskContext) -> ScoringRequest:
        stats, plan, wanted = context.stats, context.prepared.plan, context.config.retrieval_rows
        embedders = []
        for pair in context.pairs:
            key = (pair.source, pair.target)
            eligible = [stats.rows_present(key, val) for _, val in plan.splits]
            fractions = [1.0 if wanted is None else min(1.0, wanted / max(n, 1)) for n in eligible]
            embedders.append(
                retrieval_embedder(
                    f"retrieval:{pair_key(*key)}", context.split_models(key), pair.alpha_index,
                    fractions, *key,
                )
            )  # fmt: skip

        def collect(scored: ScoringResult) -> list[Any]:
            return [
                RetrievalResult(
                    source=pair.source,
                    target=pair.target,
                    map_alpha=pair.alpha,
                    ranks=[
                        scored.ranks[(f"retrieval:{pair_key(pair.source, pair.target)}", s)]
                        for s in range(plan.n_splits)
                    ],
                )
                for pair in context.pairs
            ]

        return ScoringRequest(collect, embedders=embedders)

    def write(self, run: zarr.Group, results: list[RetrievalResult]) -> None:
        found = run.create_group(self.name)
        for r in results:
            g = found.create_group(pair_key(r.source, r.target))
            g.attrs.update(to_json(r.summary()))
            for split, ranks in enumerate(r.ranks):
                h = g.create_group(f"split_{split}")
                write_array(h, "rows", ranks.rows, ["query"])
                write_array(h, "forward_rank", ranks.forward, ["query"])
                write_array(h, "backward_rank", ranks.backward, ["query"])

    def table_rows(self, summary: Summary) -> list[tuple[str, ...]]:
        rows: list[tuple[str, ...]] = []
        for r in summary.get(self.name) or []:
            fw, bw = r["source_to_target"], r["target_to_source"]
            rows.append(
                (
                    arrow(r),
                    f"{np.mean(r['rows_per_split']):.0f}",
                    f"{fw['recall@1']:.3f}",
                    f"{fw['recall@10']:.3f}",
                    f"{fw['median_rank']:g}",
                    f"{bw['recall@1']:.3f}",
                    f"{bw['recall@10']:.3f}",
                    f"{bw['median_rank']:g}",
                )
            )
        return rows

    def artifact_rows(self, summary: Summary) -> list[dict[str, Any]]:
        rows = []
        for r in summary.get(self.name, []):
            row = task_row("retrieval", arrow(r), r["map_alpha"], {})
            row |= {f"{k} →": rounded(v) for k, v in r["source_to_target"].items()}
            rows.append(row | {f"{k} ←": rounded(v) for k, v in r["target_to_source"].items()})
        return rows

    def line(self, item: Summary) -> str:
        fw, bw = item["source_to_target"], item["target_to_source"]
        return (
            f"retrieval {arrow(item)}: recall@1 {fw['recall@1']:.3f} (→), "
            f"{bw['recall@1']:.3f} (←), median rank {fw['median_rank']:g} (→)"
        )
