"""One command for a person with a GPU: how fast the zoo trains and predicts there.

    python benchmarks/gpu.py             # on a CUDA device (minutes)
    python benchmarks/gpu.py --smoke     # tiny sizes on the CPU (seconds): the script runs

Rows (bf16 autocast, channels_last for convolutions, fused AdamW, each with and
without ``torch.compile`` where it says so):

* ResNet-50 training, 224 x 224 images, images/s;
* GPT 124M (nanoGPT's shape: 12 layers, 12 heads, 768 wide, block 1024, vocabulary
  50304) training, tokens/s and model-FLOPs utilisation (MFU): per token
  6N + 12 L H Q T FLOPs (N parameters without the position embedding, L layers, H heads,
  Q head size, T block) as in the PaLM paper's appendix and nanoGPT, against the
  device's dense bf16 peak (table ``PEAK_BF16``, or ``--peak-tflops``). The zoo's own
  attention (written out, ``zoo.layers.attention``) and torch's fused SDPA
  (flash attention) are both measured;
* YOLOv2 inference (the zoo's configs/model/yolo.yaml network at 416 x 416, NMS
  included), images/s;
* the trainer against a hand-written loop on the same model, batch and optimizer
  (ratio of steps/s; the target is >= 0.97: the trainer may not add host syncs);
* with 2 or more GPUs, the CUDA multi-process tests (DDP, FSDP, SyncBatchNorm:
  ``pytest -m cuda tests/distributed``).

It prints a table and writes ``benchmarks/results/gpu-<device>.md`` (``--output``).
Targets on a modern data-centre GPU: GPT MFU >= 40% (with flash attention), trainer
>= 0.97x the hand loop.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch
import torch.nn.functional as F

# Dense (no sparsity) bf16 tensor-core peaks, TFLOPS, from the vendors' data sheets;
# matched in order against torch.cuda.get_device_name().
PEAK_BF16: list[tuple[str, float]] = [
    ("B200", 2250.0), ("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("GH200", 989.0),
    ("A100", 312.0), ("L40S", 362.0), ("L4", 121.0), ("A10", 125.0), ("RTX 4090", 165.0),
]


@dataclass
class Sizes:
    resnet_batch: int = 128
    resnet_image: int = 224
    gpt: tuple[int, int, int, int, int] = (12, 12, 768, 1024, 50304)  # L, H, D, T, V
    gpt_batch: int = 16
    yolo_batch: int = 32
    yolo_image: int = 416
    loop_steps: tuple[int, int] = (100, 400)  # short, long run of the trainer/hand loop
    loop_model: tuple[str, ...] = ("model=resnet18", "data=digits")
    warmup: int = 5
    steps: int = 20


SMOKE = Sizes(resnet_batch=2, resnet_image=32, gpt=(2, 2, 32, 32, 96), gpt_batch=2,
              yolo_batch=1, yolo_image=64, loop_steps=(2, 4),
              loop_model=("model=mlp", "data=digits"), warmup=0, steps=1)


def peak_tflops(name: str) -> float | None:
    for key, tf in PEAK_BF16:
        if key.lower() in name.lower():
            return tf
    return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()})"


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(step: Callable[[], Any], device: torch.device, warmup: int, steps: int) -> float:
    """Seconds per call of ``step`` after ``warmup`` calls (compilation, autotuning)."""
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - t0) / steps


def autocast(device: torch.device) -> Any:
    # bf16 on CUDA (and on the CPU in --smoke: the same code path, if slower)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def adamw(model: torch.nn.Module, device: torch.device, lr: float = 1e-4) -> torch.optim.Optimizer:
    fused = device.type == "cuda"
    return torch.optim.AdamW(model.parameters(), lr=lr, fused=fused)


def train_step_fn(model: torch.nn.Module, loss_fn: Callable[[], torch.Tensor],
                  opt: torch.optim.Optimizer, device: torch.device) -> Callable[[], None]:
    def step() -> None:
        with autocast(device):
            loss = loss_fn()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step


# ------------------------------------------------------------------------------ ResNet-50
def bench_resnet(device: torch.device, s: Sizes, compile: bool) -> dict[str, Any]:
    from zoo.models.classification.resnet import ResNet

    torch.manual_seed(0)
    model = ResNet(num_classes=1000, depth=50, in_channels=3).to(device)
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(s.resnet_batch, 3, s.resnet_image, s.resnet_image, device=device)
    x = x.to(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (s.resnet_batch,), device=device)
    fwd = torch.compile(model) if compile else model
    opt = adamw(model, device)
    sec = timed(train_step_fn(model, lambda: F.cross_entropy(fwd(x), y), opt, device),
                device, s.warmup, s.steps)
    return {"value": s.resnet_batch / sec, "unit": "images/s",
            "detail": f"batch {s.resnet_batch}, {s.resnet_image}px, {sec * 1e3:.1f} ms/step"}


# ------------------------------------------------------------------------------ GPT
def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
                   dropout_p: float = 0.0, training: bool = False) -> torch.Tensor:
    """torch's fused attention for the GPT rows: the causal mask of a square (T, T)
    training step becomes ``is_causal`` (flash attention); other masks pass through."""
    causal = mask is not None and mask.dim() == 2 and q.shape[-2] == k.shape[-2]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=None if causal else mask,
                                          dropout_p=dropout_p if training else 0.0, is_causal=causal)


def gpt_flops_per_token(n_params: int, L: int, H: int, Q: int, T: int) -> float:
    """6N (forward and backward through the weights) + 12 L H Q T (attention scores and
    their weighted sums, forward and backward), as nanoGPT's estimate_mfu."""
    return 6 * n_params + 12 * L * H * Q * T


