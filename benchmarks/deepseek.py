"""DeepSeek parts measured: KV-cache size and decode speed (MHA, GQA, MLA naive and
absorbed), load balance from a skewed router (bias vs auxiliary loss vs none), bits per
character at equal CPU time (gpt vs deepseek and its ablations, two seeds), MLA vs MHA at
equal steps (two seeds) and the MLA levers (latent/rope split, rope base, heads, per-head
sizes, lr), and MTP self-speculative decoding (acceptance rate, speed-up). Writes
benchmarks/results/deepseek.md, replacing only the sections it measured.

    python benchmarks/deepseek.py                      # every part, default budgets (~50 min)
    python benchmarks/deepseek.py --parts quality,mtp --seconds 180 --seeds 0,1
    python benchmarks/deepseek.py --quick              # a smoke run (tiny budgets)

Training is a plain loop over the zoo's models and the pydoc corpus (AdamW 3e-3, weight
decay 0.1 off 1-D weights, 30 warm-up steps then constant, clip 1.0, batch 32 x 64
characters), one torch thread, stopped by process CPU time so rows compare on a shared
machine. Validation: the first 16,384 characters of the val split, main head only.
Never part of the test run.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.data.corpora import TextData
from zoo.layers.moe import MoE
from zoo.models.transformer.deepseek import DeepSeek
from zoo.models.transformer.gpt import GPT

SEQ, BATCH = 64, 32


# ---------------------------------------------------------------------------------- data
class Corpus:
    def __init__(self) -> None:
        data = TextData(seq_len=SEQ, batch_size=BATCH)
        self.vocab = data.vocab_size
        self.train = data.encode_split("train")
        val = data.encode_split("val")[: 16384 + 1]
        n = (len(val) - 1) // SEQ
        self.val_x = val[: n * SEQ].view(n, SEQ)
        self.val_y = val[1: n * SEQ + 1].view(n, SEQ)

    def batch(self, g: torch.Generator, size: int = BATCH) -> tuple[torch.Tensor, torch.Tensor]:
        start = torch.randint(0, len(self.train) - SEQ - 1, (size,), generator=g)
        idx = start[:, None] + torch.arange(SEQ + 1)
        w = self.train[idx]
        return w[:, :-1], w[:, 1:]


@torch.no_grad()
def bits_per_char(model: torch.nn.Module, corpus: Corpus) -> float:
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(corpus.val_x), 64):
        x, y = corpus.val_x[i: i + 64], corpus.val_y[i: i + 64]
        total += float(F.cross_entropy(model(x).reshape(-1, corpus.vocab), y.reshape(-1), reduction="sum"))
        n += y.numel()
    model.train()
    return total / n / math.log(2)


def optimizer(model: torch.nn.Module, lr: float = 3e-3) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.95))


def train(model: torch.nn.Module, corpus: Corpus, seconds: float, max_steps: int = 10**9,
          on_step=None, batch: int = BATCH, seed: int = 0, lr: float = 3e-3) -> dict:
    """Train until ``seconds`` of process CPU time; returns steps, CPU seconds, val bits/char.
    ``seed`` picks the batches (the caller seeds the initialisation)."""
    g = torch.Generator().manual_seed(seed)
    opt = optimizer(model, lr)
    lr = opt.param_groups[0]["lr"]
    t0, step = time.process_time(), 0
    model.train()
    while time.process_time() - t0 < seconds and step < max_steps:
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / 30)
        out = model.training_step(corpus.batch(g, batch))
        loss = sum(v for k, v in out.items() if not k.startswith("log_"))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        model.on_after_step("main", lr)
        step += 1
        if on_step is not None:
            on_step(step, out)
    cpu = time.process_time() - t0
    return {"steps": step, "cpu_s": cpu, "bpc": bits_per_char(model, corpus)}


# ---------------------------------------------------------------------------------- parts
def part_cache(contexts: list[int], new_tokens: int) -> list[str]:
    torch.manual_seed(0)
    base = {"vocab_size": 128, "block_size": max(contexts) + new_tokens, "ffn": "dense", "mtp_depth": 0}
    rows = [("MHA (4 heads x 32)", {"attention": "mha"}, None),
            ("GQA (2 kv heads)", {"attention": "mha", "n_kv_head": 2}, None),
            ("MQA (1 kv head)", {"attention": "mha", "n_kv_head": 1}, None),
            ("MLA naive (latent 16 + rope 16)", {"attention": "mla"}, "naive"),
            ("MLA absorbed", {"attention": "mla"}, "absorbed")]
    lines = ["| attention | cache bytes/token (4 layers, fp32) | vs MHA | "
             + " | ".join(f"decode tok/s @ {c}" for c in contexts) + " |",
             "|---|---|---|" + "---|" * len(contexts)]
    mha_bytes = None
    for name, kw, absorb in rows:
        model = DeepSeek(**base, **kw).eval()
        if absorb:
            for b in model.blocks:
                b.self_attn.absorb = absorb
        speeds, measured = [], None
        for ctx in contexts:
            caches = [{} for _ in model.blocks]
            ids = torch.randint(0, 128, (1, ctx))
            with torch.no_grad():
                for s in range(0, ctx, 512):             # chunked prefill
                    model(ids[:, s: s + 512], caches)
                measured = sum(t.numel() * t.element_size() for c in caches for t in c.values()) / ctx
                nxt = ids[:, -1:]
                t0 = time.perf_counter()
                for _ in range(new_tokens):
                    nxt = model(nxt, caches)[:, -1].argmax(-1, keepdim=True)
                speeds.append(new_tokens / (time.perf_counter() - t0))
        assert measured == model.cache_bytes_per_token()
        mha_bytes = mha_bytes or measured
        lines.append(f"| {name} | {measured:.0f} | {measured / mha_bytes:.3f} | "
                     + " | ".join(f"{s:.0f}" for s in speeds) + " |")
        print(lines[-1], flush=True)
    return lines


def _skew(model: DeepSeek, corpus: Corpus, logit_gap: float = 3.0) -> None:
    """Point every router's experts 0 and 1 at the mean direction of its inputs, so that at
    the start they receive (nearly) every token."""
    inputs = {}
    hooks = [m.register_forward_pre_hook(lambda mod, a, i=i: inputs.__setitem__(i, a[0].detach()))
             for i, m in model.moe_layers().items()]
    with torch.no_grad():
        model(corpus.batch(torch.Generator().manual_seed(5))[0])
        for h in hooks:
            h.remove()
        for i, m in model.moe_layers().items():
            x = inputs[i].reshape(-1, inputs[i].shape[-1])
            d = x.mean(0)
            d = d / d.norm()
            c = logit_gap / float((x @ d).mean())
            m.gate.weight[:2] += c * d


def part_balance(corpus: Corpus, steps: int) -> list[str]:
    rows = [("bias, γ = 0.01 (default)", {"balance": "bias", "bias_rate": 0.01}),
            ("bias, γ = 0.01 + sequence-wise loss 1e-4", {"balance": "bias", "bias_rate": 0.01,
                                                             "seq_aux_weight": 1e-4}),
            ("bias, γ = 0.001 (V3's)", {"balance": "bias", "bias_rate": 0.001}),
            ("auxiliary loss, α = 0.01", {"balance": "aux", "aux_weight": 0.01}),
            ("none", {"balance": "none"})]
    lines = ["| balancing | max/mean load at start | after (last 10 steps) | val bits/char |",
             "|---|---|---|---|"]
    for name, kw in rows:
        torch.manual_seed(0)
        model = DeepSeek(vocab_size=corpus.vocab, block_size=SEQ, n_layer=3, n_embd=64, n_head=4,
                         qk_nope_dim=16, v_head_dim=16, kv_lora_rank=16, qk_rope_dim=8, expert_hidden=64,
                         ffn_hidden=192, mtp_depth=0, **kw)
        _skew(model, corpus)
        history: list[float] = []

        def record(step, out, history=history):
            history.append(float(out["log_expert_load_max_over_mean"]))

        res = train(model, corpus, seconds=1e9, max_steps=steps, on_step=record, batch=16)
        tail = sum(history[-10:]) / len(history[-10:])
        lines.append(f"| {name} | {history[0]:.2f} | {tail:.2f} | {res['bpc']:.3f} |")
        print(lines[-1], flush=True)
    return lines


def _active(model: torch.nn.Module) -> tuple[int, int]:
    """(all parameters, those one token's main-model forward uses: routed experts it skips
    and the MTP modules left out)."""
    total = sum(p.numel() for p in model.parameters())
    active = total
    if isinstance(model, DeepSeek):
        for m in model.moe_layers().values():
            active -= (m.num_experts - m.top_k) * 3 * m.dim * m.hidden
        active -= sum(p.numel() for p in model.mtp.parameters())
    return total, active


def part_quality(corpus: Corpus, seconds: float, seeds: list[int],
                 only_defaults: bool = False) -> tuple[list[str], DeepSeek | None]:
    V = corpus.vocab
    rows = [("gpt (default)", lambda: GPT(vocab_size=V, block_size=SEQ), seeds),
            ("deepseek (default: MLA + MoE + MTP 1)", lambda: DeepSeek(vocab_size=V, block_size=SEQ), seeds),
            ("deepseek n_layer=3 (+ the MTP block: as many blocks as gpt)",
             lambda: DeepSeek(vocab_size=V, block_size=SEQ, n_layer=3), seeds),
            ("deepseek ffn=dense (equal active params)",
             lambda: DeepSeek(vocab_size=V, block_size=SEQ, ffn="dense"), seeds[:1]),
            ("deepseek mtp_depth=0", lambda: DeepSeek(vocab_size=V, block_size=SEQ, mtp_depth=0), seeds[:1]),
            ("deepseek attention=mha", lambda: DeepSeek(vocab_size=V, block_size=SEQ, attention="mha"), seeds[:1])]
    if only_defaults:
        rows = rows[:2]
    lines = [(f"| model | seed | parameters (active) | steps in {seconds:.0f} CPU s | ms/step | val bits/char | "
             "cache bytes/token | max/mean load |"),
             "|---|---|---|---|---|---|---|---|"]
    default = None
    for name, make, row_seeds in rows:
        for seed in row_seeds:
            torch.manual_seed(seed)
            model = make()
            total, active = _active(model)
            res = train(model, corpus, seconds, seed=seed)
            cache = (model.cache_bytes_per_token() if isinstance(model, DeepSeek)
                     else 2 * len(model.blocks) * model.tok_emb.weight.shape[1] * 4)
            load = "-"
            if isinstance(model, DeepSeek) and model.moe_layers():
                with torch.no_grad():
                    model.eval()
                    model(corpus.val_x[:64])
                    ratio, _ = MoE.load_stats(torch.stack([m.last_load for m in model.moe_layers().values()]))
                    load = f"{float(ratio.mean()):.2f}"
            lines.append(f"| {name} | {seed} | {total:,} ({active:,}) | {res['steps']} | "
                         f"{1000 * res['cpu_s'] / res['steps']:.0f} | {res['bpc']:.3f} | {cache} | {load} |")
            print(lines[-1], flush=True)
            if name.startswith("deepseek (default") and default is None:
                default = model
    return lines, default


def part_mtp(model: DeepSeek, corpus: Corpus, new_tokens: int) -> list[str]:
    model.eval()
    lines = ["| prompt | greedy s | speculative s | speed-up | acceptance rate | tokens per main call | equal |",
             "|---|---|---|---|---|---|---|"]
    for i in range(3):
        prompt = corpus.val_x[10 * i: 10 * i + 1, :8]
        t0 = time.perf_counter()
        greedy = model.generate(prompt, new_tokens, temperature=0.0)
        t1 = time.perf_counter()
        spec, stats = model.generate_speculative(prompt, new_tokens)
        t2 = time.perf_counter()
        lines.append(f"| val window {10 * i} | {t1 - t0:.2f} | {t2 - t1:.2f} | {(t1 - t0) / (t2 - t1):.2f} | "
                     f"{stats['acceptance_rate']:.3f} | {stats['tokens_per_main_call']:.2f} | "
                     f"{torch.equal(greedy, spec)} |")
        print(lines[-1], flush=True)
    return lines


def _mla_name(model: DeepSeek) -> str:
    a = model.blocks[0].self_attn
    if not hasattr(a, "kv_lora_rank"):
        return f"MHA ({a.num_heads} heads x {a.head_dim})"
    return (f"MLA (latent {a.kv_lora_rank} + rope {a.rope}, {a.num_heads} heads, "
            f"nope {a.nope}, v {a.v_dim})")


def _dense_no_mtp(corpus: Corpus, kw: dict, steps: int, seed: int = 0, **train_kw: Any) -> tuple[str, dict]:
    """Train a dense-FFN, MTP-off DeepSeek with ``kw`` for ``steps``; returns the table
    cells parameters | cache bytes/token | ms/step, and the training result."""
    torch.manual_seed(seed)
    model = DeepSeek(vocab_size=corpus.vocab, block_size=SEQ, ffn="dense", mtp_depth=0, **kw)
    res = train(model, corpus, seconds=1e9, max_steps=steps, **train_kw)
    res["name"] = _mla_name(model)
    return (f"{_active(model)[0]:,} | {model.cache_bytes_per_token()} | "
            f"{1000 * res['cpu_s'] / res['steps']:.0f}"), res


def part_attention(corpus: Corpus, steps: int, seeds: list[int]) -> list[str]:
    lines = ["| attention | seed | parameters | cache bytes/token | ms/step | val bits/char |",
             "|---|---|---|---|---|---|"]
    for kw in ({"attention": "mha"}, {"attention": "mla"}):
        for seed in seeds:
            cells, res = _dense_no_mtp(corpus, kw, steps, seed)
            lines.append(f"| {res['name']} | {seed} | {cells} | {res['bpc']:.3f} |")
            print(lines[-1], flush=True)
    return lines


# (label, DeepSeek overrides, learning rate): what the MLA split, heads and per-head sizes
# buy at equal steps; every row keeps the cache at 32 numbers per layer except MHA's
LEVERS = [("MHA", {"attention": "mha"}, 3e-3),
          ("MHA, rope base 100", {"attention": "mha", "rope_base": 100.0}, 3e-3),
          ("MLA 24 + 8 (previous default)", {"kv_lora_rank": 24, "qk_rope_dim": 8}, 3e-3),
          ("MLA 24 + 8, rope base 100", {"kv_lora_rank": 24, "qk_rope_dim": 8, "rope_base": 100.0}, 3e-3),
          ("MLA 20 + 12", {"kv_lora_rank": 20, "qk_rope_dim": 12}, 3e-3),
          ("MLA 16 + 16 (default)", {}, 3e-3),
          ("MLA 16 + 16, rope base 100", {"rope_base": 100.0}, 3e-3),
          ("MLA 16 + 16, lr 5e-3", {}, 5e-3),
          ("MLA 12 + 20", {"kv_lora_rank": 12, "qk_rope_dim": 20}, 3e-3),
          ("MLA 24 + 8, nope 64, v 64", {"kv_lora_rank": 24, "qk_rope_dim": 8, "qk_nope_dim": 64,
                                          "v_head_dim": 64}, 3e-3),
          ("MLA 24 + 8, 8 heads", {"kv_lora_rank": 24, "qk_rope_dim": 8, "n_head": 8}, 3e-3),
          ("MLA 16 + 16, 8 heads, nope 16, v 16", {"n_head": 8, "qk_nope_dim": 16, "v_head_dim": 16}, 3e-3)]


def part_levers(corpus: Corpus, steps: int) -> list[str]:
    lines = ["| variant | parameters | cache bytes/token | ms/step | val bits/char |", "|---|---|---|---|---|"]
    for name, kw, lr in LEVERS:
        cells, res = _dense_no_mtp(corpus, kw, steps, lr=lr)
        lines.append(f"| {name} | {cells} | {res['bpc']:.4f} |")
        print(lines[-1], flush=True)
    return lines


def merge(path: Path, new: str) -> str:
    """The results file with the sections just measured replaced (its head and the other
    sections kept)."""
    def sections(text: str) -> tuple[str, dict[str, str]]:
        head, *rest = text.split("\n## ")
        return head, {r.split("\n", 1)[0]: "## " + r for r in rest}
    if not path.is_file():
        return new
    head, old = sections(path.read_text())   # the existing head says how the file was measured
    _, fresh = sections(new)
    keep = {k: v for k, v in old.items() if not any(k.split(" (")[0] == f.split(" (")[0] for f in fresh)}
    parts = [head, *keep.values(), *fresh.values()]
    return "\n\n".join(p.strip("\n") for p in parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="cache,balance,quality,attention,levers,mtp")
    ap.add_argument("--seconds", type=float, default=180.0, help="CPU seconds per quality row")
    ap.add_argument("--balance-steps", type=int, default=300)
    ap.add_argument("--contexts", default="256,1024,4096")
    ap.add_argument("--attention-steps", type=int, default=1000)
    ap.add_argument("--levers-steps", type=int, default=300)
    ap.add_argument("--seeds", default="0,1", help="seeds of the gpt/deepseek quality rows and the attention rows")
    ap.add_argument("--quality-rows", choices=("all", "defaults"), default="all",
                    help="defaults: only the default gpt and deepseek rows")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "deepseek.md"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    parts = a.parts.split(",")
    seeds = [int(x) for x in a.seeds.split(",")]
    if a.quick:
        a.seconds, a.balance_steps, a.contexts, a.attention_steps, a.levers_steps = 3.0, 5, "64,128", 3, 2
    corpus = Corpus()
    out = ["# DeepSeek parts: MLA cache, MoE balance, MTP", "",
           "Measured on a shared, loaded 2-core machine, one torch thread per run; wall-clock "
           "speeds are noisy and the training budgets are short (" + f"{a.seconds:.0f} CPU s per quality row, "
           f"{a.balance_steps} steps per balance row). `python benchmarks/deepseek.py` reproduces it.", ""]
    if "cache" in parts:
        out += ["## KV cache and decode speed (batch 1, untrained weights, 4 layers, 128 wide)", ""]
        out += part_cache([int(c) for c in a.contexts.split(",")], 8 if a.quick else 32) + [""]
    if "balance" in parts:
        out += [("## Load balance from a skewed start (experts 0 and 1 get nearly every token; "
                "3 layers, 2 of them routed, 8 experts, top-2)"), ""]
        out += part_balance(corpus, a.balance_steps) + [""]
    default = None
    if "quality" in parts:
        # one section per budget (and row set), so a longer check does not replace the table
        which = "" if a.quality_rows == "all" else ", default configs only"
        out += [f"## Bits per character at {a.seconds:.0f} CPU seconds each (pydoc corpus, val split{which})", ""]
        lines, default = part_quality(corpus, a.seconds, seeds, a.quality_rows == "defaults")
        out += lines + [""]
    if "mtp" in parts and default is None:
        torch.manual_seed(seeds[0])
        default = DeepSeek(vocab_size=corpus.vocab, block_size=SEQ)
        train(default, corpus, a.seconds, seed=seeds[0])
    if "attention" in parts:
        out += [f"## MLA vs MHA at equal steps ({a.attention_steps} steps, dense FFN, no MTP)", ""]
        out += part_attention(corpus, a.attention_steps, seeds) + [""]
    if "levers" in parts:
        out += [f"## MLA levers at equal steps ({a.levers_steps} steps, dense FFN, no MTP, seed 0)", ""]
        out += part_levers(corpus, a.levers_steps) + [""]
    if "mtp" in parts:
        out += [("## Self-speculative decoding with the MTP module (the default deepseek above, greedy, "
                "8-character prompt + 56 new tokens: the 64-token window, all of it drafted)"), ""]
        out += part_mtp(default, corpus, 20 if a.quick else SEQ - 8) + [""]
    Path(a.results).parent.mkdir(parents=True, exist_ok=True)
    Path(a.results).write_text(merge(Path(a.results), "\n".join(out)))
    print(f"wrote {a.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
