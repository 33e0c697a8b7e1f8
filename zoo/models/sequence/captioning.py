"""Image captioning (one-to-many): a CNN encodes the image, an LSTM writes its description."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.data.batches import CaptionBatch
from zoo.layers.conv import ConvNormAct
from zoo.layers.decoding import greedy_decode
from zoo.layers.recurrent import State, make_recurrent
from zoo.models.base import ZooModel


class ShowAndTell(ZooModel):
    """Show and Tell (Vinyals et al. 2015): the image's CNN feature is the LSTM's first
    input (x_-1), then each word's embedding; every output predicts the next word, and at
    test time the predicted word is fed back as the next input.

    ``image_every_step`` (default) also concatenates the image feature to every word's
    embedding, as in the conditioned LSTMs of Mao et al. (m-RNN) and Donahue et al.
    (LRCN). With the image given only once, the LSTM first learns the caption language
    (which words follow which) and the image's influence grows slowly through one
    step's gradient; on a few thousand scenes on a CPU that stalls near the language-only
    baseline, while the every-step conditioning reads the image from the first epochs.
    ``image_every_step=false`` is the paper's model.

    The CNN's stages end in 2x2 max pooling (small objects on clutter survive max pooling
    better than strided convolutions); its last map is max-pooled over the *height* only,
    which keeps one feature per column: the captions name objects from left to right.
    ``predict(batch)`` returns greedy captions as ids (B, L) without ``<bos>``, padded
    after ``<eos>``.
    """

    task = "captioning"

    def __init__(self, *, vocab_size: int, image_size: int = 64, channels: int = 32,
                 embed_dim: int = 64, hidden_size: int = 256, num_layers: int = 1,
                 max_len: int = 16, image_every_step: bool = True, pad_id: int = 0,
                 bos_id: int = 1, eos_id: int = 2) -> None:
        super().__init__()
        self.vocab_size, self.max_len = vocab_size, max_len
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.image_every_step = bool(image_every_step)
        c = channels

        def stage(cin: int, cout: int, convs: int) -> list[nn.Module]:
            layers: list[nn.Module] = []
            for k in range(convs):
                # conv-BN-ReLU, unpacked into the flat Sequential its state dict is keyed by
                layers += list(ConvNormAct(cin if k == 0 else cout, cout, 3))
            return layers + [nn.MaxPool2d(2)]

        # (B, 3, S, S) -> (B, 2c, S/16, S/16); one conv at full resolution keeps it cheap
        self.cnn = nn.Sequential(*stage(3, c // 2, 1), *stage(c // 2, c, 2), *stage(c, 2 * c, 2),
                                 *stage(2 * c, 2 * c, 2))
        self.image_proj = nn.Linear(2 * c * (image_size // 16), embed_dim)
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        lstm_in = 2 * embed_dim if self.image_every_step else embed_dim
        self.lstm = make_recurrent("lstm", lstm_in, hidden_size, num_layers)
        self.head = nn.Linear(hidden_size, vocab_size)

    def image_feature(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, S, S) -> (B, E): the column-wise maxima of the CNN's last map."""
        return self.image_proj(self.cnn(images).amax(dim=2).flatten(1))

    def _inputs(self, words: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        """LSTM inputs for word ids (B, T) given the image feature (B, E)."""
        x = self.embed(words)
        if self.image_every_step:
            x = torch.cat([x, feat[:, None].expand(-1, x.shape[1], -1)], dim=-1)
        return x

    def encode(self, images: torch.Tensor) -> tuple[State, torch.Tensor]:
        """images (B, 3, S, S) -> (the LSTM state after reading the image feature as
        x_-1, the feature)."""
        feat = self.image_feature(images)
        first = torch.cat([feat, feat], dim=-1) if self.image_every_step else feat
        _, state = self.lstm(first[:, None, :])
        return state, feat

    def training_step(self, batch: Any, group: str = "main") -> dict[str, torch.Tensor]:
        images, captions = CaptionBatch.of(batch)
        state, feat = self.encode(images)
        out, _ = self.lstm(self._inputs(captions[:, :-1], feat), state)   # (B, T-1, H)
        logits = self.head(out)
        return {"loss": F.cross_entropy(logits.reshape(-1, self.vocab_size),
                                        captions[:, 1:].reshape(-1), ignore_index=self.pad_id)}

    @torch.no_grad()
    def caption(self, images: torch.Tensor) -> torch.Tensor:
        state, feat = self.encode(images)

        def step(tokens: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
            out, state = self.lstm(self._inputs(tokens[:, -1:], feat), state)
            return self.head(out[:, -1]).log_softmax(-1), state

        return greedy_decode(step, state, images.shape[0], self.bos_id, self.eos_id,
                             self.pad_id, self.max_len, images.device)

    @torch.no_grad()
    def predict(self, batch: Any) -> torch.Tensor:
        return self.caption(CaptionBatch.of(batch).images)
