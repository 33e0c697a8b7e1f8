"""The synthetic tasks give correct answers and clean splits."""

from __future__ import annotations

import datetime

import pytest
import torch

from zoo.data.seq_tasks import BOS, EOS, PAD, PlantedClusterData, SeqTaskData
from zoo.errors import DataError


def _task(task, **kw):
    return SeqTaskData(task=task, train_size=300, val_size=50, test_size=50, batch_size=8, **kw)


@pytest.mark.parametrize("task,check", [
    ("copy", lambda x, y: y == x),
    ("reverse", lambda x, y: y == x[::-1]),
    ("sort", lambda x, y: y == "".join(sorted(x))),
    ("count", lambda x, y: int(y) == x.count(x[0])),
    ("parity", lambda x, y: y == x.count("1") % 2),
])
def test_task_answers(task, check):
    for x, y in _task(task).examples("train"):
        assert check(x, y)


def test_dates_are_real_and_iso():
    months = {m.lower(): i for i, m in enumerate(
        ["January", "February", "March", "April", "May", "June", "July", "August", "September",
         "October", "November", "December"], 1)}
    for x, y in _task("dates").examples("val"):
        d = datetime.date.fromisoformat(y)
        assert str(d.year) in x and str(d.day) in x
        assert any(m[:3] in x.lower() and i == d.month for m, i in months.items()) or "." in x


def test_order_task_defeats_bag_of_words():
    data = _task("order")
    labels = []
    for x, y in data.examples("train"):
        words = x.split()
        # the marker words are the same in both classes: only their order decides
        assert words.count("alpha") == words.count("omega") == 1
        assert y == int(words.index("alpha") < words.index("omega"))
        labels.append(y)
    assert 0.4 < sum(labels) / len(labels) < 0.6


def test_splits_are_disjoint_and_deterministic():
    a, b = _task("reverse"), _task("reverse")
    train = {x for x, _ in a.examples("train")}
    assert not train & {x for x, _ in a.examples("val")}
    assert a.examples("test") == b.examples("test")


def test_seq2seq_batches():
    data = _task("reverse")
    src, tgt = data.collate_fn([data.dataset("train")[i] for i in range(8)])
    assert (tgt[:, 0] == BOS).all() and ((tgt == EOS).sum(1) == 1).all()
    lengths = (src != PAD).sum(1)
    assert torch.equal((tgt != PAD).sum(1), lengths + 2)
    x, y = data.examples("train")[0]
    assert data.vocab.decode(data.dataset("train")[0][1][1:].tolist()) == y == x[::-1]


def test_tagging_batches_pad_with_ignore_index():
    data = _task("running_parity")
    tokens, tags = data.collate_fn([data.dataset("val")[i] for i in range(8)])
    assert tokens.shape == tags.shape and ((tokens == PAD) == (tags == -100)).all()


def test_vocab_size_is_checked():
    with pytest.raises(DataError, match="vocab_size=14"):
        _task("reverse", vocab_size=12)


def test_planted_corpus_and_windows():
    data = PlantedClusterData(clusters=4, words_per_cluster=3, fillers=5, sentences=200,
                              window=3, negatives=4, batch_size=8, vocab_size=17)
    torch.manual_seed(0)
    ds = data.dataset("train")
    for i in range(0, len(ds), 7):
        item = ds[i]
        ctx = item["mask"] > 0
        # every kept context word is within the window and in the same sentence
        offsets = torch.cat([torch.arange(-3, 0), torch.arange(1, 4)])
        pos = i + offsets[ctx]
        assert (data.sentence_of[pos] == data.sentence_of[i]).all()
        assert torch.equal(data.tokens[pos], item["context"][ctx])
        assert item["negatives"].shape == (6, 4)
    # noise follows unigram^0.75
    expected = data.counts.double() ** 0.75
    torch.testing.assert_close(ds.noise.double(), expected / expected.sum(), rtol=1e-5, atol=1e-7)
    # keep probability (sqrt(f/t) + 1) t/f: the most frequent filler is kept least often
    f = data.counts.double() / data.counts.sum()
    torch.testing.assert_close(ds.keep.double(), (((f / 1e-3).sqrt() + 1) * 1e-3 / f).clamp(max=1),
                               rtol=1e-5, atol=1e-7)
    assert ds.keep.argmin() == data.counts.argmax()
    words, clusters = data.dataset("val")[:]
    assert len(words) == 12 and clusters.bincount().tolist() == [3, 3, 3, 3]


def test_captions_describe_objects_left_to_right():
    from zoo.data.seq_tasks import ShapesCaptionData, describe_scene

    boxes = torch.tensor([[40.0, 5, 52, 17], [2.0, 2, 40, 40]])
    labels = torch.tensor([1, 3])
    names = ["circle", "square", "triangle"]
    assert describe_scene(boxes, labels, names, 64) == "a large triangle and a small circle"
    assert describe_scene(boxes, labels, names, 64, sizes=False) == "a triangle and a circle"
    data = ShapesCaptionData(num_train=4, num_val=4, num_test=4, vocab_size=11)
    images, captions = data.collate_fn([data.dataset("val")[i] for i in range(4)])
    assert images.shape == (4, 3, 64, 64) and (captions[:, 0] == BOS).all()
    with pytest.raises(DataError, match="vocab_size=11"):
        ShapesCaptionData(vocab_size=12)


def test_caption_training_images_flip_upside_down_only():
    from zoo.data.seq_tasks import ShapesCaptionData

    data = ShapesCaptionData(num_train=2, num_val=2, num_test=2, vocab_size=11, vflip=0.5)
    train, val = data.dataset("train"), data.dataset("val")
    torch.manual_seed(0)
    seen = [train[0] for _ in range(20)]
    upright = seen[0][0] if not torch.equal(seen[0][0], seen[1][0].flip(-2)) else seen[1][0]
    flipped = [torch.equal(im, upright.flip(-2)) for im, _ in seen]
    assert all(f or torch.equal(im, upright) for f, (im, _) in zip(flipped, seen))
    assert 0 < sum(flipped) < 20                      # both orientations occur
    assert all(torch.equal(c, seen[0][1]) for _, c in seen)   # the caption never changes
    assert all(torch.equal(val[0][0], val[0][0]) for _ in range(5))  # evaluation is not augmented
    with pytest.raises(DataError, match="vflip"):
        ShapesCaptionData(vocab_size=11, vflip=2)
    with pytest.raises(DataError, match="min_visible"):
        ShapesCaptionData(vocab_size=11, min_visible=0)
