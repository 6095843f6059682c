"""The task registry: the study's domain-adaptation tasks and its value-sensitive tasks, by name."""

from __future__ import annotations

from ..core import INVALID, SOURCES, Example, MalformedRows, TaskData
from ..errors import invalid_choice
from .base import Task

_TASK_CLASSES = {
    # domain adaptation (study §4.1, Table 2)
    "entity_resolution": ("entity_resolution", "EntityResolution"),
    "fact_checking": ("fact_checking", "FactChecking"),
    "summarization": ("summarization", "Summarization"),
    # value-sensitive (study §4.2) and the standard benchmarks the book adds beside them
    "toxicity": ("toxicity", "Toxicity"),
    "bbq": ("bbq", "BBQ"),
    "medqa_tf": ("medqa_tf", "MedQATrueFalse"),
    "qasper": ("qasper", "Qasper"),
    "squad_v2": ("squad_v2", "SquadV2"),
    # the companion study's structured tasks (LoRA vs API fine-tuning)
    "text_to_sql": ("text_to_sql", "TextToSQL"),
    "viggo": ("viggo", "ViGGO"),
    "viggo_nlg": ("viggo", "ViGGONLG"),
}

#: the domain-adaptation tasks, in the order of the study's Table 2 (the default task list of an experiment)
TASK_NAMES = ("entity_resolution", "fact_checking", "summarization")
#: the value-sensitive tasks: bias (toxicity, BBQ), privacy (MedQA true/false), abstention (QASPER, SQuAD 2.0)
VALUE_TASK_NAMES = ("toxicity", "bbq", "medqa_tf", "qasper", "squad_v2")
#: structured tasks of the companion LoRA-vs-GPT-3.5 study: text-to-SQL (Spider) and ViGGO in both directions
STRUCTURED_TASK_NAMES = ("text_to_sql", "viggo", "viggo_nlg")
#: every task, in display order
ALL_TASK_NAMES = TASK_NAMES + VALUE_TASK_NAMES + STRUCTURED_TASK_NAMES


def get_task(name: str) -> Task:
    """The task called ``name``; an :class:`~labscale.errors.InvalidParameter` naming the valid ones otherwise."""
    if name not in _TASK_CLASSES:
        raise invalid_choice("task", name, ALL_TASK_NAMES)
    import importlib

    module_name, class_name = _TASK_CLASSES[name]
    module = importlib.import_module(f"{__name__}.{module_name}")
    return getattr(module, class_name)()


__all__ = [
    "ALL_TASK_NAMES",
    "INVALID",
    "SOURCES",
    "STRUCTURED_TASK_NAMES",
    "TASK_NAMES",
    "VALUE_TASK_NAMES",
    "Example",
    "MalformedRows",
    "Task",
    "TaskData",
    "get_task",
]
