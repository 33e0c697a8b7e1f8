"""Small models learn their tasks (behaviour, not speed)."""

from __future__ import annotations

import pytest
import torch

from zoo.data.seq_tasks import SeqTaskData
from zoo.models.sequence.classifier import BagOfWordsClassifier, RecurrentClassifier
from zoo.models.transformer.transformer import Transformer


def _fit(model, data, steps, lr=3e-3):
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr)
    loader = torch.utils.data.DataLoader(data.dataset("train"), batch_size=32, shuffle=True,
                                         collate_fn=data.collate_fn)
    done = 0
    while done < steps:
        for batch in loader:
            losses = model.training_step(batch)
            loss = sum(v for k, v in losses.items() if not k.startswith("log_"))
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    model.eval()
    ev = model.build_evaluator(data.meta)
    for batch in torch.utils.data.DataLoader(data.dataset("val"), batch_size=100,
                                             collate_fn=data.collate_fn):
        ev.update(model.predict(batch), batch)
    return ev.compute()


def test_transformer_learns_to_copy():
    # the Annotated Transformer's sanity check: greedy decoding reproduces the input
    torch.manual_seed(0)
    data = SeqTaskData(task="copy", min_len=3, max_len=6, train_size=4000, val_size=200,
                       test_size=10)
    model = Transformer(vocab_size=14, dim=32, num_heads=2, num_encoder_layers=1,
                        num_decoder_layers=1, ff_dim=64, dropout=0.0, max_len=8)
    assert _fit(model, data, 250)["exact_match"] > 0.8


@pytest.mark.slow
def test_order_needs_a_sequence_model():
    data = SeqTaskData(task="order", min_len=4, max_len=12, train_size=6000, val_size=400,
                       test_size=10, num_classes=2)
    torch.manual_seed(0)
    lstm = _fit(RecurrentClassifier(vocab_size=36, num_classes=2), data, 600)
    torch.manual_seed(0)
    bow = _fit(BagOfWordsClassifier(vocab_size=36, num_classes=2), data, 600)
    assert lstm["accuracy"] > 0.95
    assert bow["accuracy"] < 0.6
