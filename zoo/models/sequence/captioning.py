"""Image captioning (one-to-many): a CNN encodes the image, an LSTM writes its description."""

from __future__ import annotations

import pathlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.engine.errors import UserError
from zoo.metrics.language import ExactMatchEvaluator
from zoo.models.base import ZooModel
from zoo.models.sequence.decoding import greedy_decode
from zoo.models.sequence.generation import parse_options
from zoo.models.sequence.recurrent import State, make_recurrent


class ShowAndTell(ZooModel):
    """Show and Tell (Vinyals et al. 2015): the image's CNN feature is the LSTM's first
    input (x_-1), then each word's embedding; every output predicts the next word, and at
    test time the predicted word is fed back as the next input.

    The small CNN keeps a coarse spatial grid (flattened, not globally pooled) because
    the captions say which object is on the left. ``predict(batch)`` returns greedy
    captions as ids (B, L) without ``<bos>``, padded after ``<eos>``.
    """

    def __init__(self, *, vocab_size: int, image_size: int = 64, channels: int = 32,
                 embed_dim: int = 64, hidden_size: int = 256, num_layers: int = 1,
                 max_len: int = 16, pad_id: int = 0, bos_id: int = 1, eos_id: int = 2) -> None:
        super().__init__()
        self.vocab_size, self.max_len = vocab_size, max_len
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        c = channels
        # four stages of two 3x3 convs, each halving the side: (B, 3, S, S) -> (B, 2c, S/16, S/16)
        widths = [3, c, c, 2 * c, 2 * c]
        self.cnn = nn.Sequential(*[layer for k in range(4) for layer in (
            nn.Conv2d(widths[k], widths[k + 1], 3, 1, 1), nn.BatchNorm2d(widths[k + 1]), nn.ReLU(),
            nn.Conv2d(widths[k + 1], widths[k + 1], 3, 2, 1), nn.BatchNorm2d(widths[k + 1]), nn.ReLU())])
        grid = -(-image_size // 16)
        self.image_proj = nn.Linear(2 * c * grid * grid, embed_dim)
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.lstm = make_recurrent("lstm", embed_dim, hidden_size, num_layers)
        self.head = nn.Linear(hidden_size, vocab_size)

    def encode(self, images: torch.Tensor) -> State:
        """images (B, 3, S, S) -> the LSTM state after reading the image feature."""
        feat = self.image_proj(self.cnn(images).flatten(1))      # (B, E)
        _, state = self.lstm(feat[:, None, :])
        return state

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        images, captions = batch
        out, _ = self.lstm(self.embed(captions[:, :-1]), self.encode(images))   # (B, T-1, H)
        logits = self.head(out)
        return {"loss": F.cross_entropy(logits.reshape(-1, self.vocab_size),
                                        captions[:, 1:].reshape(-1), ignore_index=self.pad_id)}

    def _step(self, tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        out, state = self.lstm(self.embed(tokens[:, -1:]), state)
        return self.head(out[:, -1]).log_softmax(-1), state

    @torch.no_grad()
    def caption(self, images: torch.Tensor) -> torch.Tensor:
        return greedy_decode(self._step, self.encode(images), images.shape[0], self.bos_id,
                             self.eos_id, self.pad_id, self.max_len, images.device)

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        return self.caption(batch[0])

    def build_evaluator(self, meta: dict) -> ExactMatchEvaluator:
        return ExactMatchEvaluator(eos_id=self.eos_id, pad_id=self.pad_id, skip=1)

    def log_images(self, batch: Any, predictions: Any) -> dict[str, torch.Tensor]:
        return {"scene": batch[0][0].clamp(0, 1)}

    @torch.no_grad()
    def predict_cli(self, options: dict[str, str], data: Any,
                    output: pathlib.Path | None = None) -> None:
        """``predict.py run=DIR split=test index=0 count=5`` captions generated scenes and
        prints them beside the true captions."""
        opt = parse_options(options, {"split": str, "index": int, "count": int},
                            {"split": "test", "index": 0, "count": 5})
        ds = data.dataset(opt["split"])
        if not 0 <= opt["index"] < len(ds):
            raise UserError(f"index must be in 0..{len(ds) - 1}")
        idx = range(opt["index"], min(opt["index"] + opt["count"], len(ds)))
        images = torch.stack([ds[i][0] for i in idx]).to(self.head.weight.device)
        lines = []
        for i, ids in zip(idx, self.caption(images).tolist()):
            truth = data.vocab.decode(ds[i][1][1:].tolist())
            lines.append(f"{i}: {data.vocab.decode(ids)}   (true: {truth})")
        print("\n".join(lines))
        if output is not None:
            pathlib.Path(output).write_text("\n".join(lines) + "\n", encoding="utf-8")
