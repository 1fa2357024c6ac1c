"""Multinomial logistic regression on PCA scores: mmpipe's L-BFGS on the workers against
scikit-learn (in memory) and dask-ml (on the same cluster).

    .venv/bin/python benchmarks/logistic.py [--rows 200000] [--k 32] [--classes 10]

Same scores for all, a seeded 80/20 split, C = 1. dask-ml's LogisticRegression is binary only
(it fits a single coefficient vector whatever the labels), so the multiclass comparison is
mmpipe against scikit-learn, and a binary task (class 0 against the rest) compares all three.
Prints one markdown table; times are wall seconds in this one run.
"""

from __future__ import annotations

import argparse
import functools
import time
import warnings
from typing import Any

import dask.array as da
import numpy as np


def data(rows: int, k: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, k)) * 0.6
    y = rng.integers(0, classes, rows)
    x = centers[y] + rng.standard_normal((rows, k)) * np.linspace(1.5, 0.5, k)
    return x, y


def mmpipe_fit(x: np.ndarray, y: np.ndarray, train: np.ndarray, classes: int, client: Any) -> Any:
    from mmpipe.models.logistic import fit_stacked_logistic
    from mmpipe.stats.held import HeldScores

    chunk = 25_000
    parts = [
        (x[i : i + chunk], y[i : i + chunk], train[i : i + chunk, None])
        for i in range(0, len(y), chunk)
    ]
    # The scores held on the workers, one future per block and part.
    blocks = [tuple(client.scatter(list(part))) for part in parts]
    held = HeldScores(blocks, 1, x.shape[1], np.array([train.sum()]))
    with client.as_current():
        fit = fit_stacked_logistic(
            functools.partial(held.loss_and_gradient, n_classes=classes),
            1, x.shape[1], classes, held.n_train, C=1.0,
        )  # fmt: skip
    return fit


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()

    from distributed import Client, LocalCluster
    from sklearn.linear_model import LogisticRegression

    x, y = data(args.rows, args.k, args.classes)
    rng = np.random.default_rng(1)
    train = rng.random(args.rows) < 0.8
    test = ~train
    rows: list[tuple[str, str, float, float, str]] = []

    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster) as client:  # fmt: skip
        for task, labels, n_classes in (
            ("multiclass", y, args.classes),
            ("binary", (y == 0).astype(np.int64), 2),
        ):
            start = time.perf_counter()
            fit = mmpipe_fit(x, labels, train, n_classes, client)
            elapsed = time.perf_counter() - start
            predicted = np.argmax(x[test] @ fit.coef[0] + fit.intercept[0], axis=1)
            accuracy = float(np.mean(predicted == labels[test]))
            rows.append(
                (task, "mmpipe L-BFGS on workers", elapsed, accuracy, f"{fit.passes} passes")
            )

            start = time.perf_counter()
            reference = LogisticRegression(C=1.0, max_iter=1000).fit(x[train], labels[train])
            elapsed = time.perf_counter() - start
            rows.append((task, "scikit-learn lbfgs (in memory)", elapsed,
                         float(reference.score(x[test], labels[test])),
                         f"{int(np.max(reference.n_iter_))} iterations"))  # fmt: skip
            if n_classes > 2:
                tight = LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000)
                tight.fit(x[train], labels[train])
                gap = np.max(np.abs(fit.coef[0] - tight.coef_.T)) / np.max(np.abs(tight.coef_))
                rows.append((task, "mmpipe vs scikit-learn at tol=1e-10", 0.0, 0.0,
                             f"max relative coef difference {gap:.1e}"))  # fmt: skip

            from dask_ml.linear_model import LogisticRegression as DaskLogistic

            xd = da.from_array(x[train], chunks=(25_000, args.k))
            yd = da.from_array(labels[train], chunks=25_000)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dml = DaskLogistic(C=1.0, solver="lbfgs", max_iter=1000).fit(xd, yd)
            elapsed = time.perf_counter() - start
            if n_classes == 2:
                accuracy = float(np.mean(np.asarray(dml.predict(x[test])) == labels[test]))
                note = "binary only"
            else:
                accuracy = float("nan")
                note = f"coef_ shape {np.shape(dml.coef_)}: not multinomial"
            rows.append((task, "dask-ml LogisticRegression (lbfgs)", elapsed, accuracy, note))

    print(f"rows={args.rows}, k={args.k}, classes={args.classes}, 2 workers × 1 thread\n")
    print("| task | method | wall s | test accuracy | note |")
    print("|---|---|---|---|---|")
    for task, method, seconds, accuracy, note in rows:
        print(f"| {task} | {method} | {seconds:.2f} | {accuracy:.4f} | {note} |")


if __name__ == "__main__":
    main()
