"""Quality targets of the sequence family, as markdown tables.

    python benchmarks/sequence_quality.py                     # every experiment
    python benchmarks/sequence_quality.py --only reversal,word2vec
    python benchmarks/sequence_quality.py --only lm --lm-seconds 300

Experiments (default configs unless stated):

- ``reversal``: Transformer and LSTM seq2seq on ``reverse``; test exact match
  (target >= 0.99).
- ``lm``: GPT, LSTM and RNN character language models on the pydoc corpus with the
  same wall-clock budget (``--lm-seconds``, via ``trainer.max_time``, the cosine
  schedule sized by ``--lm-steps``); test bits per character (target: GPT < LSTM).
- ``word2vec``: CBOW and skip-gram with negative sampling, and skip-gram with the full
  softmax, on the planted-cluster corpus; neighbour recall (target >= 0.9).
- ``order``: LSTM classifier versus bag-of-words on the word-order task; test accuracy.
- ``kvcache``: GPT generation speed with and without the KV cache (tokens per second).
- ``captioning``: the captioner with the image fed at every step (default) and with
  Show and Tell's single image input (``model.image_every_step=false``); test exact
  match (target >= 0.8 for the default).
- ``bert``: BERT pre-training, then fine-tuning on shuffled-words detection from the
  pre-trained encoder versus from scratch; test accuracy.

Each run is ``python train.py model=X ...`` then ``python evaluate.py run=DIR split=test``.
Runs use one thread each (``OMP_NUM_THREADS``, default 1) so the numbers are comparable
on a shared machine. Never part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def train_and_eval(name: str, run: Path, overrides: list[str], split: str = "test") -> dict:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), f"model={name}",
                           f"hydra.run.dir={run}", "trainer.progress=false", *overrides],
                          cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    row: dict = {"model": name, "overrides": " ".join(overrides), "wall_s": wall}
    if proc.returncode != 0:
        row["error"] = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["?"])[-1]
        return row
    summary = json.loads((run / "metrics.json").read_text())
    row.update(steps=summary.get("steps"), train_s=summary.get("train_time_s"),
               monitor=summary.get("monitor"))
    ev = subprocess.run([sys.executable, str(ROOT / "evaluate.py"), f"run={run}", f"split={split}",
                         "device=cpu"], cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    out = run / f"eval_{split}" / "metrics.json"
    if ev.returncode == 0 and out.is_file():
        row["metrics"] = json.loads(out.read_text())
    else:
        row["error"] = (ev.stderr.strip().splitlines() or ["evaluate failed"])[-1]
    from zoo.engine.config import build
    from zoo.engine.run import load_run_config

    row["params"] = sum(p.numel() for p in build(load_run_config(run).model, "model").parameters())
    return row


def fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def table(title: str, rows: list[dict], keys: list[str], target: str) -> str:
    lines = [f"### {title}", "", f"Target: {target}", "",
             "| model | overrides | " + " | ".join(keys) + " | steps | train time | parameters |",
             "|---|---|" + "---|" * len(keys) + "---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['overrides']} | failed: {r['error'][:80]} |"
                         + " |" * (len(keys) + 2))
            continue
        m = r.get("metrics", {})
        lines.append(f"| {r['model']} | {r['overrides'] or 'default'} | "
                     + " | ".join(fmt(m.get(k)) for k in keys)
                     + f" | {r.get('steps')} | {r.get('train_s', 0):.0f} s | {r['params']:,} |")
    return "\n".join(lines) + "\n"


def kv_cache_speed(new_tokens: int = 200) -> str:
    import torch

    from zoo.models.transformer.gpt import GPT

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    torch.manual_seed(0)
    model = GPT(vocab_size=128, block_size=256, n_layer=4, n_head=4, n_embd=128).eval()
    prompt = torch.randint(5, 100, (1, 8))
    lines = ["### GPT generation speed (4 layers, 128 dims, 8-token prompt, batch 1)", "",
             "| KV cache | new tokens | seconds | tokens/s | identical output |", "|---|---|---|---|---|"]
    outs = {}
    for use_cache in (True, False):
        model.generate(prompt, 5, temperature=0.0, use_cache=use_cache)  # warm-up
        t0 = time.perf_counter()
        outs[use_cache] = model.generate(prompt, new_tokens, temperature=0.0, use_cache=use_cache)
        dt = time.perf_counter() - t0
        lines.append(f"| {'yes' if use_cache else 'no'} | {new_tokens} | {dt:.2f} | "
                     f"{new_tokens / dt:.0f} | {bool(torch.equal(outs[True], outs[use_cache]))} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="reversal,lm,word2vec,order,kvcache,captioning,bert")
    ap.add_argument("--out-dir", default="outputs/benchmarks/sequence")
    ap.add_argument("--lm-seconds", type=int, default=600, help="time budget of each language model")
    ap.add_argument("--lm-steps", type=int, default=2000, help="schedule length of each language model")
    ap.add_argument("--out", default=None, help="also write the tables to this markdown file")
    args = ap.parse_args()
    only = set(args.only.split(","))
    out_dir = Path(args.out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    sections = []

    def emit(text: str) -> None:
        print(text, flush=True)
        sections.append(text)

    if "reversal" in only:
        rows = [train_and_eval(m, out_dir / f"reverse_{m}", []) for m in ("transformer", "seq2seq_lstm")]
        emit(table("Sequence reversal (data=reverse, lengths 3-10, test split)", rows,
                   ["exact_match", "token_accuracy"], "exact match >= 0.99"))
    if "lm" in only:
        budget = [f"trainer.max_time={args.lm_seconds}", f"trainer.max_steps={args.lm_steps}"]
        rows = [train_and_eval(m, out_dir / f"lm_{m}", budget) for m in ("gpt", "lstm", "rnn")]
        emit(table(f"Character language models on pydoc_data.topics ({args.lm_seconds} s each, test split)",
                   rows, ["bits_per_char", "perplexity", "loss"],
                   "GPT below the LSTM of the same size and time budget"))
    if "word2vec" in only:
        rows = [train_and_eval("word2vec_cbow", out_dir / "w2v_cbow", [], "val"),
                train_and_eval("word2vec_skipgram", out_dir / "w2v_sg", [], "val"),
                train_and_eval("word2vec_skipgram", out_dir / "w2v_sg_softmax",
                               ["model.objective=softmax"], "val")]
        emit(table("word2vec on the planted-cluster corpus (20 clusters x 8 words)", rows,
                   ["neighbour_recall", "top1_accuracy"], "neighbour recall >= 0.9"))
    if "order" in only:
        rows = [train_and_eval(m, out_dir / f"order_{m}", []) for m in ("lstm_classifier", "bow_classifier")]
        emit(table("Word order matters (data=order, test split)", rows, ["accuracy"],
                   "LSTM near 1.0, bag-of-words near chance (0.5)"))
    if "kvcache" in only:
        emit(kv_cache_speed())
    if "captioning" in only:
        rows = [train_and_eval("captioning_lstm", out_dir / "caption_every_step", []),
                train_and_eval("captioning_lstm", out_dir / "caption_paper",
                               ["model.image_every_step=false"])]
        emit(table("Captioning shapes scenes (data=shapes_captions, test split)", rows,
                   ["exact_match", "token_accuracy"], "exact match >= 0.8 (default)"))
    if "bert" in only:
        pre = out_dir / "bert_pretrain"
        rows = [train_and_eval("bert", pre, [], "test")]
        emit(table("BERT pre-training (pydoc_bert, test split)", rows,
                   ["loss", "token_accuracy", "nsp_accuracy"], "masked-token accuracy well above chance"))
        ckpt = pre / "checkpoints" / "best.pt"
        rows = [train_and_eval("bert_finetune", out_dir / "bert_ft_pretrained", [f"init_from={ckpt}"]),
                train_and_eval("bert_finetune", out_dir / "bert_ft_scratch", [])]
        emit(table("BERT fine-tuning on shuffled-words detection (test split)", rows,
                   ["accuracy", "macro_f1"], "pre-trained encoder beats training from scratch"))
    if args.out:
        Path(args.out).write_text("\n".join(sections))


if __name__ == "__main__":
    main()
