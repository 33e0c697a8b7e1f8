"""Tokenizers, the text data modules and BERT's masking."""

from __future__ import annotations

import pytest
import torch

from zoo.data.text import (
    CLS,
    MASK,
    SEP,
    SPECIALS,
    BertPretrainData,
    ByteBPETokenizer,
    CharTokenizer,
    LMStreams,
    ShuffledWordsData,
    TextData,
    build_tokenizer,
    mask_tokens,
    tokenizer_from_spec,
)
from zoo.errors import DataError, UserError

TEXT = "def f(x):\n    return x * 2  # doubles x\n" * 20 + "naïve café — ünïcode\n"


def test_char_tokenizer_round_trip_and_unknowns():
    tok = CharTokenizer.train(TEXT, vocab_size=64)
    assert tok.itos[: len(SPECIALS)] == list(SPECIALS)
    assert tok.decode(tok.encode(TEXT)) == TEXT
    assert tok.encode("€") == [tok.unk]  # unseen character
    small = CharTokenizer.train("aaab", vocab_size=len(SPECIALS) + 1)
    assert small.chars == ["a"] and small.encode("ab") == [5, small.unk]


def test_bpe_round_trip_deterministic_and_compresses():
    a = ByteBPETokenizer.train(TEXT, vocab_size=300)
    b = ByteBPETokenizer.train(TEXT, vocab_size=300)
    assert a.merges == b.merges and len(a.merges) == 300 - 261
    for s in (TEXT, "unseen ☃ text\n\twith tabs", ""):
        assert a.decode(a.encode(s)) == s
    assert len(a.encode(TEXT)) < len(TEXT.encode("utf-8")) / 2
    # merged tokens stand for the bytes they replace
    assert sum(a.token_lengths(300)[i] for i in a.encode(TEXT)) == len(TEXT.encode("utf-8"))


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_tokenizer_spec_round_trip(kind):
    tok = build_tokenizer(kind, TEXT, 280)
    again = tokenizer_from_spec(tok.spec())
    assert again.encode(TEXT) == tok.encode(TEXT)
    assert again.decode(tok.encode(TEXT)) == TEXT


def test_bad_tokenizer_settings():
    with pytest.raises(UserError):
        build_tokenizer("word", TEXT, 100)
    with pytest.raises(UserError):
        ByteBPETokenizer.train(TEXT, 100)


def test_text_file_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        TextData(path=str(tmp_path / "missing.txt")).dataset("train")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="UTF-8"):
        _ = TextData(path=str(bad)).meta
    short = tmp_path / "short.txt"
    short.write_text("tiny text")
    with pytest.raises(DataError, match="seq_len"):
        TextData(path=str(short), seq_len=16).dataset("val")


def test_text_file_windows(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(TEXT)
    data = TextData(path=str(f), seq_len=8, batch_size=2, vocab_size=64)
    x, y = data.dataset("train")[3]
    assert x.shape == y.shape == (8,) and torch.equal(x[1:], y[:-1])
    assert data.shuffle and data.meta["chars_per_token"][5] == 1


def test_streams_continue_across_batches():
    ids = torch.arange(1000)
    ds = LMStreams(ids, seq_len=10, streams=4)
    batches = [torch.stack([ds[k * 4 + b][0] for b in range(4)]) for k in range(len(ds) // 4)]
    for k in range(len(batches) - 1):
        # row b of batch k+1 starts where row b of batch k ended
        assert torch.equal(batches[k + 1][:, 0], batches[k][:, -1] + 1)
    assert torch.equal(ds[0][1], ds[0][0] + 1)
    assert not TextData(batch_size=4, seq_len=16, contiguous=True).shuffle


def test_bert_masking_proportions():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(len(SPECIALS), 100, (400, 250), generator=g)
    ids[:, 0], ids[:, -1] = CLS, SEP
    maskable = ids >= len(SPECIALS)
    out, labels = mask_tokens(ids, maskable, 100, 0.15, g)
    chosen = labels != -100
    n = int(chosen.sum())
    assert abs(n / int(maskable.sum()) - 0.15) < 0.005
    assert not chosen[:, 0].any() and not chosen[:, -1].any()  # never [CLS]/[SEP]
    assert torch.equal(labels[chosen], ids[chosen])
    masked = (out == MASK) & chosen
    unchanged = (out == ids) & chosen
    randomised = chosen & ~masked & ~unchanged
    assert abs(int(masked.sum()) / n - 0.8) < 0.01
    # a random token can by chance equal the original: 10% unchanged + 10% * 1/95
    assert abs(int(unchanged.sum()) / n - (0.1 + 0.1 / 95)) < 0.01
    assert abs(int(randomised.sum()) / n - (0.1 - 0.1 / 95)) < 0.01
    assert torch.equal(out[~chosen], ids[~chosen])
    assert (out[randomised] >= len(SPECIALS)).all()


def test_bert_pairs():
    data = BertPretrainData(batch_size=4, seq_len=21)
    val = data.dataset("val")
    item = val[5]
    assert item["input_ids"].shape == (21,) and item["input_ids"][0] == CLS
    assert (item["input_ids"] == SEP).sum() == 2 and item["segment_ids"].sum() == 10
    assert torch.equal(val[5]["input_ids"], item["input_ids"])  # validation is fixed
    labels = torch.stack([val[i]["nsp_label"] for i in range(400)]).float()
    assert 0.4 < labels.mean() < 0.6
    nxt = next(i for i in range(400) if val[i]["nsp_label"] == 1)
    pair = val[nxt]
    a_ids = torch.where(pair["mlm_labels"] != -100, pair["mlm_labels"], pair["input_ids"])
    seg = val.segments
    assert torch.equal(a_ids[1:10], seg[nxt]) and torch.equal(a_ids[11:20], seg[nxt + 1])


def test_shuffled_words_task_is_fixed_and_balanced():
    data = ShuffledWordsData(batch_size=4, seq_len=40, num_classes=2)
    ds = data.dataset("val")
    labels = torch.stack([ds[i]["label"] for i in range(len(ds))]).float()
    assert 0.35 < labels.mean() < 0.65
    assert torch.equal(ds[3]["input_ids"], ds[3]["input_ids"]) and ds[3]["input_ids"].shape == (40,)
