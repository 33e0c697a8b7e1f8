"""ONNX and TorchScript exports of a run's model, each checked against PyTorch on
validation samples (see :mod:`zoo.export` for the formats, :mod:`zoo.export.graphs` for
what each graph computes)."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from zoo.export import ATOL, CHECK_SAMPLES, OPSET, RTOL, ExportMismatch
from zoo.export.graphs import detector_meta, graph_of, kind_of

TORCHVISION_REASON = ("torch.export cannot trace torchvision's detection post-processing "
                      "(proposal and NMS counts depend on the data)")


# --------------------------------------------------------------------------- samples
def validation_batch(data: Any, n: int = CHECK_SAMPLES) -> Any:
    """The first ``n`` samples of the validation split (the first split if none), collated."""
    split = "val" if "val" in data.splits else data.splits[0]
    ds = data.dataset(split)
    if len(ds) == 0:
        from zoo.errors import UserError

        raise UserError(f"the {split} split is empty: nothing to check the export on")
    items = [ds[i] for i in range(min(n, len(ds)))]
    if len(items) == 1:  # two rows, so the batch dimension is not traced as a constant 1
        items = items * 2
    if data.collate_fn is None:  # dict samples: torch's default collate
        from torch.utils.data import default_collate

        return default_collate(items)
    return data.collate_fn(items)


def graph_inputs(model: nn.Module, kind: str, batch: Any) -> tuple[Any, dict[str, Any]]:
    """The example inputs of the graph and what the post-processing needs."""
    from zoo.data.batches import detection_images

    if kind == "tensor":
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, torch.Tensor):
            from zoo.errors import UserError

            raise UserError(f"{type(model).__name__} reads {type(batch).__name__} batches, not "
                            "one input tensor: it has no single-tensor graph to export (its "
                            "weights: format=safetensors)")
        return x, {}
    images = detection_images(batch)
    if kind == "dense_detector":
        from zoo.models.detection.base import resize_batch

        x, _ = resize_batch(images, model.image_size)
        return x, {}
    return images, {}


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def compare(name: str, got: np.ndarray, want: torch.Tensor) -> float:
    """Max |got - want|; raises ExportMismatch beyond ATOL + RTOL * |want|."""
    want_np = _np(want)
    if got.shape != want_np.shape:
        raise ExportMismatch(f"{name}: exported output has shape {got.shape}, PyTorch's "
                             f"{want_np.shape}")
    if got.dtype.kind in "iub" or want_np.dtype.kind in "iub":
        if not np.array_equal(got, want_np):
            raise ExportMismatch(f"{name}: exported integer output differs from PyTorch's")
        return 0.0
    diff = np.abs(got.astype(np.float64) - want_np.astype(np.float64))
    worst = float(diff.max()) if diff.size else 0.0
    if (diff > ATOL + RTOL * np.abs(want_np)).any():
        raise ExportMismatch(f"{name}: exported output differs from PyTorch's by up to "
                             f"{worst:.3g} (tolerance {ATOL:g} + {RTOL:g}*|y|)")
    return worst


def reference_outputs(graph: nn.Module, kind: str, inputs: Any) -> list[list[torch.Tensor]]:
    """PyTorch's outputs as lists of tensors: one list per graph call."""
    if kind == "tensor":
        return [[graph(inputs)]]
    if kind == "dense_detector":
        return [list(graph(inputs))]
    return [[d["boxes"], d["scores"], d["labels"]] for d in graph([im for im in inputs])]


def by_name(names: list[str], outputs: list[Any]) -> list[Any]:
    """Outputs in IO_NAMES order from outputs in ``names`` order."""
    table = dict(zip(names, outputs))
    return [table[n] for n in ("boxes", "scores", "labels")]


def check_report(kind: str, worst: float, n: int, runtime: str) -> dict[str, Any]:
    print(f"{runtime} matches PyTorch on {n} validation samples: max |diff| = {worst:.3g} "
          f"(tolerance {ATOL:g} + {RTOL:g}*|y|)")
    return {"runtime": runtime, "samples": n, "max_abs_diff": worst, "atol": ATOL, "rtol": RTOL}


# --------------------------------------------------------------------------- ONNX
def first_line(e: BaseException) -> str:
    """The first line of what went wrong (torch.onnx wraps torch.export's error: its cause
    says why), without terminal colours."""
    import re

    cause = e.__cause__ or e
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(cause)).strip()
    return (text.splitlines()[0] if text else type(cause).__name__)[:200]


IO_NAMES = {"tensor": (["input"], ["output"]),
            "dense_detector": (["images"], ["boxes", "scores"]),
            # torchvision's own dict order, which differs between its detectors (output_names)
            "torchvision_detector": (["image"], ["boxes", "scores", "labels"])}


def output_names(graph: nn.Module, kind: str, inputs: Any) -> list[str]:
    if kind != "torchvision_detector":
        return IO_NAMES[kind][1]
    return [k for k in graph([inputs[0]])[0] if k in ("boxes", "scores", "labels")]


def _export_dynamo(graph: nn.Module, args: tuple, kind: str, out: Path, task: str) -> None:
    from torch.export import Dim

    batch = Dim("batch", min=1, max=1024)
    dims: dict[int, Any] = {0: batch}
    if task == "language_modelling":
        dims[1] = Dim("tokens", min=1, max=int(getattr(graph.model, "block_size", 1 << 16)))
    names_in, names_out = IO_NAMES[kind]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, args, str(out), dynamo=True, dynamic_shapes=(dims,),
                          input_names=names_in, output_names=names_out, opset_version=OPSET,
                          verbose=False, optimize=True)


