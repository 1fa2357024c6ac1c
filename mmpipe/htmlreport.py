"""A run as one self-contained HTML page: plots (matplotlib, PNG as ``data:`` URIs) and tables.

:func:`report_run` reads one complete run of a results store and nothing else: its attrs
(``summary``, ``config``, ``fingerprint``, ``timings``, ``versions``, ``plan``) and its arrays
(``modalities/``, ``pairs/``, ``classify/``, ``transfer/``, ``retrieval/``, ``logistic/``,
``multiview/``; see :mod:`mmpipe.io.results`). It writes ``index.html`` into a folder: no
JavaScript, no stylesheet, font or image fetched from anywhere, so it opens offline and can be
mailed as one file. Every number printed on the page is a number of the store, formatted by
:func:`metric` (R², accuracies, correlations), :func:`alpha` (penalties) or ``str`` (counts);
the plots draw curves through stored values (recall@K is the share of stored ranks ≤ K).

What each plot shows: docs/report.md.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from mmpipe.errors import ConfigError
from mmpipe.io.runs import read_run
from mmpipe.io.storage import StorageOptions, is_remote

if TYPE_CHECKING:
    from matplotlib.figure import Figure

INDEX = "index.html"
REPORTS_SUFFIX = ".reports"
"""Reports of a local results store ``R`` go to ``R.reports/<run_id>/``: beside the Zarr group,
never inside it (a folder in it would be one more member for zarr to list)."""


def metric(value: Any) -> str:
    """How the page prints an R², accuracy, recall or correlation of the store."""
    v = float(value)
    return "—" if not np.isfinite(v) else f"{v:.4f}"


def alpha(value: Any) -> str:
    """How the page prints a penalty (α, C) of the store."""
    return f"{float(value):g}"


def report_location(results: str | os.PathLike[str], run_id: str) -> Path | None:
    """Where the flows write a run's report: ``<results>.reports/<run_id>/`` for a local
    store, None for a remote one (nothing to write beside it)."""
    text = os.fspath(results)
    if is_remote(text):
        return None
    path = text.removeprefix("file://").rstrip("/")
    return Path(path + REPORTS_SUFFIX) / run_id


def report_run(
    results: str | os.PathLike[str],
    out: str | os.PathLike[str],
    run_id: str | None = None,
    storage_options: StorageOptions | None = None,
) -> Path:
    """Write the HTML report of a complete run (the latest one unless ``run_id``) to
    ``out/index.html``; returns that file's path. Only ``index.html`` is (re)written in
    ``out``."""
    folder = Path(os.fspath(out))
    if is_remote(os.fspath(out)):
        raise ConfigError(f"Report folder {os.fspath(out)!r}: give a local folder.")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"Report folder {os.fspath(out)!r} is a file; give a folder.")
    run = read_run(results, run_id, storage_options=storage_options)
    page = render(run, os.fspath(results))
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / INDEX
    tmp = folder / f".{INDEX}.{os.getpid()}.tmp"
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(target)
    return target


# ---------------------------------------------------------------------------- reading


def _attrs(node: Any) -> dict[str, Any]:
    return dict(node.attrs)


def _child(group: zarr.Group, path: str) -> Any:
    try:
        return group[path]
    except KeyError:
        return None


def _array(group: zarr.Group, path: str) -> np.ndarray | None:
    node = _child(group, path)
    return None if node is None or isinstance(node, zarr.Group) else np.asarray(node[...])


def _groups(group: zarr.Group | None) -> list[tuple[str, zarr.Group]]:
    if group is None:
        return []
    return sorted((n, g) for n, g in group.members() if isinstance(g, zarr.Group))


def _alpha_index(alphas: np.ndarray, chosen: float) -> int:
    return int(np.argmin(np.abs(np.log(alphas) - np.log(chosen)))) if chosen > 0 else 0


# ---------------------------------------------------------------------------- HTML

STYLE = """
body{font-family:sans-serif;max-width:1180px;margin:1em auto;padding:0 1em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:2em}
h3{font-size:1em;margin-bottom:.3em}
table{border-collapse:collapse;margin:.4em 0 1em}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:right;font-size:.9em}
th{background:#f2f2f2}td.k,th.k{text-align:left}
img{max-width:100%}p.note{color:#555;font-size:.9em}
.grid{display:flex;flex-wrap:wrap;gap:1.5em}
"""


def _e(text: Any) -> str:
    return html.escape(str(text))


def _table(
    columns: Sequence[str], rows: Iterable[Sequence[Any]], *, cls: str = "", keys: int = 1
) -> str:
    """A table; the first ``keys`` columns are labels (left-aligned)."""
    head = "".join(
        f'<th class="k">{_e(c)}</th>' if i < keys else f"<th>{_e(c)}</th>"
        for i, c in enumerate(columns)
    )
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="k">{_e(c)}</td>' if i < keys else f"<td>{_e(c)}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><tr>{head}</tr>{''.join(body)}</table>"


def _png(fig: Figure, alt: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    import matplotlib.pyplot as plt

    plt.close(fig)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _figure(
    panels: int, width: float = 3.6, height: float = 2.8, right: float = 0.25
) -> tuple[Figure, list[Any]]:
    """A grid of ``panels`` axes, three a row, each ``width`` × ``height`` inches; ``right``
    inches to the right of each (a colorbar's labels need more)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(panels, 3)
    rows = -(-panels // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    # Fixed margins in inches (a layout engine would draw every figure once more).
    w, h = width * cols, height * rows
    fig.subplots_adjust(
        left=0.8 / w, right=1 - right / w, bottom=0.75 / h, top=1 - 0.4 / h,
        wspace=(0.8 + right) / (width - 0.8 - right), hspace=1.15 / (height - 1.15),
    )  # fmt: skip
    flat = list(axes.ravel())
    for ax in flat[panels:]:
        ax.set_visible(False)
    return fig, flat[:panels]


# ---------------------------------------------------------------------------- sections


def _explained_variance(run: zarr.Group, summary: Mapping[str, Any]) -> str:
    ratios = {
        n: r
        for n, g in _groups(_child(run, "modalities"))
        if (r := _array(g, "explained_variance_ratio")) is not None
    }
    if not ratios:
        return ""
    fig, (ax,) = _figure(1, 6.0, 3.4)
    for name, r in ratios.items():
        ax.plot(np.arange(1, r.size + 1), np.cumsum(r), marker="o", ms=3, label=name)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("component")
    ax.set_ylabel("cumulative explained variance ratio")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    info = summary.get("modalities") or {}
    width = max(r.size for r in ratios.values())
    rows = []
    for name, r in ratios.items():
        total = info.get(name, {}).get("explained_variance_ratio")
        cells = [metric(v) for v in r] + [""] * (width - r.size)
        rows.append([name, str(info.get(name, {}).get("rows", "")), *cells,
                     "" if total is None else metric(total)])  # fmt: skip
    table = _table(
        ["modality", "rows", *(f"PC{i + 1}" for i in range(width)), "total"], rows, cls="ev"
    )
    return (
        "<h2>Explained variance per modality</h2>"
        + _png(fig, "cumulative explained variance ratio per modality")
        + "<p class='note'>Each component's explained variance ratio (the modality's scaler "
        "and PCA on all rows) and their total.</p>" + table
    )


def _pairs(run: zarr.Group, summary: Mapping[str, Any]) -> str:
    pairs = summary.get("pairs") or []
    if not pairs:
        return ""
    fig, axes = _figure(len(pairs))
    rows = []
    for ax, p in zip(axes, pairs, strict=True):
        key = f"{p['source']}--{p['target']}"
        r2 = _array(run, f"pairs/{key}/r2")
        alphas = _array(run, f"pairs/{key}/alphas")
        chosen = float(p["alpha"])
        if r2 is not None and alphas is not None:
            mean = np.asarray(p.get("r2_by_alpha") or r2.mean(axis=0), dtype=np.float64)
            ax.fill_between(alphas, r2.min(axis=0), r2.max(axis=0), alpha=0.25,
                            label="folds (min–max)")  # fmt: skip
            ax.plot(alphas, mean, marker="o", ms=3, label="mean")
            if np.all(alphas > 0):
                ax.set_xscale("log")
        ax.axvline(chosen, color="crimson", ls="--", lw=1, label="chosen α")
        ax.set_title(f"{p['source']} → {p['target']} (α={alpha(chosen)})", fontsize=10)
        ax.set_xlabel("α")
        ax.set_ylabel("CV R²")
        ax.grid(alpha=0.3)
        if ax is axes[0]:  # one legend: the panels share their lines
            ax.legend(fontsize=7, loc="lower left")
        folds = p["cv"].get("r2_folds") or []
        rows.append(
            [
                f"{p['source']} → {p['target']}",
                str(p["rows"]),
                "{}→{}".format(*p["components"]),
                alpha(chosen),
                metric(p["cv"]["r2"]),
                metric(min(folds)) if folds else "—",
                metric(max(folds)) if folds else "—",
                metric(p["cv"]["r2_weighted"]) if "r2_weighted" in p["cv"] else "—",
                metric(p["procrustes"]["r2"]),
            ]
        )
    table = _table(
        ["source → target", "rows", "k", "chosen α", "CV R²", "fold min", "fold max",
         "CV R² (weighted)", "Procrustes R²"],
        rows,
        cls="pairs",
    )  # fmt: skip
    return (
        "<h2>Transfer maps: CV R² against α</h2>"
        + _png(fig, "CV R² against alpha per pair")
        + "<p class='note'>Mean validation R² of the ridge map over the splits, the band "
        "from the lowest to the highest split; the dashed line is the chosen α. Procrustes "
        "R² is the orthogonal map's (it can be far below 0 when the scales differ).</p>" + table
    )


def _heatmaps(summary: Mapping[str, Any]) -> str:
    pairs = summary.get("pairs") or []
    names = sorted({p["source"] for p in pairs} | {p["target"] for p in pairs})
    if not names:
        return ""
    grids: list[tuple[str, dict[tuple[str, str], float]]] = [
        ("CV R²", {(p["source"], p["target"]): float(p["cv"]["r2"]) for p in pairs})
    ]
    transfer = summary.get("transfer") or []
    if transfer:
        grids.append(
            ("transfer accuracy",
             {(t["source"], t["target"]): float(t["cv"]["accuracy"]) for t in transfer})
        )  # fmt: skip
    retrieval = summary.get("retrieval") or []
    if retrieval:
        grids.append(
            ("retrieval recall@1 (source → target)",
             {(r["source"], r["target"]): float(r["source_to_target"]["recall@1"])
              for r in retrieval})
        )  # fmt: skip
    n = len(names)
    fig, axes = _figure(len(grids), 0.9 * n + 2.6, 0.8 * n + 1.6, right=0.9)
    for ax, (title, values) in zip(axes, grids, strict=True):
        grid = np.full((n, n), np.nan)
        for (s, t), v in values.items():
            grid[names.index(s), names.index(t)] = v
        image = ax.imshow(grid, cmap="viridis")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        ax.set_xticks(range(n), names, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(n), names, fontsize=8)
        ax.set_xlabel("target")
        ax.set_ylabel("source")
        ax.set_title(title, fontsize=10)
        finite = grid[np.isfinite(grid)]
        middle = float(np.mean([finite.min(), finite.max()])) if finite.size else 0.0
        for (s, t), v in values.items():
            i, j = names.index(s), names.index(t)
            ax.text(j, i, metric(v), ha="center", va="center", fontsize=7,
                    color="black" if v > middle else "white")  # fmt: skip
    return (
        "<h2>All directed pairs</h2>"
        + _png(fig, "heatmaps over the directed pairs")
        + "<p class='note'>Row: source modality, column: target. Empty cells: pairs the run "
        "did not fit.</p>"
    )


def _retrieval(run: zarr.Group, summary: Mapping[str, Any]) -> str:
    items = summary.get("retrieval") or []
    if not items:
        return ""
    fig, axes = _figure(len(items))
    rows = []
    for ax, r in zip(axes, items, strict=True):
        key = f"{r['source']}--{r['target']}"
        for direction, label in (("forward", "source → target"), ("backward", "target → source")):
            ranks = [
                a
                for _, split in _groups(_child(run, f"retrieval/{key}"))
                if (a := _array(split, f"{direction}_rank")) is not None
            ]
            if not ranks:
                continue
            most = max(int(a.max()) for a in ranks if a.size) if any(a.size for a in ranks) else 1
            ks = np.unique(np.geomspace(1, max(most, 2), 60).astype(int))
            curves = np.stack([[np.mean(a <= k) if a.size else np.nan for k in ks] for a in ranks])
            ax.plot(ks, np.nanmean(curves, axis=0), label=label)
            ax.fill_between(ks, np.nanmin(curves, axis=0), np.nanmax(curves, axis=0), alpha=0.2)
        ax.set_xscale("log")
        ax.set_xlabel("K")
        ax.set_ylabel("recall@K")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{r['source']} ↔ {r['target']}", fontsize=10)
        ax.grid(alpha=0.3)
        if ax is axes[0]:  # one legend: the panels share their lines
            ax.legend(fontsize=7, loc="lower right")
        fw, bw = r["source_to_target"], r["target_to_source"]
        rows.append(
            [f"{r['source']} → {r['target']}", alpha(r["map_alpha"]),
             " / ".join(str(v) for v in r["rows_per_split"]),
             *(metric(fw[k]) for k in ("recall@1", "recall@5", "recall@10")),
             alpha(fw["median_rank"]),
             *(metric(bw[k]) for k in ("recall@1", "recall@5", "recall@10")),
             alpha(bw["median_rank"])]
        )  # fmt: skip
    table = _table(
        ["source → target", "map α", "rows per split", "R@1 →", "R@5 →", "R@10 →",
         "median rank →", "R@1 ←", "R@5 ←", "R@10 ←", "median rank ←"],
        rows,
        cls="retrieval",
    )  # fmt: skip
    return (
        "<h2>Retrieval: recall@K</h2>"
        + _png(fig, "recall at K per pair and direction")
        + "<p class='note'>The share of validation queries whose true match ranks K or "
        "better (mean over the splits, band from the lowest to the highest split); "
        "→ maps the source into the target's space, ← the reverse.</p>" + table
    )


def _confusion_sets(run: zarr.Group, summary: Mapping[str, Any]) -> list[tuple[str, np.ndarray]]:
    """(title, C×C counts summed over the splits at the chosen penalty) of every classifier."""
    out: list[tuple[str, np.ndarray]] = []
    for c in summary.get("classify") or []:
        name = "+".join(c["features"])
        if c.get("confusion") is not None:
            out.append((f"classify {name} (α={alpha(c['alpha'])})", np.asarray(c["confusion"])))
    for lr in summary.get("logistic") or []:
        name = "+".join(lr["features"])
        counts = _array(run, f"logistic/{name}/confusion")
        if counts is not None:
            out.append((f"logistic {name} (C={alpha(lr['C'])})", counts.sum(axis=0)))
    for t in summary.get("transfer") or []:
        group = f"transfer/{t['source']}--{t['target']}"
        counts, alphas = _array(run, f"{group}/confusion"), _array(run, f"{group}/alphas")
        if counts is None or alphas is None:
            continue
        a = _alpha_index(alphas, float(t["alpha"])) if counts.ndim == 4 else None
        moved = counts[:, a] if a is not None else counts
        penalty = (
            f"C={alpha(t['C'])}"
            if t.get("classifier") == "logistic"
            else (f"α={alpha(t['alpha'])}")
        )
        out.append((f"transfer {t['source']} → {t['target']} ({penalty})", moved.sum(axis=0)))
    return out


def _confusions(run: zarr.Group, summary: Mapping[str, Any], classes: Sequence[Any]) -> str:
    sets = _confusion_sets(run, summary)
    if not sets:
        return ""
    fig, axes = _figure(len(sets), 3.4, 3.2)
    tables = []
    for ax, (title, counts) in zip(axes, sets, strict=True):
        labels = (
            [str(c) for c in classes]
            if len(classes) == counts.shape[0]
            else [str(i) for i in range(counts.shape[0])]
        )
        ax.imshow(counts, cmap="Blues")
        n = counts.shape[0]
        ticks = range(n)
        ax.set_xticks(ticks, labels, fontsize=7)
        ax.set_yticks(ticks, labels, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title, fontsize=9)
        if n <= 12:
            top = counts.max() if counts.size else 0
            for i in range(n):
                for j in range(n):
                    ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if counts[i, j] > top / 2 else "black")  # fmt: skip
        tables.append(
            f"<div><h3>{_e(title)}</h3>"
            + _table(
                ["true \\ predicted", *labels],
                [[labels[i], *(str(int(v)) for v in counts[i])] for i in range(n)],
                cls="confusion",
            )
            + "</div>"
        )
    return (
        "<h2>Confusion matrices</h2>"
        + _png(fig, "confusion matrices")
        + "<p class='note'>Validation rows of every split, summed, at the chosen penalty: "
        "rows are the true class, columns the predicted one.</p>"
        + f"<div class='grid'>{''.join(tables)}</div>"
    )


def _canonical(run: zarr.Group, summary: Mapping[str, Any]) -> str:
    pairs = summary.get("pairs") or []
    if not pairs:
        return ""
    fig, axes = _figure(len(pairs))
    rows = []
    for ax, p in zip(axes, pairs, strict=True):
        key = f"{p['source']}--{p['target']}"
        train = _array(run, f"pairs/{key}/cca_correlations")
        folds = _array(run, f"pairs/{key}/cca_validation_correlations")
        if train is not None:
            ax.plot(np.arange(1, train.size + 1), train, marker="o", ms=3, label="all rows")
        if folds is not None and folds.size:
            x = np.arange(1, folds.shape[1] + 1)
            mean = np.asarray(p.get("cca_validation") or np.nanmean(folds, axis=0))
            ax.plot(x, mean, marker="s", ms=3, label="validation (mean)")
            ax.fill_between(x, np.nanmin(folds, axis=0), np.nanmax(folds, axis=0), alpha=0.2,
                            label="validation (min–max)")  # fmt: skip
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("canonical component")
        ax.set_ylabel("correlation")
        lowest = float(np.nanmin(folds)) if folds is not None and folds.size else 0.0
        ax.set_ylim(min(0.0, lowest), 1.02)
        ax.set_title(f"{p['source']} → {p['target']}", fontsize=10)
        ax.grid(alpha=0.3)
        if ax is axes[0]:  # one legend: the panels share their lines
            ax.legend(fontsize=7, loc="upper right")
        rows.append(
            [f"{p['source']} → {p['target']}",
             " ".join(metric(v) for v in p.get("cca") or []),
             " ".join(metric(v) for v in p.get("cca_validation") or [])]
        )  # fmt: skip
    table = _table(
        ["pair", "canonical correlations (all rows)", "validation (mean over splits)"],
        rows, cls="cca",
    )  # fmt: skip
    return (
        "<h2>Canonical correlations</h2>"
        + _png(fig, "canonical correlations per pair")
        + "<p class='note'>CCA of the pair's PCA scores: fitted on all rows, and each "
        "split's CCA evaluated on its validation rows.</p>" + table
    )


def _multiview(run: zarr.Group, summary: Mapping[str, Any]) -> str:
    item = summary.get("multiview")
    group = _child(run, "multiview")
    if not item and group is None:
        return ""
    item = item or (_attrs(group) if group is not None else {})
    final = np.asarray(item.get("eigenvalues") or [], dtype=np.float64)
    if group is not None and (stored := _array(group, "eigenvalues")) is not None:
        final = stored
    validation = _array(group, "validation_eigenvalues") if group is not None else None
    fig, (ax,) = _figure(1, 6.0, 3.4)
    if final.size:
        ax.plot(np.arange(1, final.size + 1), final, marker="o", ms=3, label="all rows")
    if validation is not None and validation.size:
        x = np.arange(1, validation.shape[1] + 1)
        ax.plot(x, validation.mean(axis=0), marker="s", ms=3, label="validation (mean)")
        ax.fill_between(x, validation.min(axis=0), validation.max(axis=0), alpha=0.2,
                        label="validation (min–max)")  # fmt: skip
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("component")
    ax.set_ylabel("eigenvalue")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    rows = [["all rows", " ".join(metric(v) for v in final)]]
    val = (item.get("validation") or {}).get("eigenvalues")
    if val:
        rows.append(["validation (mean over splits)", " ".join(metric(v) for v in val)])
    corr = (item.get("validation") or {}).get("mean_correlation")
    if corr:
        rows.append(["validation correlation (mean over view pairs)",
                     " ".join(metric(v) for v in corr)])  # fmt: skip
    mods = "+".join(item.get("modalities") or [])
    return (
        f"<h2>Multi-view spectrum (MCCA of {_e(mods)})</h2>"
        + _png(fig, "multiview eigenvalue spectrum")
        + "<p class='note'>Eigenvalues of the multi-view common space; with V views a "
        "component shared by all of them approaches V.</p>"
        + _table(["", "per component"], rows, cls="multiview")
    )


def _value(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return repr(v)
    return json.dumps(v)


def _provenance(attrs: Mapping[str, Any]) -> str:
    config = attrs.get("config") or {}
    parts = ["<h2>Run</h2>"]
    run_rows = [
        [k, _value(attrs[k])]
        for k in ("run_id", "dataset", "rows", "started", "finished")
        if attrs.get(k) is not None
    ]
    run_rows.append(["fingerprint", _value(attrs.get("fingerprint"))])
    parts.append(_table(["", "value"], run_rows, cls="run", keys=2))
    plan = attrs.get("plan") or {}
    if plan:
        parts.append("<h3>Plan</h3>")
        parts.append(_table(["", "value"], [[k, _value(v)] for k, v in plan.items()],
                            cls="plan", keys=2))  # fmt: skip
    parts.append("<h3>Config</h3>")
    parts.append(_table(["option", "value"], [[k, _value(v)] for k, v in config.items()],
                        cls="config", keys=2))  # fmt: skip
    timings = attrs.get("timings") or {}
    parts.append("<h3>Timings (seconds)</h3>")
    parts.append(_table(["step", "seconds"], [[k, _value(v)] for k, v in timings.items()],
                        cls="timings"))  # fmt: skip
    versions = attrs.get("versions") or {}
    parts.append("<h3>Versions</h3>")
    parts.append(_table(["package", "version"], [[k, _value(v)] for k, v in versions.items()],
                        cls="versions", keys=2))  # fmt: skip
    return "".join(parts)


def render(run: zarr.Group, results: str = "") -> str:
    """The page of a run's group (as :func:`mmpipe.io.runs.read_run` returns it)."""
    attrs = _attrs(run)
    summary = attrs.get("summary") or {}
    classes = attrs.get("classes") or []
    run_id = attrs.get("run_id") or run.basename
    sections = [
        _explained_variance(run, summary),
        _pairs(run, summary),
        _heatmaps(summary),
        _retrieval(run, summary),
        _confusions(run, summary, classes),
        _canonical(run, summary),
        _multiview(run, summary),
        _provenance(attrs),
    ]
    title = f"mmpipe run {run_id}"
    lead = f"Dataset <code>{_e(attrs.get('dataset', ''))}</code>"
    if results:
        lead += f", results <code>{_e(results)}</code>"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1><p>{lead}.</p>"
        + "".join(s for s in sections if s)
        + "</body></html>\n"
    )


__all__ = ["alpha", "metric", "render", "report_location", "report_run"]
