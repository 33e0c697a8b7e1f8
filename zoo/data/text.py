"""Text data, split into :mod:`zoo.data.tokenizers` (character and byte-level BPE
tokenizers), :mod:`zoo.data.corpora` (the pydoc corpus, text files, ``TextData``) and
:mod:`zoo.data.bert` (BERT's pre-training and fine-tuning data).

The names stay importable from here: configs and the ``config.yaml`` of older run
directories name ``zoo.data.text.TextData``, ``BertPretrainData`` and
``ShuffledWordsData``.
"""

from zoo.data.bert import BertPretrainData, ShuffledWordsData, mask_tokens
from zoo.data.corpora import (
    LMStreams,
    LMWindows,
    TextData,
    load_corpus,
    pydoc_corpus,
    read_text_file,
    split_bounds,
)
from zoo.data.tokenizers import (
    CLS,
    MASK,
    PAD,
    SEP,
    SPECIALS,
    TOKENIZERS,
    UNK,
    ByteBPETokenizer,
    CharTokenizer,
    Tokenizer,
    build_tokenizer,
    tokenizer_from_spec,
)

__all__ = [
    "CLS",
    "MASK",
    "PAD",
    "SEP",
    "SPECIALS",
    "TOKENIZERS",
    "UNK",
    "BertPretrainData",
    "ByteBPETokenizer",
    "CharTokenizer",
    "LMStreams",
    "LMWindows",
    "ShuffledWordsData",
    "TextData",
    "Tokenizer",
    "build_tokenizer",
    "load_corpus",
    "mask_tokens",
    "pydoc_corpus",
    "read_text_file",
    "split_bounds",
    "tokenizer_from_spec",
]