def bench_gpt(device: torch.device, s: Sizes, compile: bool, sdpa: bool) -> dict[str, Any]:
    import zoo.layers.attention as A
    from zoo.models.transformer.gpt import GPT

    L, H, D, T, V = s.gpt
    torch.manual_seed(0)
    model = GPT(vocab_size=V, block_size=T, n_layer=L, n_head=H, n_embd=D, dropout=0.0).to(device)
    n_params = sum(p.numel() for p in model.parameters()) - model.pos_emb.weight.numel()
    ids = torch.randint(0, V, (s.gpt_batch, T + 1), device=device)
    x, y = ids[:, :-1], ids[:, 1:]
    fwd = torch.compile(model) if compile else model
    opt = adamw(model, device, lr=6e-4)
    original = A.attention
    try:
        if sdpa:
            A.attention = sdpa_attention
        sec = timed(train_step_fn(model, lambda: F.cross_entropy(fwd(x).reshape(-1, V), y.reshape(-1)),
                                  opt, device), device, s.warmup, s.steps)
    finally:
        A.attention = original
    tokens = s.gpt_batch * T / sec
    flops = gpt_flops_per_token(n_params, L, H, D // H, T) * tokens
    peak = PEAK_TFLOPS.get("value")
    mfu = flops / (peak * 1e12) if peak else None
    return {"value": tokens, "unit": "tokens/s", "mfu": mfu,
            "detail": f"{n_params / 1e6:.1f}M params, batch {s.gpt_batch} x {T}, "
                      f"{flops / 1e12:.1f} TFLOPS achieved, {sec * 1e3:.1f} ms/step"}


# ------------------------------------------------------------------------------ YOLOv2
def bench_yolo(device: torch.device, s: Sizes, compile: bool) -> dict[str, Any]:
    from zoo.models.detection.yolov2 import YOLOv2

    torch.manual_seed(0)
    model = YOLOv2(num_classes=5, image_size=s.yolo_image, kmeans_anchors=False).to(device).eval()
    model = model.to(memory_format=torch.channels_last)
    if compile:
        model.backbone = torch.compile(model.backbone)
    images = [torch.rand(3, s.yolo_image, s.yolo_image, device=device) for _ in range(s.yolo_batch)]
    batch = (images, [{} for _ in images])

    def step() -> None:
        with torch.inference_mode(), autocast(device):
            model.predict(batch)
    sec = timed(step, device, s.warmup, s.steps)
    return {"value": s.yolo_batch / sec, "unit": "images/s",
            "detail": f"batch {s.yolo_batch}, {s.yolo_image}px, NMS included, {sec * 1e3:.1f} ms/batch"}


# ------------------------------------------------------------------------------ trainer vs hand loop
LOOP_OVERRIDES = ["logger=none", "trainer.progress=false",
                  "sched=constant", "trainer.amp=bf16", "trainer.ckpt_every=1000000000",
                  "trainer.val_every=1000000", "trainer.val_every_steps=1000000000",
                  "trainer.limit_val_batches=1", "trainer.channels_last=true"]


def _loop_cfg(device: torch.device, steps: int, model: tuple[str, ...]) -> Any:
    from omegaconf import OmegaConf

    from zoo.engine.config import compose

    cfg = compose(ROOT / "configs", "train", [*model, *LOOP_OVERRIDES, f"trainer.device={device}",
                                              f"trainer.max_steps={steps}"])
    del cfg["hydra"]
    OmegaConf.resolve(cfg)
    return cfg


def hand_loop(cfg: Any, steps: int, device: torch.device) -> float:
    """``steps`` plain steps: the same model, data order, batch, optimizer and autocast."""
    from torch.utils.data import DataLoader

    from zoo.engine import distributed as D
    from zoo.engine.optim import build_optimizers
    from zoo.engine.trainer import build_data, build_model
    from zoo.engine.utils import seed_everything, to_device

    seed_everything(int(cfg.seed))
    data, model = build_data(cfg), build_model(cfg)
    model.to(device).to(memory_format=torch.channels_last)
    opt = build_optimizers(model.optimizer_groups(), cfg.optim, device)["main"]
    ds = data.dataset("train")
    sampler = D.EpochSampler(len(ds), shuffle=True, seed=int(cfg.seed))
    loader = DataLoader(ds, batch_size=data.batch_size, sampler=sampler, collate_fn=data.collate_fn,
                        drop_last=len(ds) > data.batch_size, pin_memory=device.type == "cuda")
    model.train()
    sync(device)
    t0 = time.perf_counter()
    done, epoch = 0, 0
    while done < steps:
        sampler.set_epoch(epoch)
        for batch in loader:
            batch = to_device(batch, device, non_blocking=device.type == "cuda")
            with autocast(device):
                losses = model.training_step(batch, "main")
            opt.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            opt.step()
            done += 1
            if done == steps:
                break
        epoch += 1
    sync(device)
    return time.perf_counter() - t0


def trainer_loop(cfg: Any, steps: int, device: torch.device) -> float:
    from zoo.engine.trainer import Trainer

    with tempfile.TemporaryDirectory() as d:
        sync(device)
        t0 = time.perf_counter()
        Trainer(cfg, Path(d), device).fit()
        sync(device)
        return time.perf_counter() - t0


def bench_trainer_vs_hand(device: torch.device, s: Sizes, rounds: int) -> dict[str, Any]:
    short, long = s.loop_steps
    cfgs = {n: _loop_cfg(device, n, s.loop_model) for n in (short, long)}
    ratios, hand_ms, trainer_ms = [], [], []
    with contextlib.redirect_stdout(io.StringIO()):
        hand_loop(cfgs[short], short, device)  # warm-up: imports, cuDNN autotuning
        trainer_loop(cfgs[short], short, device)
        for _ in range(rounds):
            t = {(w, n): (hand_loop if w == "hand" else trainer_loop)(cfgs[n], n, device)
                 for w in ("hand", "trainer") for n in (short, long)}
            # per step from two run lengths: set-up and the final validation cancel
            h = (t[("hand", long)] - t[("hand", short)]) / (long - short)
            tr = (t[("trainer", long)] - t[("trainer", short)]) / (long - short)
            hand_ms.append(h * 1e3)
            trainer_ms.append(tr * 1e3)
            ratios.append(h / tr if tr > 0 else float("nan"))
    ratios.sort()
    ratio = ratios[len(ratios) // 2]
    return {"value": ratio, "unit": "x hand loop",
            "detail": f"{' '.join(s.loop_model)}, batch 64, bf16; hand {sorted(hand_ms)[len(hand_ms) // 2]:.2f} "
                      f"ms/step, trainer {sorted(trainer_ms)[len(trainer_ms) // 2]:.2f} ms/step, "
                      f"median of {rounds} rounds (target >= 0.97)"}


# ------------------------------------------------------------------------------ multi-GPU
def multi_gpu_checks(device: torch.device) -> dict[str, Any]:
    n = torch.cuda.device_count() if device.type == "cuda" else 0
    if n < 2:
        return {"value": None, "unit": "", "detail": f"skipped: {n} GPU(s), the checks need 2"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-m", "cuda",
                           str(ROOT / "tests" / "distributed")], capture_output=True, text=True,
                          cwd=ROOT, check=False)
    last = (proc.stdout.strip().splitlines() or ["no output"])[-1]
    return {"value": proc.returncode == 0, "unit": "", "detail": f"pytest -m cuda tests/distributed: {last}"}


PEAK_TFLOPS: dict[str, float | None] = {}


def run(device: torch.device, s: Sizes, compile_modes: list[bool], rounds: int) -> list[tuple[str, dict]]:
    rows: list[tuple[str, dict]] = []

    def add(name: str, fn: Callable[[], dict]) -> None:
        try:
            r = fn()
        except Exception as e:  # noqa: BLE001 - one failing row (out of memory) keeps the others
            r = {"value": None, "unit": "", "detail": f"failed: {type(e).__name__}: "
                                                      f"{str(e).splitlines()[0] if str(e) else ''}"}
        rows.append((name, r))
        print(f"  {name}: {_value(r)}  ({r['detail']})", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()

    for c in compile_modes:
        tag = " + compile" if c else ""
        add(f"ResNet-50 training{tag}", lambda c=c: bench_resnet(device, s, c))
    for c in compile_modes:
        tag = " + compile" if c else ""
        add(f"GPT-124M training, zoo attention{tag}", lambda c=c: bench_gpt(device, s, c, sdpa=False))
        add(f"GPT-124M training, SDPA (flash){tag}", lambda c=c: bench_gpt(device, s, c, sdpa=True))
    for c in compile_modes:
        tag = " + compile" if c else ""
        add(f"YOLOv2 inference{tag}", lambda c=c: bench_yolo(device, s, c))
    add("trainer vs hand loop", lambda: bench_trainer_vs_hand(device, s, rounds))
    add("DDP / FSDP / SyncBatchNorm on 2 GPUs", lambda: multi_gpu_checks(device))
    return rows


def _value(r: dict) -> str:
    v = r["value"]
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "passed" if v else "FAILED"
    text = f"{v:.3f} {r['unit']}" if r["unit"].startswith("x") else f"{v:,.0f} {r['unit']}"
    if r.get("mfu") is not None:
        text += f", MFU {100 * r['mfu']:.1f}%"
    return text


def table(rows: list[tuple[str, dict]]) -> str:
    lines = ["| benchmark | result | details |", "|---|---|---|"]
    lines += [f"| {name} | {_value(r)} | {r['detail']} |" for name, r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes, no torch.compile, any device (default the CPU): checks the script runs")
    ap.add_argument("--device", default=None, help="cuda (default), cuda:N, or cpu")
    ap.add_argument("--compile", choices=["both", "off", "on"], default=None,
                    help="rows without and with torch.compile (default both; off with --smoke)")
    ap.add_argument("--rounds", type=int, default=None, help="trainer vs hand loop rounds (default 5)")
    ap.add_argument("--peak-tflops", type=float, default=None,
                    help="the device's dense bf16 peak for MFU (default: from the table by name)")
    ap.add_argument("--output", type=Path, default=None,
                    help="the results file (default benchmarks/results/gpu-<device>.md)")
    args = ap.parse_args(argv)

    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA device; run `python benchmarks/gpu.py --smoke` to check the script "
              "on the CPU", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    sizes = SMOKE if args.smoke else Sizes()
    compile_modes = {"both": [False, True], "off": [False], "on": [True]}[
        args.compile or ("off" if args.smoke else "both")]
    name = device_name(device)
    PEAK_TFLOPS["value"] = args.peak_tflops or (peak_tflops(name) if device.type == "cuda" else None)
    print(f"{name}: torch {torch.__version__}" + (" (smoke sizes)" if args.smoke else ""), flush=True)

    rows = run(device, sizes, compile_modes, args.rounds or (1 if args.smoke else 5))

    peak = PEAK_TFLOPS["value"]
    L, H, D, T, V = sizes.gpt
    text = (f"# GPU benchmark: {name}\n\n`python benchmarks/gpu.py{' --smoke' if args.smoke else ''}`"
            f" - torch {torch.__version__}, CUDA {torch.version.cuda or '-'}; bf16 autocast, "
            f"channels_last, fused AdamW (CUDA).\n"
            f"GPT: {L} layers, {H} heads, {D} wide, block {T}, vocabulary {V}; MFU = "
            f"(6N + 12 L H Q T) x tokens/s / peak, peak "
            f"{f'{peak:g} TFLOPS dense bf16' if peak else 'unknown (pass --peak-tflops)'}.\n"
            + ("\nSmoke sizes on the CPU: these numbers say the script runs, not how fast "
               "anything is.\n" if args.smoke else "") + "\n" + table(rows) + "\n")
    print("\n" + table(rows))
    out = args.output or ROOT / "benchmarks" / "results" / f"gpu-{slug(name) if not args.smoke else 'smoke'}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written: {out}")
    failed = [n for n, r in rows if isinstance(r["value"], bool) and not r["value"]]
    failed += [n for n, r in rows if r["value"] is None and str(r["detail"]).startswith("failed")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
