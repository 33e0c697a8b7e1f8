"""What every generative text model shares: sampling the next token (temperature, top-k,
nucleus/top-p), the tokenizer kept inside the checkpoint, and the ``predict.py`` hook.

A language model mixes in ``TextGenerator``, defines ``generate(ids, max_new_tokens,
...)``, and gets ``predict.py run=DIR prompt="def " max_new_tokens=200 temperature=0.8
top_k=40 top_p=0.95 seed=0`` for free.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from zoo.errors import UserError, choices


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """Draw one token id per row from logits (B, V); returns (B,) int64.

    temperature 0 means greedy (argmax). top-k keeps the k most likely tokens; top-p keeps
    the smallest set whose probability reaches p (Holtzman et al. 2020), always at least
    the most likely token.
    """
    if temperature <= 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token once the mass before it already reaches p (the first always stays)
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


class TokenizerSlot(nn.Module):
    """Keeps the tokenizer's ``spec`` inside the model's state dict (as UTF-8 JSON bytes in
    a uint8 tensor, via PyTorch's extra-state hook), so a checkpoint alone can encode
    prompts and decode samples."""

    def __init__(self) -> None:
        super().__init__()
        self.spec: dict[str, Any] | None = None

    def get_extra_state(self) -> torch.Tensor:
        if self.spec is None:
            return torch.zeros(0, dtype=torch.uint8)
        return torch.tensor(list(json.dumps(self.spec).encode("utf-8")), dtype=torch.uint8)

    def set_extra_state(self, state: torch.Tensor) -> None:
        raw = bytes(state.cpu().tolist())
        self.spec = json.loads(raw.decode("utf-8")) if raw else None


def resolve_tokenizer(slot: TokenizerSlot, data: Any) -> Any:
    """The checkpoint's own tokenizer if it has one, else the data module's."""
    from zoo.data.text import tokenizer_from_spec

    if slot.spec is not None:
        return tokenizer_from_spec(slot.spec)
    tok = getattr(data, "tokenizer", None)
    if tok is None:
        raise UserError("this run keeps no tokenizer and its data config builds none; "
                        "generation needs a text data config (e.g. data=pydoc_text)")
    return tok


def parse_options(options: dict[str, str], spec: dict[str, Callable[[str], Any]],
                  defaults: dict[str, Any]) -> dict[str, Any]:
    """Convert ``key=value`` strings with ``spec[key]``; unknown keys and bad values raise
    UserError naming the valid keys."""
    out = dict(defaults)
    for k, v in options.items():
        if k not in spec:
            raise UserError(f"unknown option '{k}'; valid options: {choices(spec)}")
        try:
            out[k] = None if v in (None, "null", "None") else spec[k](v)
        except (TypeError, ValueError):
            raise UserError(f"bad value for {k}: {v!r}") from None
    return out


def text_option(v: Any) -> str:
    # a shell passes "\n" as two characters; a prompt usually means a newline
    return str(v).replace("\\n", "\n").replace("\\t", "\t")


GENERATION_OPTIONS: dict[str, Callable[[str], Any]] = {
    "prompt": text_option, "max_new_tokens": int, "temperature": float, "top_k": int,
    "top_p": float, "seed": int, "num_samples": int,
}
GENERATION_DEFAULTS: dict[str, Any] = {
    "prompt": "\n", "max_new_tokens": 200, "temperature": 0.8, "top_k": None, "top_p": None,
    "seed": None, "num_samples": 1,
}


class TextGenerator:
    """Mixin for language models with ``tokenizer_slot`` and ``generate``: fills the slot at
    the start of training and implements the ``predict.py`` hook."""

    tokenizer_slot: TokenizerSlot

    def on_train_start(self, data: Any, run_dir: str) -> None:
        tok = getattr(data, "tokenizer", None)
        if tok is not None:
            self.tokenizer_slot.spec = tok.spec()

    def generate(self, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def predict_cli(self, options: dict[str, str], data: Any,
                    output: pathlib.Path | None = None) -> None:
        opt = parse_options(options, GENERATION_OPTIONS, GENERATION_DEFAULTS)
        if opt["max_new_tokens"] < 0 or opt["num_samples"] < 1:
            raise UserError("max_new_tokens must be >= 0 and num_samples >= 1")
        if opt["top_p"] is not None and not 0 < opt["top_p"] <= 1:
            raise UserError(f"top_p must be in (0, 1], got {opt['top_p']}")
        tok = resolve_tokenizer(self.tokenizer_slot, data)
        prompt_ids = tok.encode(opt["prompt"])
        if not prompt_ids:
            raise UserError("the prompt is empty after tokenization; pass prompt=TEXT")
        device = next(self.parameters()).device  # type: ignore[attr-defined]
        gen = torch.Generator(device=device)
        gen.manual_seed(opt["seed"] if opt["seed"] is not None else torch.seed())
        ids = torch.tensor([prompt_ids] * opt["num_samples"], dtype=torch.int64, device=device)
        out = self.generate(ids, opt["max_new_tokens"], opt["temperature"], opt["top_k"],
                            opt["top_p"], generator=gen)
        texts = [tok.decode(row.tolist()) for row in out]
        text = "\n\n-----\n\n".join(texts)
        print(text)
        if output is not None:
            output = pathlib.Path(output)
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text + "\n", encoding="utf-8")
