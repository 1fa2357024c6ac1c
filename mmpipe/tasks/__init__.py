"""The cross-modal tasks, each one module implementing :class:`~mmpipe.tasks.base.Task`.

:data:`TASKS` is the registry: the scoring step asks every active task for its scorers and
embedders and runs one scoring pass for all of them; a task with a pass of its own runs in
its own step; ``FitResult``, its summary, the results store and the report list the tasks'
results in this order. Adding a task is its module and one line here (CONTRIBUTING.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mmpipe.tasks.base import ScoringRequest, Task, TaskContext
from mmpipe.tasks.classify import Classify
from mmpipe.tasks.logistic import Logistic
from mmpipe.tasks.multiview import Multiview
from mmpipe.tasks.pls import PLS
from mmpipe.tasks.random_features import RandomFeatures
from mmpipe.tasks.retrieval import Retrieval
from mmpipe.tasks.transfer import Transfer

if TYPE_CHECKING:
    from mmpipe.options import FitConfig

TASKS: tuple[Task, ...] = (
    Classify(),
    Transfer(),
    Retrieval(),
    Logistic(),
    RandomFeatures(),
    PLS(),
    Multiview(),
)
"""Every task, in the order of ``FitResult.summary()``."""


def active_tasks(config: FitConfig) -> list[Task]:
    """The registered tasks that ``config`` asks for, in order."""
    return [task for task in TASKS if task.active(config)]


def scoring_tasks(config: FitConfig) -> list[Task]:
    """The active tasks that join the shared scoring pass."""
    return [task for task in active_tasks(config) if not task.own_pass]


def task_named(name: str) -> Task:
    """The registered task called ``name`` (KeyError if none)."""
    for task in TASKS:
        if task.name == name:
            return task
    raise KeyError(name)


__all__ = [
    "TASKS",
    "ScoringRequest",
    "Task",
    "TaskContext",
    "active_tasks",
    "scoring_tasks",
    "task_named",
]
