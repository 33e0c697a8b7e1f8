"""Sampling, decoding, the tokenizer kept in checkpoints, and the predict.py hooks."""

from __future__ import annotations

import pytest
import torch

from zoo.data.seq_tasks import SeqTaskData
from zoo.data.text import TextData
from zoo.errors import UserError
from zoo.layers.decoding import beam_search, greedy_decode, sample_next
from zoo.models.sequence.language_model import RecurrentLM
from zoo.models.sequence.seq2seq import Seq2SeqLSTM
from zoo.models.transformer.gpt import GPT
from zoo.models.transformer.transformer import Transformer

def predict_cli(model, options, data, output=None):
    """What ``predict.py`` does with this model: its task's mode on a run of it."""
    from pathlib import Path
    from types import SimpleNamespace

    from zoo.tasks import task_of

    run = SimpleNamespace(model=model, data=data, run_dir="RUN")
    return task_of(model).predict(run, options, Path(output) if output is not None else None)



def test_sample_next_filters():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    g = torch.Generator().manual_seed(0)
    assert (sample_next(logits, temperature=0.0) == 0).all()
    assert set(sample_next(logits, top_k=2, generator=g).tolist()) == {0, 1}
    # top-p 0.7: 0.5 alone is short of 0.7, 0.5 + 0.3 reaches it -> tokens {0, 1}
    assert set(sample_next(logits, top_p=0.7, generator=g).tolist()) == {0, 1}
    assert set(sample_next(logits, top_p=0.1, generator=g).tolist()) == {0}
    freq = sample_next(logits, generator=g).bincount(minlength=4).float() / 2000
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.04)
    # low temperature sharpens towards the mode
    cold = sample_next(logits, temperature=0.2, generator=g).bincount(minlength=4)[0] / 2000
    assert cold > 0.9


def _toy_step(table):
    """A decoder whose next-token log-probs depend only on the previous token."""
    def step(tokens, state):
        return table[tokens[:, -1]], state
    return step


def test_beam_search_finds_the_best_sequence_greedy_misses():
    # from <bos>=1: token 3 looks best (0.6) but leads to poor continuations; 4 (0.4) to <eos>
    V = 5
    p = torch.full((V, V), 1e-9)
    p[1, 3], p[1, 4] = 0.6, 0.4
    p[3, 2], p[3, 3], p[3, 4] = 0.34, 0.33, 0.33
    p[4, 2] = 1.0
    p[2, 2] = 1.0
    table = (p / p.sum(1, keepdim=True)).log()
    step = _toy_step(table)
    greedy = greedy_decode(step, None, 1, 1, 2, 0, 4, torch.device("cpu"))
    assert greedy[0, :2].tolist() == [3, 2]
    best = beam_search(step, torch.zeros(1), lambda s, i: s, 1, 2, 0, 4, beam_size=3,
                       device=torch.device("cpu"), length_penalty=0.0)
    assert best.tolist() == [4, 2]
    # exhaustive check over all sequences of length 2 ending in <eos>
    scores = {(a,): table[1, a] + table[a, 2] for a in range(3, V)}
    assert max(scores, key=scores.get) == (4,)


def _reference_greedy_table(table, bos, eos, max_len):
    """Greedy decoding of a last-token table written out without zoo.layers.decoding."""
    out, prev = [], bos
    for _ in range(max_len):
        prev = int(table[prev].argmax())
        out.append(prev)
        if prev == eos:
            break
    return out


@pytest.mark.parametrize("seed", range(40))
def test_beam_of_one_equals_greedy_on_random_tables(seed):
    # random next-token tables put <eos> at every rank: first (greedy stops), second
    # (a width-1 beam must not finish there), or low (decoding runs to max_len)
    g = torch.Generator().manual_seed(seed)
    V, eos = 6, 2
    table = (torch.randn(V, V, generator=g) * 2).log_softmax(-1)
    table[:, eos] += float(torch.randn((), generator=g))   # more or fewer endings per seed
    best = beam_search(_toy_step(table), torch.zeros(1), lambda s, i: s, 1, eos, 0, 8,
                       beam_size=1, device=torch.device("cpu"), length_penalty=0.0)
    assert best.tolist() == _reference_greedy_table(table, 1, eos, 8)


