"""Train the default configs of a model family and write its quality tables.

    python benchmarks/quality.py                                  # family=models
    python benchmarks/quality.py family=detection models=yolo,ssd
    python benchmarks/quality.py family=sequence models=gpt lm_seconds=300
    python benchmarks/quality.py family=classic -- data.num_samples=400   # extra overrides
    python benchmarks/quality.py family=models models=lenet --quick       # a smoke run
    python benchmarks/quality.py family=segmentation rows=unet_dice       # one row by run name

Families (``FAMILIES``): ``models`` (each model's default config; the README's
``quality-table``), ``classic`` (linear models' lessons: closed form vs gradient descent
vs ridge vs lasso, logistic regression vs MLP), ``sequence`` (reversal, language models
on one time budget, word2vec, word order, KV-cache speed, captioning, BERT) and
``detection`` (the detectors on shapes with inference speed; the README's
``detection-table``), ``instance`` (Mask R-CNN's box and mask AP on shapes; the
README's ``instance-table``), ``segmentation`` (FCN, U-Net, SegNet, PSPNet on
shapes_seg, then U-Net with each loss; the README's ``segmentation-table``),
``translation`` (the two-domain models: translation error beside the do-nothing
baseline, reconstruction ratios; the README's ``translation-table``) and ``generative``
(modes covered, Fréchet distance, label accuracy, a VAE's small-detail error; the
README's ``generative-table``). A new family is one more entry in ``families()``.

Each row is ``python train.py model=M <overrides>`` in its own run directory, then
``python evaluate.py run=DIR split=S``. A family's tables go to
``benchmarks/results/<name>.md`` (``quality``, ``classic``, ``sequence``, ``detection``,
``instance_segmentation``, ``segmentation``) and, where README.md has the family's markers
(``<!-- quality-table -->`` ... ``<!-- /quality-table -->``), between them. With
``models=`` (model names, or a row's run name such as ``gan_d10`` for that row alone)
only the rows measured are replaced, in tables of the same columns; rows not
re-measured keep their numbers. ``--quick`` trains each row with ``trainer=debug`` (a few
steps) and writes only where ``--results``/``--readme`` point. Runs use one torch thread
each unless ``OMP_NUM_THREADS`` says otherwise, so numbers compare on a shared machine.
Never part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

Row = dict[str, Any]
Column = tuple[str, Callable[[Row], str]]


# -------------------------------------------------------------------------- running one row
@dataclass
class Experiment:
    """One row: ``train.py model=<model> <overrides>``, scored on ``split``. ``name`` (the
    run directory; default: model) lets later rows use this run (``{runs}/<name>``)."""

    model: str
    overrides: list[str] = field(default_factory=list)
    split: str = "test"
    name: str = ""

    @property
    def run_name(self) -> str:
        return self.name or self.model


def _last_line(proc: subprocess.CompletedProcess) -> str:
    lines = (proc.stderr or "").strip().splitlines() or (proc.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit status {proc.returncode}"


def train_and_eval(exp: Experiment, runs: Path, extra: list[str], timeout: float) -> Row:
    """Train and evaluate one experiment; the row holds what every table may show."""
    run = runs / exp.run_name
    overrides = [o.format(runs=runs) for o in exp.overrides]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    # shown as written (a run path would make every row's key new)
    row: Row = {"model": exp.model, "overrides": " ".join(exp.overrides).replace("{runs}", "RUNS"),
                "run": run, "split": exp.split}
    t0 = time.perf_counter()
    if (run / "metrics.json").is_file():          # --resume: a finished row is only scored again
        command = None
    elif (run / "checkpoints" / "last.pt").is_file():  # --resume: an interrupted row goes on
        command = [sys.executable, str(ROOT / "train.py"), f"resume={run}", "trainer.progress=false"]
    else:
        command = [sys.executable, str(ROOT / "train.py"), f"model={exp.model}", *overrides, *extra,
                   f"hydra.run.dir={run}", "trainer.progress=false"]
    if command is not None:
        try:
            proc = subprocess.run(command, check=False, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired:
            return {**row, "wall_s": timeout, "error": "timeout (python benchmarks/quality.py --resume "
                    f"--runs {runs} ... goes on from the last checkpoint)"}
        if proc.returncode != 0:
            return {**row, "error": _last_line(proc)}
    row["wall_s"] = time.perf_counter() - t0
    summary = json.loads((run / "metrics.json").read_text())
    row.update(steps=summary.get("steps"), train_s=summary.get("train_time_s"),
               monitor=summary.get("monitor"))
    row["data"] = _choice(run, "data")
    ev = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), f"run={run}",
                         f"split={exp.split}", "device=cpu"],
                        check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    out = run / f"eval_{exp.split}" / "metrics.json"
    if ev.returncode != 0 or not out.is_file():
        return {**row, "error": _last_line(ev)}
    row["metrics"] = json.loads(out.read_text())
    row["params"] = _parameters(run)
    return row


def _choice(run: Path, group: str) -> str:
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    return str(cfg.get("run_info", {}).get("choices", {}).get(group, "?"))


def _parameters(run: Path) -> int:
    from zoo.engine.config import build
    from zoo.engine.run import load_run_config

    return sum(p.numel() for p in build(load_run_config(run).model, "model").parameters())


# -------------------------------------------------------------------------- extra measurements
def zero_weights(row: Row) -> None:
    """How many of a linear regression's weights are exactly zero (the lasso's point)."""
    import torch

    state = torch.load(row["run"] / "checkpoints" / "best.pt", weights_only=True)["model"]
    if row["model"] == "linear_regression" and "linear.weight" in state:
        w = state["linear.weight"].flatten()
        row["zero_weights"] = f"{int((w == 0).sum())}/{w.numel()}"


def inference_speed(row: Row) -> None:
    """Images/s of ``predict`` over the split, in evaluation batches after one warm-up."""
    import torch

    from zoo.engine.config import build
    from zoo.engine.run import checkpoint_path, load_model_weights, load_run_config

    cfg = load_run_config(row["run"])
    data = build(cfg.data, "data")
    model = build(cfg.model, "model")
    load_model_weights(model, checkpoint_path(row["run"], None))
    model.eval()
    ds = data.dataset(row["split"])
    bs = data.eval_batch_size
    batches = [data.collate_fn([ds[j] for j in range(i, min(i + bs, len(ds)))])
               for i in range(0, len(ds), bs)]
    with torch.no_grad():
        model.predict(batches[0])
        t0 = time.perf_counter()
        for b in batches:
            model.predict(b)
        row["images_per_s"] = len(ds) / (time.perf_counter() - t0)


def kv_cache_rows(new_tokens: int = 200) -> list[list[str]]:
    """GPT generation speed with and without the KV cache (same greedy output)."""
    import torch

    from zoo.models.transformer.gpt import GPT

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(0)
    model = GPT(vocab_size=128, block_size=256, n_layer=4, n_head=4, n_embd=128).eval()
    prompt = torch.randint(5, 100, (1, 8))
    outs, rows = {}, []
    for use_cache in (True, False):
        model.generate(prompt, 5, temperature=0.0, use_cache=use_cache)  # warm-up
        t0 = time.perf_counter()
        outs[use_cache] = model.generate(prompt, new_tokens, temperature=0.0, use_cache=use_cache)
        dt = time.perf_counter() - t0
        rows.append(["yes" if use_cache else "no", str(new_tokens), f"{dt:.2f}",
                     f"{new_tokens / dt:.0f}", str(bool(torch.equal(outs[True], outs[use_cache])))])
    return rows


# -------------------------------------------------------------------------- tables
def fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def metric(key: str, digits: int = 4, title: str | None = None) -> Column:
    """The column ``title`` (default: the key) showing ``metrics[key]`` to ``digits`` places."""
    return title or key, lambda r: fmt(r.get("metrics", {}).get(key), digits)


@dataclass
class Section:
    """One markdown table. ``columns`` turn a row into cells; the first ``key_columns``
    cells identify a row when a partial run merges into an existing table. ``measure``
    replaces training for tables that time something else (cells directly)."""

    title: str | None
    columns: list[Column]
    experiments: list[Experiment] = field(default_factory=list)
    key_columns: int = 1
    target: str = ""
    after: Callable[[Row], None] | None = None
    measure: Callable[[], list[list[str]]] | None = None
    name: str = ""            # selects a measured section with models=<name>

    def header(self) -> str:
        names = [c[0] for c in self.columns]
        return "| " + " | ".join(names) + " |\n|" + "---|" * len(names)

    def failed(self, row: Row) -> list[str]:
        cells = [c[1](row) if i < self.key_columns else "" for i, c in enumerate(self.columns)]
        cells[self.key_columns] = f"failed: {row.get('error', '?')[:80]}"
        return cells

    def cells(self, row: Row) -> list[str]:
        return self.failed(row) if "error" in row else [c[1](row) for c in self.columns]

    def render(self, rows: list[list[str]]) -> str:
        parts = [f"### {self.title}", ""] if self.title else []
        if self.target:
            parts += [f"Target: {self.target}", ""]
        lines = [self.header()] + ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(parts + lines) + "\n"


@dataclass
class Family:
    sections: list[Section]
    preface: str
    results: str                  # benchmarks/results/<results>.md
    marker: str | None = None     # README.md block <!-- marker --> ... <!-- /marker -->


def _overrides(r: Row) -> str:
    return r.get("overrides") or "default"


def _wall(r: Row) -> str:
    return f"{r.get('wall_s', 0):.0f} s"


def _train_time(r: Row) -> str:
    return f"{r.get('train_s') or 0:.0f} s"


def _params(r: Row) -> str:
    return f"{r['params']:,}" if "params" in r else "–"


MODELS_COLUMNS: list[Column] = [
    ("model", lambda r: r["model"]), ("data", lambda r: r.get("data", "?")),
    ("metric", lambda r: str(r.get("monitor"))), ("split", lambda r: r["split"]),
    ("value", lambda r: fmt(r.get("metrics", {}).get(r.get("monitor")))),
    ("wall time", _wall), ("parameters", _params),
]

CLASSIC_COLUMNS: list[Column] = [
    ("model", lambda r: r["model"]), ("data", lambda r: r.get("data", "?")),
    ("overrides", lambda r: " ".join(o for o in r["overrides"].split()
                                     if not o.startswith(("data=", "logger="))) or "(default)"),
    metric("accuracy", title="test accuracy"),
    metric("mse", title="test MSE"),
    metric("r2", title="test R²"),
    ("zero weights", lambda r: r.get("zero_weights", "–")), ("wall", _wall),
]

DETECTION_TARGET_MAP50 = {"yolo": 0.8, "yolov1": 0.6, "ssd": 0.6, "faster_rcnn": 0.6}
DETECTION_TIME_LIMIT_S = 15 * 60


def _met(r: Row) -> str:
    target = DETECTION_TARGET_MAP50.get(r["model"])
    if target is None:
        return "-"
    ok = r["metrics"]["map_50"] >= target and (r.get("wall_s") or 0) <= DETECTION_TIME_LIMIT_S
    return "yes" if ok else "no"


DETECTION_COLUMNS: list[Column] = [
    ("model", lambda r: r["model"]),
    ("params", lambda r: f"{r['params'] / 1e6:.2f} M" if "params" in r else "–"),
    ("steps", lambda r: str(r.get("steps"))),
    ("train time", lambda r: f"{r.get('wall_s', 0) / 60:.1f} min"),
    metric("map", 3, "mAP"),
    metric("map_50", 3, "mAP@0.5"),
    metric("map_75", 3, "mAP@0.75"),
    metric("voc07_map", 3, "VOC07 AP"),
    ("inference img/s", lambda r: f"{r.get('images_per_s', 0):.0f}"),
    ("target mAP@0.5", lambda r: str(DETECTION_TARGET_MAP50.get(r["model"], "-"))),
    ("met", _met),
]


INSTANCE_TARGET_MASK_MAP50 = {"mask_rcnn": 0.6}
INSTANCE_TIME_LIMIT_S = 10 * 60


def _instance_met(r: Row) -> str:
    target = INSTANCE_TARGET_MASK_MAP50.get(r["model"])
    if target is None:
        return "-"
    ok = (r["metrics"]["mask_map_50"] >= target
          and (r.get("train_s") or r.get("wall_s") or 0) <= INSTANCE_TIME_LIMIT_S)
    return "yes" if ok else "no"


INSTANCE_COLUMNS: list[Column] = [
    ("model", lambda r: r["model"]),
    ("params", lambda r: f"{r['params'] / 1e6:.2f} M" if "params" in r else "–"),
    ("steps", lambda r: str(r.get("steps"))),
    ("train time", lambda r: f"{(r.get('train_s') or r.get('wall_s') or 0) / 60:.1f} min"),
    metric("map", 3, "box mAP"),
    metric("map_50", 3, "box mAP@0.5"),
    metric("mask_map", 3, "mask mAP"),
    metric("mask_map_50", 3, "mask mAP@0.5"),
    metric("mask_map_75", 3, "mask mAP@0.75"),
    metric("mask_map_small", 3, "mask mAP small"),
    ("inference img/s", lambda r: f"{r.get('images_per_s', 0):.0f}"),
    ("target mask mAP@0.5", lambda r: str(INSTANCE_TARGET_MASK_MAP50.get(r["model"], "-"))),
    ("met", _instance_met),
]


SEGMENTATION_TARGET_MIOU = 0.85
SEGMENTATION_TIME_LIMIT_S = 10 * 60
SEGMENTATION_MODELS = ("fcn", "unet", "segnet", "pspnet")
SEGMENTATION_LOSSES = ("ce", "dice", "ce_dice", "edge_weighted_ce")


def _seg_met(r: Row) -> str:
    ok = (r["metrics"]["miou"] >= SEGMENTATION_TARGET_MIOU
          and (r.get("train_s") or 0) <= SEGMENTATION_TIME_LIMIT_S)
    return "yes" if ok else "no"


def _seg_loss(r: Row) -> str:
    return next((o.split("=", 1)[1] for o in r["overrides"].split() if o.startswith("model.loss=")), "ce")


SEGMENTATION_METRICS: list[Column] = [
    metric("miou", 3, "mIoU"),
    metric("mdice", 3, "mean Dice"),
    metric("small_object_iou", 3, "small-object IoU"),
    metric("pixel_accuracy", 3, "pixel accuracy"),
]

SEGMENTATION_COLUMNS: list[Column] = [
    ("model", lambda r: r["model"]), *SEGMENTATION_METRICS,
    ("params", lambda r: f"{r['params'] / 1e6:.2f} M" if "params" in r else "–"),
    ("steps", lambda r: str(r.get("steps"))),
    ("train time", lambda r: f"{(r.get('train_s') or 0) / 60:.1f} min"),
    ("met (mIoU >= 0.85 in <= 10 min)", _seg_met),
]

SEGMENTATION_LOSS_COLUMNS: list[Column] = [
    ("model", lambda r: r["model"]), ("loss", _seg_loss), *SEGMENTATION_METRICS,
    ("steps", lambda r: str(r.get("steps"))),
    ("train time", lambda r: f"{(r.get('train_s') or 0) / 60:.1f} min"),
]


def segmentation_family(loss_model: str = "unet") -> Family:
    """The four semantic segmenters at their defaults, then one model trained with each
    loss on the same budget (the default epochs) and scored on the same split."""
    threads = os.environ.get("OMP_NUM_THREADS", "1")
    return Family(
        preface=("Semantic segmentation on the synthetic `shapes_seg` validation split (200 images, "
                 "background + 3 shapes, objects 6%-50% of the side across), default configs: U-Net "
                 "and SegNet decode to full resolution on 64 px scenes, the output-stride-8 models "
                 "see the same scenes larger, FCN-8s at 96 px and PSPNet at 128 px "
                 "(`benchmarks/segmentation_bound.py`: at 64 px stride 8 alone caps mIoU at 0.87). "
                 f"Torch threads per run: {threads}. Small "
                 "objects: ground-truth connected components below 1% of the image, IoU against the "
                 "predicted components that touch them, averaged over objects."),
        results="segmentation", marker="segmentation-table",
        sections=[
            Section("Models (default configs)", SEGMENTATION_COLUMNS,
                    [Experiment(m, split="val") for m in SEGMENTATION_MODELS],
                    target=f"mIoU >= {SEGMENTATION_TARGET_MIOU} within 10 minutes of training"),
            Section(f"Losses ({loss_model}, same training budget and data)", SEGMENTATION_LOSS_COLUMNS,
                    [Experiment(loss_model, [f"model.loss={k}"], split="val", name=f"{loss_model}_{k}")
                     for k in SEGMENTATION_LOSSES], key_columns=2,
                    target="does plain pixel CE favour large regions? compare small-object IoU"),
        ])


def sequence_columns(keys: list[str]) -> list[Column]:
    return ([("model", lambda r: r["model"]), ("overrides", _overrides)]
            + [metric(k) for k in keys]
            + [("steps", lambda r: str(r.get("steps"))), ("train time", _train_time),
               ("parameters", _params)])


def sequence_family(lm_seconds: int, lm_steps: int) -> Family:
    budget = [f"trainer.max_time={lm_seconds}", f"trainer.max_steps={lm_steps}"]
    pre = "{runs}/bert_pretrain/checkpoints/best.pt"
    return Family(preface="Sequence models, default configs unless stated.", results="sequence",
                  sections=[
        Section("Sequence reversal (data=reverse, lengths 3-10, test split)",
                sequence_columns(["exact_match", "token_accuracy"]),
                [Experiment("transformer"), Experiment("seq2seq_lstm")], key_columns=2,
                target="exact match >= 0.99"),
        Section(f"Character language models on pydoc_data.topics ({lm_seconds} s each, test split)",
                sequence_columns(["bits_per_char", "perplexity", "loss"]),
                [Experiment(m, budget) for m in ("gpt", "lstm", "rnn")], key_columns=1,
                target="GPT below the LSTM of the same size and time budget"),
        Section("word2vec on the planted-cluster corpus (20 clusters x 8 words)",
                sequence_columns(["neighbour_recall", "top1_accuracy"]),
                [Experiment("word2vec_cbow", split="val"),
                 Experiment("word2vec_skipgram", split="val"),
                 Experiment("word2vec_skipgram", ["model.objective=softmax"], "val",
                            name="word2vec_skipgram_softmax")], key_columns=2,
                target="neighbour recall >= 0.9"),
        Section("Word order matters (data=order, test split)", sequence_columns(["accuracy"]),
                [Experiment("lstm_classifier"), Experiment("bow_classifier")], key_columns=2,
                target="LSTM near 1.0, bag-of-words near chance (0.5)"),
        Section("GPT generation speed (4 layers, 128 dims, 8-token prompt, batch 1)",
                [("KV cache", lambda r: ""), ("new tokens", lambda r: ""), ("seconds", lambda r: ""),
                 ("tokens/s", lambda r: ""), ("identical output", lambda r: "")],
                measure=kv_cache_rows, name="kvcache"),
        Section("Captioning shapes scenes (data=shapes_captions, test split)",
                sequence_columns(["exact_match", "token_accuracy"]),
                [Experiment("captioning_lstm"),
                 Experiment("captioning_lstm", ["model.image_every_step=false"],
                            name="captioning_lstm_paper")], key_columns=2,
                target="exact match >= 0.8 (default)"),
        Section("BERT pre-training (pydoc_bert, test split)",
                sequence_columns(["loss", "token_accuracy", "nsp_accuracy"]),
                [Experiment("bert", name="bert_pretrain")], key_columns=2,
                target="masked-token accuracy well above chance"),
        Section("BERT fine-tuning on shuffled-words detection (test split)",
                sequence_columns(["accuracy", "macro_f1"]),
                [Experiment("bert_finetune", [f"init_from={pre}"], name="bert_ft_pretrained"),
                 Experiment("bert_finetune", name="bert_ft_scratch")], key_columns=2,
                target="pre-trained encoder beats training from scratch"),
    ])


def translation_family() -> Family:
    """The two-domain models on two_domains (test split), each capped at 8 minutes of
    training (trainer.max_time) and given a step count that fits it on a loaded machine."""
    cap = "trainer.max_time=480"
    translate = [metric("translation_error", 3, "translation error"),
                 metric("translation_error_baseline", 3, "do-nothing baseline")]

    def met_half(r: Row) -> str:
        m = r.get("metrics", {})
        if "translation_error" not in m:
            return "–"
        return "yes" if m["translation_error"] <= 0.5 * m["translation_error_baseline"] else "no"

    def met_ratio(r: Row) -> str:
        v = r.get("metrics", {}).get("reconstruction_ratio")
        return "–" if v is None else ("yes" if v < 0.7 else "no")

    tail = [metric("frechet_distance_a", 0, "FD A"),
            metric("frechet_distance_b", 0, "FD B"),
            ("steps", lambda r: str(r.get("steps"))), ("train time", _train_time),
            ("parameters", _params)]
    return Family(
        preface=("Image translation and generator inversion on the two-domain digits "
                 "(`data=two_domains`, test split: 512 items), torch threads per run: "
                 f"{os.environ.get('OMP_NUM_THREADS', '1')}. Errors are mean absolute pixel "
                 "differences in [-1, 1] against the paired ground truth; FD is the Fréchet "
                 "distance on the features of a classifier trained on each domain's real images. "
                 "Measured on a shared, loaded machine: step times are several times those of "
                 "2 idle cores, so each run is shorter than its default config."),
        results="translation", marker="translation-table",
        sections=[
            Section("A -> B translation (target for CycleGAN: error <= half the baseline)",
                    [("model", lambda r: r["model"]), ("overrides", _overrides), *translate,
                     metric("cycle_error", 3, "cycle error"),
                     metric("translation_error_optimised", 3, "A->B by optimised z"),
                     ("<= half", met_half), *tail],
                    [Experiment("cyclegan", ["trainer.max_steps=500", cap]),
                     Experiment("cyclegan", ["trainer.max_steps=500", "model.identity=0", cap],
                                name="cyclegan_no_identity"),
                     Experiment("swap_autoencoder", ["trainer.max_steps=800", cap]),
                     Experiment("cogan", ["trainer.max_steps=500", "model.invert_steps=50", cap])],
                    key_columns=2),
            Section("Inverting a generator (target for BiGAN: reconstruction ratio < 0.7)",
                    [("model", lambda r: r["model"]), ("overrides", _overrides),
                     metric("reconstruction_ratio", 3, "ratio, real x"),
                     metric("reconstruction_ratio_generated", 3, "ratio, G's own samples"),
                     metric("reconstruction_ratio_optimised", 3, "ratio, optimised z"),
                     ("< 0.7", met_ratio), *tail],
                    [Experiment("bigan"),
                     Experiment("bigan", ["model.cycle_weight=0"], name="bigan_pure"),
                     Experiment("inversion", ["trainer.max_steps=500", "model.gan_steps=350",
                                              "model.optimise_steps=50", cap])],
                    key_columns=2),
        ])


CLASSIC_ROWS = [
    ("linear_regression", "regression", []),
    ("linear_regression", "regression", ["model.solver=gd"]),
    ("linear_regression", "regression", ["model.l2=10"]),
    ("linear_regression", "regression", ["model.solver=gd", "model.l1=20"]),
    # more features (60) than training samples (30): only ridge or the lasso make sense
    ("linear_regression", "regression", ["data.num_samples=50", "data.num_features=60"]),
    ("linear_regression", "regression", ["data.num_samples=50", "data.num_features=60",
                                         "model.l2=1"]),
    ("linear_regression", "regression", ["data.num_samples=50", "data.num_features=60",
                                         "model.solver=gd", "model.l1=5", "data.batch_size=64"]),
    ("logistic_regression", "xor", []),
    ("mlp", "xor", []),
    ("logistic_regression", "moons", []),
    ("mlp", "moons", []),
]

MODELS_ROWS = ("logistic_regression", "linear_regression", "mlp", "lenet", "alexnet", "vgg16",
               "resnet18", "resnet34", "resnet50", "squeezenet", "mobilenet_v2", "shufflenet_v2")


# -------------------------------------------------------------------------- generative
def small_detail(row: Row) -> None:
    """A VAE on shape images: reconstruction error on the pixels of small shapes vs large
    ones (the median area splits them) and on the background, per pixel in [0, 1] units."""
    import torch

    from zoo.engine.config import build
    from zoo.engine.run import checkpoint_path, load_model_weights, load_run_config

    cfg = load_run_config(row["run"])
    data = build(cfg.data, "data")
    model = build(cfg.model, "model")
    if not hasattr(model, "reconstruct") or not hasattr(data, "object_masks"):
        return
    load_model_weights(model, checkpoint_path(row["run"], None))
    model.eval()
    images, _, masks = data.render(row["split"])
    with torch.no_grad():
        rec = torch.cat([model.reconstruct(images[i:i + 250]) for i in range(0, len(images), 250)])
    err = (rec - images).pow(2).mean(1)  # (N, H, W)
    area = masks.flatten(1).sum(1)
    small = area <= area.median()
    for name, pick in (("small", small), ("large", ~small)):
        m = masks[pick]
        row[f"mse_{name}"] = float(err[pick][m].mean())
    row["mse_background"] = float(err[~masks].mean())


GENERATIVE_TARGETS = {"gan": ("modes_covered", 8, "high_quality_fraction", 0.8),
                      "ddpm": ("modes_covered", 8, "high_quality_fraction", 0.8),
                      "cgan": ("label_accuracy", 0.9, None, None),
                      "text_gan": ("label_accuracy", 0.7, None, None)}


def _gen_target(r: Row) -> str:
    t = GENERATIVE_TARGETS.get(r["model"]) if r.get("overrides") in ("", None) else None
    if t is None:
        return "-"
    a, av, b, bv = t
    return f"{a} >= {av}" + (f", {b} >= {bv}" if b else "")


def _gen_met(r: Row) -> str:
    t = GENERATIVE_TARGETS.get(r["model"]) if r.get("overrides") in ("", None) else None
    if t is None:
        return "-"
    m = r.get("metrics", {})
    a, av, b, bv = t
    ok = m.get(a, -1) >= av and (b is None or m.get(b, -1) >= bv)
    return "yes" if ok else "no"


def _row_value(key: str, digits: int = 4) -> Column:
    return key, lambda r: fmt(r.get(key), digits)


GENERATIVE_COLUMNS: list[Column] = [
    ("model", lambda r: r["model"]), ("data", lambda r: r.get("data", "?")),
    ("overrides", _overrides),
    metric("modes_covered", 0), metric("high_quality_fraction", 3),
    metric("frechet_distance", 1), metric("label_accuracy", 3), metric("sharpness_ratio", 3),
    _row_value("mse_small"), _row_value("mse_large"), _row_value("mse_background"),
    ("steps", lambda r: str(r.get("steps"))), ("train time", _train_time),
    ("target", _gen_target), ("met", _gen_met),
]

GENERATIVE_ROWS = [
    Experiment("gan"),
    Experiment("gan", ["model.d_steps=10", "trainer.max_steps=1000"], name="gan_d10"),
    # the notes' warning without the R1 penalty that hides it: D ten steps ahead of G
    # against one, at the same number of generator steps
    Experiment("gan", ["model.d_steps=10", "model.r1_gamma=0", "trainer.max_steps=1000"],
               name="gan_d10_plain"),
    Experiment("gan", ["model.d_steps=1", "model.r1_gamma=0", "trainer.max_steps=1000"],
               name="gan_d1_plain"),
    Experiment("gan", ["model.d_steps=10", "model.r1_gamma=0", "trainer.max_steps=3000"],
               name="gan_d10_plain_3k"),
    Experiment("gan", ["model.d_steps=1", "model.r1_gamma=0", "trainer.max_steps=3000"],
               name="gan_d1_plain_3k"),
    Experiment("ddpm"), Experiment("dcgan"),
    Experiment("dcgan", ["data=shape_images"], name="dcgan_shapes"),
    Experiment("cgan"), Experiment("text_gan"), Experiment("vae"),
    Experiment("vae", ["data=shape_images"], name="vae_shapes"),
]


def families(args: argparse.Namespace) -> dict[str, Family]:
    return {
        "models": Family(
            preface=(f"Measured with `python benchmarks/quality.py` ({os.cpu_count()} CPU cores, "
                     f"torch threads per run: {os.environ.get('OMP_NUM_THREADS', '1')}), "
                     f"{time.strftime('%Y-%m-%d')} (training then `evaluate.py split=test`; "
                     "wall times are of training)."),
            results="quality", marker="quality-table",
            sections=[Section(None, MODELS_COLUMNS, [Experiment(m) for m in MODELS_ROWS])]),
        "classic": Family(
            preface="The linear models' lessons through train.py / evaluate.py (test split).",
            results="classic",
            sections=[Section(None, CLASSIC_COLUMNS,
                              [Experiment(m, [f"data={d}", "logger=none", *o],
                                          name=f"{i:02d}_{m}_{d}")
                               for i, (m, d, o) in enumerate(CLASSIC_ROWS)],
                              key_columns=3, after=zero_weights)]),
        "sequence": sequence_family(args.lm_seconds, args.lm_steps),
        "segmentation": segmentation_family(),
        "translation": translation_family(),
        "detection": Family(
            preface=("Detection on the synthetic shapes validation split (500 images, 128 px, "
                     "5 classes), default configs, torch threads per run: "
                     f"{os.environ.get('OMP_NUM_THREADS', '1')}."),
            results="detection", marker="detection-table",
            sections=[Section(None, DETECTION_COLUMNS,
                              [Experiment(m, split="val")
                               for m in ("yolo", "yolov1", "ssd", "faster_rcnn")],
                              after=inference_speed)]),
        "instance": Family(
            preface=("Instance segmentation on the synthetic shapes validation split (500 images, "
                     "128 px, 5 classes, instance masks), default configs; box and mask AP are "
                     "COCO's (`map`, `mask_map`, ...), torch threads per run: "
                     f"{os.environ.get('OMP_NUM_THREADS', '1')}."),
            results="instance_segmentation", marker="instance-table",
            sections=[Section(None, INSTANCE_COLUMNS, [Experiment("mask_rcnn", split="val")],
                              after=inference_speed)]),
        "generative": Family(
            preface=("Generative models, default configs, scored on the test split (2-D: 2,500 "
                     "samples; images: as many samples as real test images, Fréchet distance on "
                     "the domain classifier's 64 features). Measured on a shared, loaded machine "
                     f"(torch threads per run: {os.environ.get('OMP_NUM_THREADS', '1')}): train "
                     "times are inflated. mse_small / mse_large: a VAE's reconstruction error on "
                     "the pixels of small vs large shapes (per pixel, [0, 1] units)."),
            results="generative", marker="generative-table",
            sections=[Section(None, GENERATIVE_COLUMNS, GENERATIVE_ROWS, key_columns=3,
                              after=small_detail)]),
    }


# -------------------------------------------------------------------------- writing
TABLE_ROW = re.compile(r"^\|.*\|\s*$")


def _table_at(lines: list[str], header: str | None) -> tuple[int, int] | None:
    """(first row, end) of the table with ``header`` (None: the first table) in ``lines``."""
    for i in range(len(lines) - 1):
        if not (TABLE_ROW.match(lines[i]) and lines[i + 1].strip().startswith("|---")):
            continue
        if header is None or "\n".join(x.strip() for x in lines[i: i + 2]) == header:
            end = i + 2
            while end < len(lines) and TABLE_ROW.match(lines[end]):
                end += 1
            return i + 2, end
    return None


def merge_table(text: str, header: str, rows: list[list[str]], key_columns: int,
                replace: bool = False, any_table: bool = False) -> str | None:
    """Put the measured ``rows`` into the table of ``text`` whose header is ``header``:
    rows whose first ``key_columns`` cells match are replaced, new ones appended (with
    ``replace``, the table's rows become exactly ``rows``). ``any_table``: without such a
    table, the first table of ``text`` is replaced, header included (prose around it
    stays). None when there is no table to write into."""
    lines = text.split("\n")
    span = _table_at(lines, header)
    if span is None:
        if not any_table or (span := _table_at(lines, None)) is None:
            return None
        a, b = span
        return "\n".join(lines[: a - 2] + header.split("\n")
                         + ["| " + " | ".join(r) + " |" for r in rows] + lines[b:])
    a, b = span
    new = {tuple(r[:key_columns]): "| " + " | ".join(r) + " |" for r in rows}
    body = [] if replace else [
        new.pop(tuple(c.strip() for c in line.strip().strip("|").split("|"))[:key_columns], line)
        for line in lines[a:b]]
    body += list(new.values())
    return "\n".join(lines[:a] + body + lines[b:])


def update_text(old: str | None, family: Family, measured: list[tuple[Section, list[list[str]]]],
                complete: bool, in_readme: bool = False) -> tuple[str | None, list[str]]:
    """The family's new text. A results file is regenerated whole after a complete run;
    otherwise (and always inside README, whose blocks also hold prose) the measured rows
    go into the tables of the same columns. Returns (text, or None if unchanged; notes)."""
    fresh = family.preface + "\n\n" + "\n".join(s.render(r) for s, r in measured)
    if old is None or (complete and not in_readme):
        return fresh, []
    text, notes = old, []
    for section, rows in measured:
        merged = merge_table(text, section.header(), rows, section.key_columns,
                             replace=complete, any_table=complete and in_readme)
        if merged is None:
            notes.append(f"no table with the columns of '{section.title or section.columns[0][0]}' "
                         "to merge into: left as it was")
        else:
            text = merged
    return (text if text != old else None), notes


def write_block(path: Path, marker: str | None, family: Family,
                measured: list[tuple[Section, list[list[str]]]], complete: bool) -> list[str]:
    """Rewrite ``path`` (its block between ``marker`` comments, or the whole file)."""
    content = path.read_text() if path.is_file() else None
    if marker is not None:
        if content is None:
            return [f"{path} does not exist: not written"]
        m = re.search(rf"(<!-- {re.escape(marker)} -->\n)(.*?)(<!-- /{re.escape(marker)} -->)",
                      content, re.DOTALL)
        if m is None:
            return [f"{path} has no <!-- {marker} --> block: not written"]
        new, notes = update_text(m.group(2), family, measured, complete, in_readme=True)
        if new is not None:
            path.write_text(content[: m.start(2)] + new.rstrip("\n") + "\n" + content[m.end(2):])
        return [f"{path}: {n}" for n in notes]
    new, notes = update_text(content, family, measured, complete)
    if new is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new.rstrip("\n") + "\n")
    return [f"{path}: {n}" for n in notes]


# -------------------------------------------------------------------------- entry
def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("args", nargs="*", help="family=NAME, models=a,b, rows=a,b, lm_seconds=N, lm_steps=N, "
                    "then train.py overrides for every row")
    ap.add_argument("--quick", action="store_true", help="trainer=debug runs; writes only to "
                    "--results/--readme when given")
    ap.add_argument("--runs", default="/tmp/zoo-quality", help="where the run directories go")
    ap.add_argument("--results", default=None, help="the family's results file "
                    "(default benchmarks/results/<quality|classic|sequence|detection>.md)")
    ap.add_argument("--readme", default=None, help="README with the family's markers "
                    "(default README.md)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds per training run")
    ap.add_argument("--resume", action="store_true", help="--runs is one earlier run's folder "
                    "(RUNS/<family>-<time>): rows that finished are scored again without training, "
                    "interrupted ones resume from their last checkpoint, missing ones train")
    a = ap.parse_args(argv)
    a.family, a.models, a.rows, a.lm_seconds, a.lm_steps, a.overrides = "models", [], [], 600, 2000, []
    for item in a.args:
        key, _, value = item.partition("=")
        if key == "family":
            a.family = value
        elif key == "models":
            a.models = [m for m in value.split(",") if m]
        elif key == "rows":  # run names: one row of a model that has several (unet_dice, gan_d10)
            a.rows = [m for m in value.split(",") if m]
        elif key in ("lm_seconds", "lm_steps"):
            setattr(a, key, int(value))
        else:
            a.overrides.append(item)
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    fams = families(a)
    if a.family not in fams:
        print(f"error: unknown family '{a.family}'; valid: {', '.join(fams)}", file=sys.stderr)
        return 2
    family = fams[a.family]
    # a model name selects all its rows; a row's run name (e.g. gan_d10) that row alone
    known = {e.model for s in family.sections for e in s.experiments} | {
        s.name for s in family.sections if s.name} | {
        e.run_name for s in family.sections for e in s.experiments}
    configs = {p.stem for p in (ROOT / "zoo" / "configs" / "model").glob("*.yaml")}
    unknown = [m for m in a.models if m not in known and not (a.family == "models" and m in configs)]
    if unknown:
        print(f"error: {', '.join(unknown)} not in family '{a.family}'; valid: "
              f"{', '.join(sorted(known))}", file=sys.stderr)
        return 2
    names = {e.run_name for s in family.sections for e in s.experiments}
    bad_rows = [r for r in a.rows if r not in names]
    if bad_rows:
        print(f"error: rows={','.join(bad_rows)} not in family '{a.family}'; valid: "
              f"{', '.join(sorted(names))}", file=sys.stderr)
        return 2
    if a.family == "models":  # any model config can be measured with its defaults
        extra_rows = [m for m in a.models if m not in known]
        family.sections[0].experiments += [Experiment(m) for m in extra_rows]
    extra = list(a.overrides)
    if a.quick:
        extra += ["trainer=debug", "logger=none"]
    runs = Path(a.runs) if a.resume else Path(a.runs) / f"{a.family}-{time.strftime('%Y%m%d-%H%M%S')}"
    measured: list[tuple[Section, list[list[str]]]] = []
    for section in family.sections:
        if section.measure is not None:
            if (not a.models and not a.rows) or section.name in a.models:
                print(f"measuring {section.name} ...", flush=True)
                measured.append((section, section.measure()))
            continue
        rows = []
        for exp in section.experiments:
            if a.models and exp.model not in a.models and exp.run_name not in a.models:
                continue
            if a.rows and exp.run_name not in a.rows:
                continue
            exp_overrides = [o for o in exp.overrides if not (a.quick and o.startswith("trainer."))]
            exp = Experiment(exp.model, exp_overrides, exp.split, exp.name)
            print(f"training {exp.run_name} {' '.join(exp.overrides)} ...", flush=True)
            row = train_and_eval(exp, runs, extra, a.timeout)
            if "error" not in row and section.after is not None:
                section.after(row)
            rows.append(section.cells(row))
            print("| " + " | ".join(rows[-1]) + " |", flush=True)
        if rows:
            measured.append((section, rows))
    complete = not a.models and not a.rows and not a.quick
    text = family.preface + "\n\n" + "\n".join(s.render(r) for s, r in measured)
    print(text)
    results = Path(a.results) if a.results else (
        None if a.quick else ROOT / "benchmarks" / "results" / f"{family.results}.md")
    readme = Path(a.readme) if a.readme else (None if a.quick else ROOT / "README.md")
    notes = []
    if results is not None:
        notes += write_block(results, None, family, measured, complete)
    if readme is not None and family.marker is not None:
        notes += write_block(readme, family.marker, family, measured, complete)
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
