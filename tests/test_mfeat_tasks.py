"""The README's mfeat table: computed by benchmarks/mfeat_tasks.py, recomputed here with
scikit-learn fold by fold, and compared with what the README shows."""

from __future__ import annotations

import importlib.util
import itertools
import re
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import Ridge, RidgeClassifier
from sklearn.metrics import r2_score
from sklearn.metrics.pairwise import cosine_similarity
from sklearn.preprocessing import StandardScaler

import mmpipe
from mmpipe.io.examples import make_mfeat

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mfeat_tasks", REPO / "benchmarks/mfeat_tasks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scores(train: np.ndarray, other: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scaler = StandardScaler().fit(train)
    pca = PCA(n_components=min(k, train.shape[1]), svd_solver="covariance_eigh")
    pca.fit(scaler.transform(train))
    return pca.transform(scaler.transform(train)), pca.transform(scaler.transform(other))


def test_mfeat_table_recomputed_with_sklearn(tmp_path: Path) -> None:
    script = load_script()
    store = make_mfeat(tmp_path / "mfeat.zarr")
    result = script.fit_mfeat(store)
    ds = mmpipe.open_dataset(store)
    views = {n: np.asarray(a.compute(), dtype=np.float64) for n, a in ds.modalities.items()}
    labels = np.asarray(ds.labels.compute())  # type: ignore[union-attr]
    transfer = {(t.source, t.target): t for t in result.transfer}
    retrieval = {(r.source, r.target): r.summary() for r in result.retrieval}

    for a, b in itertools.permutations(script.VIEWS, 2):
        pair = result.pair(a, b)
        moved = transfer[(a, b)]
        r2, accuracy, own, recall_ab, recall_ba = [], [], [], [], []
        for split in range(result.plan.n_splits):
            tr, va = result.plan.train_mask(split), result.plan.validation_mask(split)
            s_tr, s_va = scores(views[a][tr], views[a][va], 16)
            t_tr, t_va = scores(views[b][tr], views[b][va], 16)
            mapped = Ridge(alpha=pair.alpha).fit(s_tr, t_tr).predict(s_va)
            r2.append(r2_score(t_va, mapped))
            classifier = RidgeClassifier(alpha=moved.alpha).fit(t_tr, labels[tr])
            accuracy.append(np.mean(classifier.predict(mapped) == labels[va]))
            own.append(np.mean(classifier.predict(t_va) == labels[va]))
            sim = cosine_similarity(mapped, t_va)
            true = np.diag(sim)
            recall_ab.append(np.mean((sim > true[:, None] + 1e-9).sum(axis=1) == 0))
            recall_ba.append(np.mean((sim > true[None, :] + 1e-9).sum(axis=0) == 0))
        assert pair.summary()["cv"]["r2"] == pytest.approx(np.mean(r2), rel=1e-6)
        assert moved.summary()["cv"]["accuracy"] == pytest.approx(np.mean(accuracy), abs=1e-12)
        assert moved.summary()["target_cv"]["accuracy"] == pytest.approx(np.mean(own), abs=1e-12)
        found = retrieval[(a, b)]
        assert found["source_to_target"]["recall@1"] == pytest.approx(np.mean(recall_ab))
        assert found["target_to_source"]["recall@1"] == pytest.approx(np.mean(recall_ba))

    # The README shows exactly what the script prints.
    readme = (REPO / "README.md").read_text()
    shown = re.search(r"<!-- mfeat-tasks:begin -->\n(.*?)\n<!-- mfeat-tasks:end -->", readme, re.S)
    assert shown is not None, "README lacks the mfeat-tasks table markers"
    assert shown.group(1).strip() == script.table(result).strip()
