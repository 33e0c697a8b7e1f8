"""What every generative text model shares: sampling the next token (temperature, top-k,
nucleus/top-p; in :mod:`zoo.layers.decoding`), the tokenizer kept inside the checkpoint,
and the ``predict.py`` hook.

A language model mixes in ``TextGenerator``, defines ``generate(ids, max_new_tokens,
...)``, and gets ``predict.py run=DIR prompt="def " max_new_tokens=200 temperature=0.8
top_k=40 top_p=0.95 seed=0`` for free.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable
from typing import Any

import torch

from zoo.data.tokenizers import TokenizerSlot
from zoo.errors import UserError, choices
from zoo.layers.decoding import sample_next

__all__ = ["GENERATION_DEFAULTS", "GENERATION_OPTIONS", "TextGenerator", "TokenizerSlot",
           "parse_options", "resolve_tokenizer", "sample_next", "text_option"]


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
