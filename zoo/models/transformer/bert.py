"""BERT: bidirectional Transformer encoder pre-trained by masked-LM and next-sentence
prediction, then fine-tuned with a classification head (Devlin et al. 2019)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zoo.data.tokenizers import TokenizerSlot
from zoo.layers.attention import TransformerBlock, padding_mask
from zoo.models.base import ZooModel

PAD_ID, MASK_ID = 0, 4  # zoo.data.tokenizers.SPECIALS


class BertEncoder(nn.Module):
    """Token + learned position + segment embeddings, LayerNorm, N post-norm GELU blocks
    with full (bidirectional) self-attention, and the pooler: tanh(W h_[CLS]), the
    sentence vector NSP trains and classification heads read."""

    def __init__(self, vocab_size: int, max_len: int, dim: int, num_layers: int, num_heads: int,
                 ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        self.pos_emb = nn.Embedding(max_len, dim)
        self.seg_emb = nn.Embedding(2, dim)
        self.emb_norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, ff_dim, dropout, norm_first=False, activation="gelu")
            for _ in range(num_layers))
        self.pooler = nn.Sequential(nn.Linear(dim, dim), nn.Tanh())
        self.apply(_init_weights)

    def forward(self, input_ids: torch.Tensor, segment_ids: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) ids -> hidden states (B, T, D) and pooled [CLS] vectors (B, D)."""
        T = input_ids.shape[1]
        if segment_ids is None:
            segment_ids = torch.zeros_like(input_ids)
        pos = torch.arange(T, device=input_ids.device)
        x = self.tok_emb(input_ids) + self.pos_emb(pos) + self.seg_emb(segment_ids)
        x = self.drop(self.emb_norm(x))
        mask = padding_mask(input_ids, PAD_ID)   # (B, 1, 1, T): no attention to padding
        for block in self.blocks:
            x = block(x, mask=mask)
        return x, self.pooler(x[:, 0])


def _init_weights(m: nn.Module) -> None:
    # BERT's truncated-normal(0.02) initialisation, approximated by a normal
    if isinstance(m, (nn.Linear, nn.Embedding)):
        nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            nn.init.zeros_(m.weight[m.padding_idx])
    if isinstance(m, nn.Linear) and m.bias is not None:
        nn.init.zeros_(m.bias)


class BERT(ZooModel):
    """BERT pre-training: masked-LM head (dense, GELU, LayerNorm, then the token embedding
    transposed plus a bias) on the masked positions, and a next-sentence head on the pooled
    [CLS]; the loss is their sum. Batches come from ``zoo.data.bert.BertPretrainData``.

    ``predict`` returns the pair ``(mlm_logits (B, T, V), nsp_logits (B, 2))``; the
    masked-LM task (``zoo.tasks.masked_lm``) fills in text with it.
    """

    task = "masked_lm"

    def __init__(self, *, vocab_size: int, max_len: int = 128, dim: int = 128,
                 num_layers: int = 4, num_heads: int = 4, ff_dim: int = 512,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.bert = BertEncoder(vocab_size, max_len, dim, num_layers, num_heads, ff_dim, dropout)
        self.mlm_transform = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))
        self.mlm_bias = nn.Parameter(torch.zeros(vocab_size))
        self.nsp_head = nn.Linear(dim, 2)
        self.tokenizer_slot = TokenizerSlot()
        self.mlm_transform.apply(_init_weights)
        self.nsp_head.apply(_init_weights)

    def forward(self, input_ids: torch.Tensor, segment_ids: torch.Tensor | None = None
                ) -> dict[str, torch.Tensor]:
        hidden, pooled = self.bert(input_ids, segment_ids)
        # tied output: scores against the input embedding matrix (B, T, V)
        mlm = self.mlm_transform(hidden) @ self.bert.tok_emb.weight.T + self.mlm_bias
        return {"mlm_logits": mlm, "nsp_logits": self.nsp_head(pooled)}

    def training_step(self, batch: dict[str, torch.Tensor], group: str = "main"
                      ) -> dict[str, torch.Tensor]:
        out = self(batch["input_ids"], batch["segment_ids"])
        labels = batch["mlm_labels"]
        # zero, not NaN, for a batch where nothing was chosen
        mlm = F.cross_entropy(out["mlm_logits"].reshape(-1, self.vocab_size), labels.reshape(-1),
                              ignore_index=-100, reduction="sum") / (labels != -100).sum().clamp(min=1)
        nsp = F.cross_entropy(out["nsp_logits"], batch["nsp_label"])
        return {"loss_mlm": mlm, "loss_nsp": nsp}

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        out = self(batch["input_ids"], batch["segment_ids"])
        return out["mlm_logits"], out["nsp_logits"]

    def max_positions(self) -> int:
        """The longest input, [CLS] and [SEP] included."""
        return self.bert.pos_emb.num_embeddings

    def on_train_start(self, data: Any, run_dir: str) -> None:
        tok = getattr(data, "tokenizer", None)
        if tok is not None:
            self.tokenizer_slot.spec = tok.spec()


class BertClassifier(ZooModel):
    """BERT fine-tuning: the pre-trained ``BertEncoder`` (same attribute name ``bert``, so
    ``init_from=PRETRAIN_RUN/checkpoints/best.pt`` loads it) and a new dropout + linear
    head on the pooled [CLS] vector, trained end to end on labelled sequences."""

    task = "classification"

    def __init__(self, *, vocab_size: int, num_classes: int, max_len: int = 128, dim: int = 128,
                 num_layers: int = 4, num_heads: int = 4, ff_dim: int = 512,
                 dropout: float = 0.1) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.bert = BertEncoder(vocab_size, max_len, dim, num_layers, num_heads, ff_dim, dropout)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, num_classes))
        self.classifier.apply(_init_weights)

    def forward(self, input_ids: torch.Tensor, segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.bert(input_ids, segment_ids)[1])

    def training_step(self, batch: dict[str, torch.Tensor], group: str = "main"
                      ) -> dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(self(batch["input_ids"], batch["segment_ids"]), batch["label"])}

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self(batch["input_ids"], batch["segment_ids"])
