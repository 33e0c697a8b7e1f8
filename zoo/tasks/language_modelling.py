"""Language modelling: next-token logits (B, T, V) for a ``TokenBatch`` (inputs, targets).

Evaluator: loss, perplexity, bits per character and token accuracy. ``predict.py
prompt=TEXT max_new_tokens=N [temperature=T top_k=K top_p=P seed=S num_samples=N]``
samples continuations with the tokenizer kept in the checkpoint; ``speculative=true``
decodes greedily with the model's own draft modules (multi-token prediction) and prints
the acceptance rate. Generation is bounded (``MAX_NEW_TOKENS``) and long generations
show a progress bar.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from zoo.data.batches import TokenBatch
from zoo.errors import UserError
from zoo.tasks.base import (
    EvaluatorGroup,
    Option,
    Task,
    evaluator_spec,
    model_device,
    shape_of,
    write_text,
)

MAX_NEW_TOKENS = 100_000   # a bound on predict.py's generation; a CPU makes ~1000 tokens/s
CHUNK = 256                # longer generations run in chunks of this many tokens, with a bar


def resolve_tokenizer(model: Any, data: Any) -> Any:
    """The checkpoint's own tokenizer if it keeps one, else the data module's."""
    from zoo.data.text import tokenizer_from_spec

    spec = model.tokenizer_slot.spec
    if spec is not None:
        return tokenizer_from_spec(spec)
    tok = getattr(data, "tokenizer", None)
    if tok is None:
        raise UserError("this run keeps no tokenizer and its data config builds none; "
                        "generation needs a text data config (e.g. data=pydoc_text)")
    return tok


def generate(model: Any, ids: torch.Tensor, max_new_tokens: int, temperature: float,
             top_k: int | None, top_p: float | None, generator: torch.Generator,
             progress: bool | None = None) -> torch.Tensor:
    """``model.generate`` in chunks of ``CHUNK`` tokens with a progress bar once the
    generation is longer than one chunk (each chunk continues the text so far, so the
    result is the same continuation up to floating-point rounding)."""
    if max_new_tokens <= CHUNK:
        return model.generate(ids, max_new_tokens, temperature, top_k, top_p, generator=generator)
    from tqdm.auto import tqdm

    bar = tqdm(total=max_new_tokens, desc="generating", unit="tok", leave=False,
               dynamic_ncols=True, disable=progress is False)
    out, left = ids, max_new_tokens
    try:
        while left > 0:
            n = min(CHUNK, left)
            out = model.generate(out, n, temperature, top_k, top_p, generator=generator)
            left -= n
            bar.update(n)
    finally:
        bar.close()
    return out


class LanguageModellingTask(Task):
    name = "language_modelling"
    title = "language models"
    predict_options: ClassVar[dict[str, Option]] = {
        "prompt": Option("text", "\n", "text to continue", metavar="TEXT"),
        "max_new_tokens": Option("int", 200, "tokens to add", low=0, high=MAX_NEW_TOKENS),
        "temperature": Option("float", 0.8, "0 = greedy", low=0, metavar="T"),
        "top_k": Option("int", None, "sample among the k most likely", low=1, nullable=True, metavar="K"),
        "top_p": Option("float", None, "nucleus sampling mass", low=0, low_open=True, high=1,
                        nullable=True, metavar="P"),
        "seed": Option("int", None, "repeatable samples", low=0, nullable=True, metavar="S"),
        "num_samples": Option("int", 1, "continuations of the same prompt", low=1, high=1000),
        "speculative": Option("str", "false", "greedy; MTP modules draft, the model verifies",
                              choices=("true", "false")),
    }
    predict_writes = "samples.txt"

    def build_evaluator(self, model: Any, meta: Mapping[str, Any], spec: Any = None) -> Any:
        from zoo.metrics.language import LanguageModelEvaluator

        evaluator_spec(spec, self.evaluator_keys, self.name)
        main = LanguageModelEvaluator(meta.get("chars_per_token"))
        extra = model.extra_evaluators()
        return EvaluatorGroup({"lm": main, **extra}) if extra else main

    def check_output(self, predictions: Any, batch: Any) -> None:
        targets = TokenBatch.of(batch).targets
        ok = (isinstance(predictions, torch.Tensor) and predictions.ndim == 3
              and predictions.is_floating_point() and predictions.shape[:2] == targets.shape)
        if not ok:
            raise self.fail(f"expected next-token logits ({', '.join(map(str, targets.shape))}, V), "
                            f"got {shape_of(predictions)}")

    @torch.no_grad()
    def predict(self, run: Any, options: Mapping[str, str], output: Path | None) -> list[Path]:
        opt = self.parse_predict(options)
        model = run.model
        tok = resolve_tokenizer(model, run.data)
        prompt_ids = tok.encode(opt["prompt"])
        if not prompt_ids:
            raise UserError("the prompt is empty after tokenization; pass prompt=TEXT")
        device = model_device(model)
        gen = torch.Generator(device=device)
        gen.manual_seed(opt["seed"] if opt["seed"] is not None else torch.seed())
        ids = torch.tensor([prompt_ids] * opt["num_samples"], dtype=torch.int64, device=device)
        if opt["speculative"] == "true":
            if "temperature" in options and opt["temperature"] > 0:
                raise UserError("speculative=true decodes greedily; drop temperature= or pass temperature=0")
            out, stats = model.generate_speculative(ids, opt["max_new_tokens"])
            print(f"speculative decoding: acceptance rate {stats['acceptance_rate']:.3f}, "
                  f"{stats['tokens_per_main_call']:.2f} tokens per main-model call", file=sys.stderr)
        else:
            out = generate(model, ids, opt["max_new_tokens"], opt["temperature"], opt["top_k"],
                           opt["top_p"], gen)
        text = "\n\n-----\n\n".join(tok.decode(row.tolist()) for row in out)
        print(text)
        return write_text(output, "samples.txt", text)
