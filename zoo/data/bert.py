"""BERT's data (Devlin et al. 2019): masked-LM corruption, sentence pairs for next-sentence
prediction, and a shuffled-words classification task for fine-tuning, all cut from a
``TextData`` corpus with its tokenizer."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from zoo.data.corpora import TextData
from zoo.data.tokenizers import CLS, MASK, PAD, SEP, SPECIALS, Tokenizer
from zoo.errors import DataError


def mask_tokens(ids: torch.Tensor, maskable: torch.Tensor, vocab_size: int,
                mask_prob: float = 0.15, generator: torch.Generator | None = None,
                first_random: int = len(SPECIALS)) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masked-LM corruption (Devlin et al. 2019).

    Each ``maskable`` position is chosen with probability ``mask_prob``; a chosen token
    becomes ``<mask>`` 80% of the time, a random token (ids ``first_random`` ..
    ``vocab_size - 1``) 10%, and stays unchanged 10% (so the model cannot assume an
    unmasked token is correct). Returns the corrupted ids and the labels: the original
    id at chosen positions, -100 elsewhere (only chosen positions are scored).
    """
    chosen = (torch.rand(ids.shape, generator=generator) < mask_prob) & maskable
    action = torch.rand(ids.shape, generator=generator)
    random_ids = torch.randint(first_random, vocab_size, ids.shape, generator=generator)
    out = ids.clone()
    out = torch.where(chosen & (action < 0.8), torch.full_like(ids, MASK), out)
    out = torch.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, out)
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    return out, labels


class _SentencePairs(Dataset):
    """Item i: ``[CLS] A [SEP] B [SEP]`` with A = segment i and B = segment i + 1 (label 1,
    "is next") or a random other segment (label 0), then masked-LM corruption."""

    def __init__(self, ids: torch.Tensor, seg_len: int, vocab_size: int, mask_prob: float,
                 seed: int | None) -> None:
        self.segments = ids[: len(ids) // seg_len * seg_len].view(-1, seg_len)  # (n, L)
        self.vocab_size, self.mask_prob, self.seed = vocab_size, mask_prob, seed

    def __len__(self) -> int:
        return max(len(self.segments) - 1, 0)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        # validation/test draw from a generator seeded by the index: the same pairs and
        # masks every time; training draws from the global RNG: new ones every epoch
        g = None if self.seed is None else torch.Generator().manual_seed(self.seed * 1_000_003 + i)
        n = len(self.segments)
        is_next = bool(torch.rand((), generator=g) < 0.5) or n < 3
        if is_next:
            j = i + 1
        else:
            j = int(torch.randint(0, n - 2, (), generator=g))
            j = j if j < i else j + 2  # any segment except i and i + 1
        a, b = self.segments[i], self.segments[j]
        ids = torch.cat([torch.tensor([CLS]), a, torch.tensor([SEP]), b, torch.tensor([SEP])])
        segment = torch.cat([torch.zeros(len(a) + 2, dtype=torch.int64),
                             torch.ones(len(b) + 1, dtype=torch.int64)])
        maskable = ids >= len(SPECIALS)
        inputs, labels = mask_tokens(ids, maskable, self.vocab_size, self.mask_prob, g)
        return {"input_ids": inputs, "segment_ids": segment, "mlm_labels": labels,
                "nsp_label": torch.tensor(int(is_next))}


class BertPretrainData(TextData):
    """BERT pre-training batches from a text: dicts with ``input_ids``, ``segment_ids`` and
    ``mlm_labels`` (B, seq_len) and ``nsp_label`` (B,), segments of (seq_len - 3) // 2
    tokens. Same tokenizer settings as ``TextData``, so a GPT and a BERT share ids."""

    collate_fn = None  # dict samples: torch's default collate keeps the keys

    def __init__(self, *, mask_prob: float = 0.15, seed: int = 1234, **kw: Any) -> None:
        super().__init__(**kw)
        self._meta.update(mask_prob=mask_prob, seed=seed)
        self.mask_prob, self.seed = float(mask_prob), int(seed)
        self.shuffle = True

    def build(self, split: str) -> Dataset:
        seg_len = (self.seq_len - 3) // 2
        ids = self.encode_split(split)
        ds = _SentencePairs(ids, seg_len, self.tokenizer.vocab_size, self.mask_prob,
                            None if split == "train" else self.seed)
        if len(ds) < 3:
            raise DataError(f"the {split} part of the text has {len(ids)} tokens, too few for "
                            f"sentence pairs of {seg_len} tokens; use a longer text or a "
                            "smaller data.seq_len")
        return ds


class _ShuffledWindows(Dataset):
    def __init__(self, text: str, width: int, tokenizer: Tokenizer, seed: int) -> None:
        self.text, self.width, self.tokenizer, self.seed = text, width, tokenizer, seed
        self.n = len(text) // width

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        import random

        rng = random.Random(self.seed * 1_000_003 + i)  # a fixed dataset: same label every epoch
        s = self.text[i * self.width: (i + 1) * self.width]
        words = s.split(" ")
        label = int(rng.random() < 0.5 and len(set(words)) > 2)
        if label:
            original = list(words)
            while words == original:
                rng.shuffle(words)
            s = " ".join(words)
        ids = self.tokenizer.encode(s)[: self.width]
        ids = [CLS] + ids + [SEP]
        ids = ids + [PAD] * (self.width + 2 - len(ids))
        return {"input_ids": torch.tensor(ids), "segment_ids": torch.zeros(len(ids), dtype=torch.int64),
                "label": torch.tensor(label)}


class ShuffledWordsData(TextData):
    """A text classification task for fine-tuning: windows of ``seq_len - 2`` tokens of the
    text, half of them with their words shuffled; label 1 = shuffled. Deciding needs a
    feel for the language, which pre-training provides. Batches are dicts with
    ``input_ids``, ``segment_ids`` (B, seq_len) and ``label`` (B,)."""

    collate_fn = None  # dict samples: torch's default collate keeps the keys

    def __init__(self, *, seed: int = 1234, **kw: Any) -> None:
        super().__init__(**kw)
        self._meta.update(seed=seed)
        self.seed = int(seed)
        self.shuffle = True

    def build(self, split: str) -> Dataset:
        tok = self.tokenizer
        ds = _ShuffledWindows(self._split_text[split], self.seq_len - 2, tok, self.seed)
        if len(ds) == 0:
            raise DataError(f"the {split} part of the text is shorter than one window of "
                            f"{self.seq_len - 2} characters; use a longer text")
        return ds
