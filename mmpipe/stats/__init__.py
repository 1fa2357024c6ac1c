"""One-pass blocked sufficient statistics and the fold plans they are grouped by."""

from mmpipe.stats.blocked import Layout, PassStatistics, compute_statistics, statistics_graph
from mmpipe.stats.folds import FoldPlan, given_plan, holdout_plan, kfold_plan
from mmpipe.stats.moments import Moments, merge, merge_all

__all__ = [
    "FoldPlan",
    "Layout",
    "Moments",
    "PassStatistics",
    "compute_statistics",
    "given_plan",
    "holdout_plan",
    "kfold_plan",
    "merge",
    "merge_all",
    "statistics_graph",
]