def _reference_greedy_model(model, src):
    """Greedy decoding written independently of zoo.layers.decoding and of the models'
    incremental ``_step``: re-run the teacher-forced decoder over the whole prefix and
    take the argmax of its last position."""
    rows = []
    for i in range(src.shape[0]):
        s = src[i: i + 1]
        tokens = torch.tensor([[model.bos_id]])
        for _ in range(model.max_len):
            logits = model(s, tokens) if isinstance(model, Transformer) else \
                model.decode(tokens, model.encode(s))[0]
            nxt = int(logits[0, -1].argmax())
            tokens = torch.cat([tokens, torch.tensor([[nxt]])], dim=1)
            if nxt == model.eos_id:
                break
        rows.append(tokens[0, 1:].tolist())
    return rows


@pytest.mark.parametrize("cls", [Seq2SeqLSTM, Transformer])
def test_beam_of_one_equals_greedy(cls):
    # a few steps on the reversal task, so outputs vary and end at different lengths
    # (max_len 6 cuts the longer reversals before their <eos>)
    torch.manual_seed(0)
    data = SeqTaskData(task="reverse", train_size=1024, val_size=8, test_size=8, max_len=8)
    model = cls(vocab_size=14, max_len=6)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    loader = torch.utils.data.DataLoader(data.dataset("train"), batch_size=64, shuffle=True,
                                         collate_fn=data.collate_fn)
    for _epoch in range(2):
        for batch in loader:
            opt.zero_grad()
            model.training_step(batch)["loss"].backward()
            opt.step()
    model.eval()
    src = data.collate_fn([data.dataset("val")[i] for i in range(8)])[0]
    expected = _reference_greedy_model(model, src)
    assert any(model.eos_id in r for r in expected) and any(model.eos_id not in r for r in expected)
    with torch.no_grad():
        for i, want in enumerate(expected):
            state = model._reorder(model.encode(src), torch.tensor([i]))
            beam = beam_search(model._step, state, model._reorder, model.bos_id, model.eos_id,
                               model.pad_id, model.max_len, beam_size=1,
                               device=torch.device("cpu"), length_penalty=0.0)
            assert beam.tolist() == want
        greedy = model.translate(src, beam_size=1)        # the batched greedy path
    for row, want in zip(greedy.tolist(), expected):
        assert row[: len(want)] == want and set(row[len(want):]) <= {model.pad_id}
    wide = model.translate(src, beam_size=3)
    assert wide.shape[0] == 8


def test_tokenizer_travels_in_the_state_dict(tmp_path):
    data = TextData(batch_size=2, seq_len=16)
    model = GPT(vocab_size=128, block_size=16, n_layer=1, n_head=2, n_embd=16)
    model.on_train_start(data, str(tmp_path))
    torch.save(model.state_dict(), tmp_path / "m.pt")
    fresh = GPT(vocab_size=128, block_size=16, n_layer=1, n_head=2, n_embd=16)
    assert fresh.tokenizer_slot.spec is None
    fresh.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    assert fresh.tokenizer_slot.spec == data.tokenizer.spec()


@pytest.mark.parametrize("cls", [GPT, RecurrentLM])
def test_predict_cli_prints_a_continuation(cls, capsys):
    data = TextData(batch_size=2, seq_len=16)
    kw = {"block_size": 64, "n_layer": 1, "n_head": 2, "n_embd": 16} if cls is GPT else {"hidden_size": 16}
    model = cls(vocab_size=128, **kw).eval()
    model.on_train_start(data, ".")
    predict_cli(model, {"prompt": "def ", "max_new_tokens": "20", "seed": "3", "top_k": "5"}, data)
    out = capsys.readouterr().out
    assert out.startswith("def ") and len(out.rstrip("\n")) >= 4
    predict_cli(model, {"prompt": "def ", "max_new_tokens": "20", "seed": "3", "top_k": "5"}, data)
    assert capsys.readouterr().out == out  # a seed makes it repeatable
    with pytest.raises(UserError, match="valid options"):
        predict_cli(model, {"promt": "x"}, data)
    with pytest.raises(UserError, match="top_p"):
        predict_cli(model, {"top_p": "1.5"}, data)


def test_translate_cli(capsys):
    data = SeqTaskData(task="reverse", train_size=10, val_size=5, test_size=5)
    model = Seq2SeqLSTM(vocab_size=14, hidden_size=8, embed_dim=8, num_layers=1, max_len=5).eval()
    predict_cli(model, {"input": "123"}, data)
    assert set(capsys.readouterr().out.strip()) <= set("0123456789")
    with pytest.raises(UserError, match="vocabulary"):
        predict_cli(model, {"input": "12x"}, data)
    with pytest.raises(UserError, match="input"):
        predict_cli(model, {}, data)
