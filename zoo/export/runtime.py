"""``predict.py run=DIR backend=onnxruntime [onnx=PATH]``: the exported ``model.onnx``
behind the model's ``predict`` interface, so the classification and detection modes run
it unchanged. Its ``model.onnx.json`` says what the graph takes and returns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from zoo.errors import UserError

BACKENDS = ("torch", "onnxruntime")


class OnnxPredictor(nn.Module):
    """``predict(batch)`` in the task's standard form, computed by onnxruntime (CPU).

    No parameters: the task's ``model_device`` sees the CPU, where the inputs stay."""

    task = ""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        from zoo.export import require

        require("onnxruntime")
        import onnxruntime as ort

        self.path = Path(path)
        sidecar = self.path.with_name(self.path.name + ".json")
        if not self.path.is_file():
            raise UserError(f"no exported model at {self.path}; write it with python -m "
                            f"zoo.export run=DIR format=onnx (or give onnx=PATH)")
        if not sidecar.is_file():
            raise UserError(f"{self.path} has no {sidecar.name} beside it (written by "
                            "python -m zoo.export format=onnx)")
        self.meta = json.loads(sidecar.read_text())
        self.kind, self.task = self.meta["kind"], self.meta.get("task", "")
        self.session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _run(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [torch.from_numpy(y) for y in self.session.run(None, {self.input: x.detach().cpu().numpy()})]

    @torch.no_grad()
    def predict(self, batch: Any) -> Any:
        if self.kind == "tensor":
            from zoo.data.batches import inputs_of

            x = batch if isinstance(batch, torch.Tensor) else inputs_of(batch)
            return self._run(x.float())[0]
        from zoo.data.batches import detection_images

        images = detection_images(batch)
        if self.kind == "dense_detector":
            from zoo.export.graphs import finish_dense
            from zoo.models.detection.base import resize_batch

            x, scales = resize_batch(images, int(self.meta["image_size"]))
            boxes, scores = self._run(x)
            return finish_dense(boxes, scores, [tuple(im.shape[-2:]) for im in images], scales,
                                self.meta)
        from zoo.export.onnx import by_name

        out = []
        for im in images:
            boxes, scores, labels = by_name(self.outputs, self._run(im))
            out.append({"boxes": boxes, "scores": scores, "labels": labels})
        return out


def predictor(run: Any, options: dict[str, Any]) -> Any:
    """The run's model (``backend=torch``) or its exported ONNX graph (``onnxruntime``);
    ``options["onnx"]`` or ``RUN/export/model.onnx``."""
    if options.get("backend", "torch") == "torch":
        return run.model
    path = Path(options.get("onnx") or Path(run.run_dir) / "export" / "model.onnx").expanduser()
    p = OnnxPredictor(path)
    task = getattr(run.model, "task", "")
    if p.task and task and p.task != task:
        raise UserError(f"{path} was exported from a {p.task} model; this run is {task}")
    return p
