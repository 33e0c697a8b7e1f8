"""Word embeddings (word2vec): the (B, D) vectors of a ``WordBatch``'s words.

Evaluator: recovery of planted word clusters by nearest neighbours. ``predict.py
word=c03_1,the00 [k=5]`` prints nearest neighbours; ``output=DIR`` (or ``export=PATH``)
writes every vector in word2vec's text format.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch

from zoo.data.batches import WordBatch
from zoo.errors import UserError
from zoo.tasks.base import Option, Task, evaluator_spec, model_device, output_dir, shape_of


class EmbeddingsTask(Task):
    name = "embeddings"
    title = "word embeddings"
    predict_options: ClassVar[dict[str, Option]] = {
        "word": Option("str", None, "words to find neighbours of", metavar="WORD[,WORD...]"),
        "k": Option("int", 5, "neighbours per word", low=1, high=1000),
        "export": Option("str", None, "write every vector to this file", metavar="PATH"),
    }
    predict_writes = "vectors.txt"

    def build_evaluator(self, model: Any, meta: Mapping[str, Any], spec: Any = None) -> Any:
        from zoo.metrics.language import NeighbourEvaluator

        evaluator_spec(spec, self.evaluator_keys, self.name)
        return NeighbourEvaluator()

    def check_output(self, predictions: Any, batch: Any) -> None:
        n = len(WordBatch.of(batch).words)
        ok = (isinstance(predictions, torch.Tensor) and predictions.ndim == 2
              and predictions.shape[0] == n and predictions.is_floating_point())
        if not ok:
            raise self.fail(f"expected ({n}, D) word vectors, got {shape_of(predictions)}")

    @torch.no_grad()
    def predict(self, run: Any, options: Mapping[str, str], output: Path | None) -> list[Path]:
        opt = self.parse_predict(options)
        model = run.model
        words = list(run.data.meta.get("words") or [])
        if not words:
            raise UserError("this run's data config has no vocabulary (data.meta['words'])")
        if not opt["word"] and not opt["export"] and output is None:
            raise UserError("pass word=WORD[,WORD...] for neighbours, or output=DIR (or export=PATH) "
                            "for the vectors")
        written = []
        for path in ([output_dir(output) / "vectors.txt"] if output is not None else []) + \
                ([Path(opt["export"])] if opt["export"] else []):
            model.export_text(path, words)
            written.append(path)
        if opt["word"]:
            index = {w: i for i, w in enumerate(words)}
            k = min(opt["k"], len(words) - 1)
            for word in str(opt["word"]).split(","):
                if word not in index:
                    raise UserError(f"unknown word '{word}'; examples: {', '.join(words[:5])} ...")
                ids, sims = model.nearest(torch.tensor([index[word]], device=model_device(model)), k)
                pairs = ", ".join(f"{words[i]} ({s:.3f})" for i, s in zip(ids[0].tolist(), sims[0].tolist()))
                print(f"{word}: {pairs}")
        return written
