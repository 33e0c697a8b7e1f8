"""The task registry: one module per task in this package, found by name.

``task_of(model)`` is the task a model declares (``task = "classification"`` on its
class); ``get_task(name)`` looks one up by name (``evaluate.py task=NAME``);
``all_tasks()`` lists them (usage texts). Adding a task is adding a module here that
defines a ``Task`` subclass with a ``name``.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from typing import Any

from zoo.errors import UserError, choices
from zoo.tasks.base import ModelOutputError, Option, Task  # noqa: F401 - the public names


@lru_cache(maxsize=1)
def _registry() -> dict[str, Task]:
    found: dict[str, Task] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for value in vars(module).values():
            if (isinstance(value, type) and issubclass(value, Task) and value.name
                    and value.__module__ == module.__name__):
                if value.name in found:
                    raise RuntimeError(f"two tasks are named {value.name!r}")
                found[value.name] = value()
    return found


def all_tasks() -> list[Task]:
    return list(_registry().values())


def task_names() -> list[str]:
    return list(_registry())


def get_task(name: str) -> Task:
    tasks = _registry()
    if name not in tasks:
        raise UserError(f"unknown task '{name}'; valid tasks: {choices(tasks)}")
    return tasks[name]


def task_of(model: Any) -> Task:
    """The task a model declares with its ``task`` class attribute."""
    name = getattr(model, "task", "") or ""
    if not name:
        raise UserError(f"{type(model).__name__} declares no task (set task = \"...\" on the "
                        f"class; valid tasks: {choices(_registry())})")
    return get_task(name)
