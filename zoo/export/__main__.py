"""``python -m zoo.export run=DIR format=onnx|torchscript|safetensors|hf [output=PATH]
[ckpt=PATH]``: see :mod:`zoo.export`."""

from __future__ import annotations

import sys

USAGE = """\
usage: python -m zoo.export run=DIR format=onnx|torchscript|safetensors|hf [output=PATH] [ckpt=PATH]

  run=DIR        a training run directory (its best.pt, else last.pt)
  ckpt=PATH      another checkpoint of that run
  format=onnx         model.onnx + model.onnx.json, checked by onnxruntime on validation
                      samples (classifiers, segmenters, language models, YOLOv1/v2, SSD,
                      Faster R-CNN); predict.py run=DIR backend=onnxruntime runs it
  format=torchscript  model.pt (torch.jit.trace, or script for torchvision detectors)
  format=safetensors  model.safetensors + config.yaml (the resolved config) beside it
  format=hf           a transformers save_pretrained folder (model=gpt, model=deepseek)
  output=PATH    where to write (default RUN/export/model.onnx|model.pt|model.safetensors|hf/)

exit status: 0 written and checked   1 the export does not reproduce PyTorch   2 a mistake
"""

KEYS = {"run", "format", "output", "ckpt"}


def main(argv: list[str] | None = None) -> int:
    from zoo.cli import _guard, _options
    from zoo.errors import UserError

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or any(a in ("-h", "--help", "help") for a in argv):
        print(USAGE)
        return 0 if argv else 2

    def run() -> int:
        from zoo.export import check_format, export_run

        opts = _options(argv, KEYS, "usage: python -m zoo.export --help")
        if not opts.get("run"):
            raise UserError("give run=DIR, a training run directory")
        fmt = check_format(opts.get("format"))
        written = export_run(opts["run"], fmt, opts.get("output") or None, opts.get("ckpt") or None)
        print("wrote " + ", ".join(str(p) for p in written))
        return 0

    return _guard(run)


if __name__ == "__main__":
    sys.exit(main())
