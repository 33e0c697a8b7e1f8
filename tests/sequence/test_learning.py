"""Small models learn their tasks (behaviour, not speed)."""

from __future__ import annotations

import pytest
import torch

from zoo.tasks import task_of
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
    ev = task_of(model).build_evaluator(model, data.meta)
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


@pytest.mark.parametrize("every_step", [True, False])
def test_captioner_reads_the_image(every_step):
    # 24 scenes with their own captions: memorising them needs the image pathway (the
    # language alone gets at most the most common caption right: 6 of 24 here)
    from zoo.data.seq_tasks import ShapesCaptionData
    from zoo.models.sequence.captioning import ShowAndTell

    torch.manual_seed(0)
    data = ShapesCaptionData(num_train=24, num_val=24, num_test=1, vocab_size=11)
    images, captions = data.collate_fn([data.dataset("train")[i] for i in range(24)])
    common = max(captions.tolist().count(c) for c in captions.tolist())
    model = ShowAndTell(vocab_size=11, channels=16, embed_dim=32, hidden_size=64, max_len=12,
                        image_every_step=every_step)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(150):
        loss = model.training_step((images, captions))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    ev = task_of(model).build_evaluator(model, data.meta)
    ev.update(model.predict((images, captions)), (images, captions))
    assert common <= 6
    assert ev.compute()["exact_match"] == 1.0
