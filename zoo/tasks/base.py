"""The task contract: everything around a model that is not its math.

A model declares its task by name (``task = "detection"`` on the class); the CLI and the
trainer ask that task, never the model, what to do with it:

``build_evaluator(model, meta, spec=None) -> Evaluator``
    The evaluator validation and ``evaluate.py`` use, from the data's metadata. ``spec``
    is the run config's optional top-level ``evaluator:`` node (e.g.
    ``{protocols: [coco, voc07], iou_types: [bbox, segm]}``); its keys are the task's
    ``evaluator_keys``, anything else is refused.
``check_output(predictions, batch)``
    Raises ``ModelOutputError`` (one line) unless ``model.predict(batch)`` returned the
    task's standard form for that batch.
``images(batch, predictions, meta) -> dict[name, (3, H, W) float in [0, 1]]``
    Pictures of a validation batch. ``meta`` is the data's metadata, passed in every
    time, so class names are there on a resumed run too.
``predict(run, options, output) -> list[Path]``
    What ``predict.py run=DIR key=value ...`` does; ``options`` are checked against
    ``predict_options`` (type and range) before anything runs. ``output`` is a folder
    (created on first write); the files written there are returned and printed.
``save_predictions(path, pairs, meta) -> int``
    ``evaluate.py run=DIR save_predictions=PATH``: a predictions file from the
    ``(predictions, batch)`` pairs of the split.
``score_files(options) -> (metrics, plotter)``
    ``evaluate.py task=NAME ...`` on prediction files, no model; ``file_options`` lists
    the keys.

Usage texts of ``predict.py`` and ``evaluate.py`` are generated from these declarations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from zoo.errors import UserError, choices
from zoo.metrics.base import Evaluator

# keys every predict.py mode takes (read by the CLI before the task sees the rest)
COMMON_PREDICT_KEYS = ("run", "ckpt", "device", "output")


class ModelOutputError(UserError):
    """A model's ``predict`` returned something other than its task's standard form."""


# -- key=value options ---------------------------------------------------------------------------
def text_value(v: str) -> str:
    # a shell passes "\n" as two characters; a prompt usually means a newline
    return str(v).replace("\\n", "\n").replace("\\t", "\t")


@dataclass(frozen=True)
class Option:
    """One ``key=value`` option: how to read it, its default and its allowed range.

    ``kind`` is ``int``, ``float``, ``str`` or ``text`` (a string with ``\\n`` escapes);
    ``low``/``high`` bound numbers (``low_open``: strictly above ``low``); ``choices``
    lists allowed strings; ``required`` options have no default; ``nullable`` accepts
    ``null``/``None``. ``metavar`` names the value in usage texts.
    """

    kind: str = "str"
    default: Any = None
    help: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()
    required: bool = False
    nullable: bool = False
    metavar: str = ""

    def usage(self, key: str) -> str:
        meta = ("|".join(self.choices) if self.choices else
                self.metavar or {"int": "N", "float": "X", "text": "TEXT"}.get(self.kind, "VALUE"))
        return f"{key}={meta}" if self.required else f"[{key}={meta}]"

    def range_text(self) -> str:
        lo = "" if self.low is None else (f"> {self.low:g}" if self.low_open else f">= {self.low:g}")
        hi = "" if self.high is None else f"<= {self.high:g}"
        return " and ".join(t for t in (lo, hi) if t)

    def parse(self, key: str, raw: str) -> Any:
        if self.nullable and raw in ("null", "None", ""):
            return None
        if self.kind == "int":
            try:
                value: Any = int(raw)
            except ValueError:
                try:  # 1e8 and 5.0 are whole numbers too
                    number = float(raw)
                except ValueError:
                    number = math.nan
                if not (math.isfinite(number) and number.is_integer()):
                    raise UserError(f"{key} must be a whole number, got '{raw}'") from None
                value = int(number)
        elif self.kind == "float":
            try:
                value = float(raw)
            except ValueError:
                raise UserError(f"{key} must be a number, got '{raw}'") from None
            if not math.isfinite(value):
                raise UserError(f"{key} must be a finite number, got '{raw}'")
        elif self.kind == "text":
            value = text_value(raw)
        else:
            value = str(raw)
        if self.choices and value not in self.choices:
            raise UserError(f"{key}={raw} is not one of {choices(self.choices)}")
        if self.kind in ("int", "float"):
            bad = ((self.low is not None and (value <= self.low if self.low_open else value < self.low))
                   or (self.high is not None and value > self.high))
            if bad:
                raise UserError(f"{key} must be {self.range_text()}, got {raw}")
        if self.kind in ("str", "text") and self.required and not value:
            raise UserError(f"{key}= must not be empty")
        return value


def parse_options(options: Mapping[str, str], spec: Mapping[str, Option], what: str,
                  extra_valid: Sequence[str] = ()) -> dict[str, Any]:
    """Read ``key=value`` strings by ``spec``: unknown keys, wrong types, values out of
    range and missing required keys raise ``UserError`` naming the key and what is
    allowed. ``what`` names the mode in messages ("a detector")."""
    for k in options:
        if k not in spec:
            raise UserError(f"unknown option '{k}' for {what}; valid options: "
                            f"{choices([*spec, *extra_valid])}")
    out: dict[str, Any] = {}
    for k, opt in spec.items():
        if k in options:
            out[k] = opt.parse(k, options[k])
        elif opt.required:
            raise UserError(f"{what} needs {opt.usage(k)}")
        else:
            out[k] = opt.default
    return out


# -- evaluators ----------------------------------------------------------------------------------
class EvaluatorGroup(Evaluator):
    """Several evaluators fed the same predictions: the first one's numbers keep their
    names, the others' are prefixed with ``<name>_`` (``mask_map`` beside ``map``)."""

    def __init__(self, members: Mapping[str, Evaluator]) -> None:
        self.members = dict(members)
        super().__init__()

    def reset(self) -> None:
        for ev in self.members.values():
            ev.reset()

    def update(self, predictions: Any, batch: Any) -> None:
        for ev in self.members.values():
            ev.update(predictions, batch)

    def compute(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, (name, ev) in enumerate(self.members.items()):
            for k, v in ev.compute().items():
                out[k if i == 0 else f"{name}_{k}"] = v
        return out

    def state(self) -> dict[str, Any]:
        return {name: ev.state() for name, ev in self.members.items()}

    def merge(self, states: list[dict[str, Any]]) -> None:
        for name, ev in self.members.items():
            ev.merge([s[name] for s in states])

    def save_plots(self, directory: str | Path) -> list[Path]:
        written: list[Path] = []
        for i, (name, ev) in enumerate(self.members.items()):
            written += ev.save_plots(Path(directory) if i == 0 else Path(directory) / name)
        return written


def evaluator_spec(spec: Any, allowed: Mapping[str, str], task: str) -> dict[str, Any]:
    """The ``evaluator:`` config node as a plain dict, its keys checked."""
    if spec is None:
        return {}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(spec, DictConfig):
            spec = OmegaConf.to_container(spec, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if not isinstance(spec, Mapping):
        raise UserError(f"evaluator: must be a mapping of settings, got {spec!r}")
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        valid = choices(allowed) if allowed else "none (this task has no evaluator settings)"
        raise UserError(f"unknown evaluator setting '{unknown[0]}' for task {task}; valid: {valid}")
    return dict(spec)


def as_list(value: Any, key: str) -> list[str]:
    """``[a, b]``, ``"a,b"`` or ``"a"`` -> ``["a", "b"]``."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, Sequence):
        return [str(v) for v in value]
    raise UserError(f"evaluator.{key} must be a list, got {value!r}")


# -- the task ------------------------------------------------------------------------------------
class Task:
    """Base task: every hook declared, with the default a task without it gets."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""            # who it is for, in usage texts ("detectors")
    predict_options: ClassVar[dict[str, Option]] = {}
    predict_writes: ClassVar[str] = ""   # what lands in output=DIR, for usage texts
    file_options: ClassVar[dict[str, Option]] = {}
    evaluator_keys: ClassVar[dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    # evaluation ---------------------------------------------------------------------------
    def build_evaluator(self, model: Any, meta: Mapping[str, Any], spec: Any = None) -> Evaluator:
        raise NotImplementedError(f"task {self.name} builds no evaluator")

    def check_output(self, predictions: Any, batch: Any) -> None:
        pass

    def save_plots(self, evaluator: Evaluator, directory: Path) -> list[Path]:
        """PNGs beside ``evaluate.py``'s metrics.json: the evaluator's own plots, when its
        class draws any (confusion matrix, PR curves, IoU per class)."""
        return list(evaluator.save_plots(Path(directory)))

    def fail(self, message: str) -> ModelOutputError:
        return ModelOutputError(f"{self.name} model output: {message}")

    # pictures -----------------------------------------------------------------------------
    def images(self, batch: Any, predictions: Any, meta: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        return {}

    # predict.py ---------------------------------------------------------------------------
    def predict(self, run: Any, options: Mapping[str, str], output: Path | None) -> list[Path]:
        raise UserError(f"task {self.name} has no predict.py mode; score the run with "
                        f"evaluate.py run={run.run_dir}")

    def parse_predict(self, options: Mapping[str, str]) -> dict[str, Any]:
        return parse_options(options, self.predict_options, f"predict.py on a {self.name} run",
                             COMMON_PREDICT_KEYS)

    # prediction files ---------------------------------------------------------------------
    def save_predictions(self, path: Path, pairs: Sequence[tuple[Any, Any]],
                         meta: Mapping[str, Any]) -> int:
        raise UserError(f"save_predictions is not supported for task {self.name}")

    def score_files(self, options: Mapping[str, str]) -> tuple[dict[str, Any], Callable[[Path], list[Path]]]:
        raise UserError(f"evaluate.py task={self.name} does not score files")

    # usage --------------------------------------------------------------------------------
    def predict_usage(self) -> str:
        if not self.predict_options:
            return ""
        keys = " ".join(o.usage(k) for k, o in self.predict_options.items())
        return f"{keys}" + (f"  -> {self.predict_writes}" if self.predict_writes else "")

    def file_usage(self) -> str:
        if not self.file_options:
            return ""
        return f"task={self.name} " + " ".join(o.usage(k) for k, o in self.file_options.items())


def write_text(output: Path | None, name: str, text: str) -> list[Path]:
    """Write ``text`` to ``output/name`` (creating the folder) when an output is given."""
    if output is None:
        return []
    path = output_dir(output) / name
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return [path]


def output_dir(output: Path) -> Path:
    """``output=`` of every predict.py mode is a folder; create it (refusing a file)."""
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise UserError(f"output={output} is a file; output= names a folder that predict.py "
                        f"creates and writes its files into")
    output.mkdir(parents=True, exist_ok=True)
    return output


def model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def shape_of(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)} ({str(x.dtype).replace('torch.', '')})"
    if isinstance(x, (list, tuple)):
        return f"a {type(x).__name__} of {len(x)}"
    return f"a {type(x).__name__}"


def encode_input(run: Any, text: str) -> torch.Tensor:
    """``text`` as (1, T) ids of the run's task vocabulary (``input=`` of seq2seq and
    tagging runs), on the model's device."""
    vocab = getattr(run.data, "vocab", None)
    if vocab is None:
        raise UserError("this run's data config has no task vocabulary to encode input with")
    return torch.tensor([vocab.encode(text)], dtype=torch.int64, device=model_device(run.model))
