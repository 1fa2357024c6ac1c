"""The README's mfeat table of cross-modal tasks, computed by mmpipe.

    .venv/bin/python benchmarks/mfeat_tasks.py [data/mfeat.zarr]

For every pair of views {A, B}: the CV R² of the ridge maps A→B and B→A, retrieval recall@1
with A's rows mapped into B's space (A→B: each mapped A row ranks B's rows; B→A: each B row
ranks the mapped A rows), and transfer: A's rows mapped through W(A→B) and classified by B's
ridge classifier, beside B's classifier on B's own rows. Stratified 5-fold CV, 16 components
(6 for mor), α chosen on validation R² for the maps and on B's own accuracy for classifiers.
tests/test_mfeat_tasks.py recomputes every number with scikit-learn.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any

import mmpipe
from mmpipe.result import FitResult

VIEWS = ("fou", "fac", "kar", "pix", "zer", "mor")
SETTINGS: dict[str, Any] = {
    "components": 16,
    "folds": 5,
    "seed": 0,
    "transfer": True,
    "retrieval": True,
    "retrieval_rows": None,
}


def fit_mfeat(store: str, client: object | None = None) -> FitResult:
    pairs = [f"{a}:{b}" for a, b in itertools.permutations(VIEWS, 2)]
    return mmpipe.fit(store, pairs=pairs, client=client, **SETTINGS)


def table(result: FitResult) -> str:
    """The markdown table (one row per unordered pair, both directions)."""
    transfer = {(t.source, t.target): t.summary() for t in result.transfer}
    retrieval = {(r.source, r.target): r.summary() for r in result.retrieval}
    lines = [
        "| A, B | R² A→B | R² B→A | recall@1 A→B | recall@1 B→A | transfer A→B (B's own) "
        "| transfer B→A (A's own) |",
        "|---|---|---|---|---|---|---|",
    ]
    for a, b in itertools.combinations(VIEWS, 2):
        r2_ab = result.pair(a, b).summary()["cv"]["r2"]
        r2_ba = result.pair(b, a).summary()["cv"]["r2"]
        found = retrieval[(a, b)]
        t_ab, t_ba = transfer[(a, b)], transfer[(b, a)]
        lines.append(
            f"| {a}, {b} | {r2_ab:.3f} | {r2_ba:.3f} "
            f"| {found['source_to_target']['recall@1']:.3f} "
            f"| {found['target_to_source']['recall@1']:.3f} "
            f"| {t_ab['cv']['accuracy']:.3f} ({t_ab['target_cv']['accuracy']:.3f}) "
            f"| {t_ba['cv']['accuracy']:.3f} ({t_ba['target_cv']['accuracy']:.3f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    store = sys.argv[1] if len(sys.argv) > 1 else "data/mfeat.zarr"
    if not Path(store).exists():
        from mmpipe.io.examples import make_mfeat

        make_mfeat(store)
    print(table(fit_mfeat(store)))


if __name__ == "__main__":
    main()
