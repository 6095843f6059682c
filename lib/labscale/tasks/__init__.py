"""The task registry: the study's three domain-adaptation tasks, by name."""

from __future__ import annotations

from ..errors import invalid_choice
from .base import INVALID, SOURCES, Example, MalformedRows, Task, TaskData

_TASK_CLASSES = {
    "entity_resolution": ("entity_resolution", "EntityResolution"),
    "fact_checking": ("fact_checking", "FactChecking"),
    "summarization": ("summarization", "Summarization"),
}

#: task names in the order of the study's Table 2
TASK_NAMES = tuple(_TASK_CLASSES)


def get_task(name: str) -> Task:
    """The task called ``name``; an :class:`~labscale.errors.InvalidParameter` naming the valid ones otherwise."""
    if name not in _TASK_CLASSES:
        raise invalid_choice("task", name, TASK_NAMES)
    import importlib

    module_name, class_name = _TASK_CLASSES[name]
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)()


__all__ = ["INVALID", "SOURCES", "TASK_NAMES", "Example", "MalformedRows", "Task", "TaskData", "get_task"]
