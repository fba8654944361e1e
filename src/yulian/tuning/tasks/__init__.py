"""Fine-tuning tasks, registered by name. Each task lives in its own module and is imported on first use."""

from __future__ import annotations

import importlib

from yulian.tuning.tasks.base import TASK_FILE, Feature, Task, TaskConfig

__all__ = ["TASKS", "TASK_FILE", "Feature", "Task", "TaskConfig", "get_task"]

TASKS: dict[str, str] = {
    "classification": "yulian.tuning.tasks.classification:ClassificationTask",
    "ner": "yulian.tuning.tasks.token_classification:TokenClassificationTask",
    "qa": "yulian.tuning.tasks.qa:QATask",
    "sft": "yulian.tuning.tasks.sft:SFTTask",
}
"""Task name -> "module:Class"; a new task adds one line here and one module."""


def get_task(name: str, config: TaskConfig | None = None) -> Task:
    """The task registered as `name`, configured with `config`."""
    if name not in TASKS:
        import difflib

        close = difflib.get_close_matches(name, TASKS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown task {name!r} (tasks: {', '.join(TASKS)}).{hint}")
    module, _, cls_name = TASKS[name].partition(":")
    cls = getattr(importlib.import_module(module), cls_name)
    task: Task = cls(config)
    return task