def _export_torchscript_based(graph: nn.Module, args: tuple, kind: str, out: Path,
                              names_out: list[str]) -> None:
    names_in = IO_NAMES[kind][0]
    if kind == "torchvision_detector":
        axes = {"image": {1: "height", 2: "width"}, "boxes": {0: "n"}, "scores": {0: "n"},
                "labels": {0: "n"}}
    elif kind == "dense_detector":
        axes = {"images": {0: "batch"}, "boxes": {0: "batch"}, "scores": {0: "batch"}}
    else:
        axes = {"input": {0: "batch"}, "output": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, args, str(out), dynamo=False, input_names=names_in,
                          output_names=names_out, dynamic_axes=axes, opset_version=17)


def export_onnx(model: nn.Module, data: Any, out: Path) -> list[Path]:
    import onnxruntime as ort

    kind = kind_of(model)
    graph = graph_of(model, kind)
    batch = validation_batch(data)
    inputs, _ = graph_inputs(model, kind, batch)
    task = str(getattr(model, "task", ""))
    if kind == "torchvision_detector":
        exporter, note = "torchscript-based", TORCHVISION_REASON
        _export_torchscript_based(graph, ([inputs[0]],), kind, out,
                                  output_names(graph, kind, inputs))
    else:
        exporter, note = "dynamo", ""
        try:
            _export_dynamo(graph, (inputs,), kind, out, task)
        except Exception as e:  # noqa: BLE001 - any tracing failure falls back, and says so
            first = first_line(e)
            exporter, note = "torchscript-based", f"torch.export failed: {first}"
            print(f"note: torch.onnx.export(dynamo=True) could not export {type(model).__name__} "
                  f"({first[:120]}); used the TorchScript-based exporter instead")
            try:
                _export_torchscript_based(graph, (inputs,), kind, out, IO_NAMES[kind][1])
            except Exception as e2:  # noqa: BLE001 - both exporters failed: say so in one line
                raise ExportMismatch(f"neither ONNX exporter could export {type(model).__name__}: "
                                     f"{first_line(e2)}") from None

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    in_name = session.get_inputs()[0].name
    want = reference_outputs(graph, kind, inputs)
    worst, n = 0.0, 0
    names = IO_NAMES[kind][1]
    if kind == "torchvision_detector":
        onnx_names = [o.name for o in session.get_outputs()]
        for im, ref in zip(inputs, want):
            got = by_name(onnx_names, session.run(None, {in_name: _np(im)}))
            for name, g, w in zip(names, got, ref):
                worst = max(worst, compare(name, g, w))
            n += 1
    else:
        got = session.run(None, {in_name: _np(inputs)})
        for name, g, w in zip(names, got, want[0]):
            worst = max(worst, compare(name, g, w))
        n = len(inputs)
    report = check_report(kind, worst, n, "onnxruntime")
    sidecar = out.with_name(out.name + ".json")
    meta = {"kind": kind, "task": task, "model": type(model).__name__,
            "inputs": IO_NAMES[kind][0], "outputs": [o.name for o in session.get_outputs()],
            "exporter": exporter,
            "exporter_note": note, "check": report}
    if kind != "tensor":
        meta.update(detector_meta(model))
    if kind == "tensor":
        meta["input_shape"] = ["batch", *list(inputs.shape[1:])]
    sidecar.write_text(json.dumps(meta, indent=1))
    print(f"onnx ({exporter} exporter): {type(model).__name__} -> {out}")
    return [out, sidecar]


# --------------------------------------------------------------------------- TorchScript
class SingleImage(nn.Module):
    """A torchvision detector as image (3, H, W) -> (boxes, scores, labels), which
    ``torch.jit.trace`` can record (it cannot return a list of dicts)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = self.net([image])[0]
        return d["boxes"], d["scores"], d["labels"]


def export_torchscript(model: nn.Module, data: Any, out: Path) -> list[Path]:
    kind = kind_of(model)
    graph = graph_of(model, kind)
    inputs, _ = graph_inputs(model, kind, validation_batch(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        how = "trace"
        if kind == "torchvision_detector":
            try:  # torchvision's detectors are written to be scripted
                how, scripted = "script", torch.jit.script(graph)
            except Exception as e:  # noqa: BLE001 - a part of the zoo's own that script cannot read
                print(f"note: torch.jit.script could not compile {type(model).__name__} "
                      f"({first_line(e)[:120]}); "
                      "traced it instead (one image per call)")
                how = "trace"
                scripted = torch.jit.trace(SingleImage(graph), (inputs[0],), check_trace=False)
        else:
            scripted = torch.jit.trace(graph, (inputs,), check_trace=False)
        torch.jit.save(scripted, str(out))
        loaded = torch.jit.load(str(out))
    want = reference_outputs(graph, kind, inputs)
    worst = 0.0
    names = IO_NAMES[kind][1]
    if kind == "torchvision_detector":
        got = []
        for im in inputs:
            if how == "trace":
                got.append(list(loaded(im)))
                continue
            _losses, dets = loaded([im])  # a scripted detector returns both
            got.append([dets[0]["boxes"], dets[0]["scores"], dets[0]["labels"]])
    else:
        y = loaded(inputs)
        got = [[y]] if kind == "tensor" else [list(y)]
    for g_list, w_list in zip(got, want):
        for name, g, w in zip(names, g_list, w_list):
            worst = max(worst, compare(name, _np(g), w))
    check_report(kind, worst, len(inputs), "torch.jit.load")
    print(f"torchscript ({how}): {type(model).__name__} -> {out}")
    return [out]
