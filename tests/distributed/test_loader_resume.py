"""Worker processes keep resume bit-exact: a run with random augmentation and
``data.num_workers=2`` stopped mid-epoch and resumed ends with the weights of one
never stopped, and the draws do not depend on the number of workers."""

from pathlib import Path

import torch

from zoo.engine import loader as L

# digits with a random pad-and-crop: every training sample draws from torch's generator
BASE = ["model=logistic_regression", "data.augment_shift=1", "trainer.max_steps=20",
        "trainer.val_every_steps=10", "trainer.ckpt_every=4", "trainer.progress=false",
        "logger=none"]


def weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_workers_is_bit_exact(train, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    w2 = [*BASE, "data.num_workers=2"]
    assert train(*w2, f"hydra.run.dir={full}") == 0
    # step 19 of a 16-batch epoch: stopped mid-way through the second epoch
    assert train(*w2, f"hydra.run.dir={part}", "trainer.interrupt_at=19") == 0
    assert torch.load(part / "checkpoints" / "last.pt", weights_only=True)["step"] == 19
    assert train(f"resume={part}") == 0
    assert same(weights(full), weights(part))

    # the draws are a function of (seed, epoch, sample), not of the worker count ...
    one = tmp_path / "one"
    assert train(*BASE, "data.num_workers=1", "+data.persistent_workers=false",
                 "+data.prefetch_factor=3", f"hydra.run.dir={one}") == 0
    assert same(weights(full), weights(one))
    # ... and the augmentation is really drawn (without it the weights differ)
    plain = tmp_path / "plain"
    assert train(*w2, "data.augment_shift=0", f"hydra.run.dir={plain}") == 0
    assert not same(weights(full), weights(plain))


def test_sample_seed_separates_epochs_and_samples():
    seeds = {L.sample_seed(0, e, i) for e in range(4) for i in range(500)}
    assert len(seeds) == 2000 and all(0 <= s < 2 ** 63 for s in seeds)
    assert L.sample_seed(1, 0, 0) != L.sample_seed(0, 0, 0)
    L.seed_sample(3, 1, 7)
    a = torch.rand(3)
    L.seed_sample(3, 1, 7)
    assert torch.equal(a, torch.rand(3))


def test_keyed_sampler_resumes_mid_epoch():
    s = L.KeyedEpochSampler(10, shuffle=True, seed=0)
    s.set_epoch(2)
    keys = list(s)
    assert {e for e, _ in keys} == {2} and sorted(i for _, i in keys) == list(range(10))
    s.set_epoch(2, start=4)
    assert list(s) == keys[4:] and len(s) == 6


def test_prefetch_factor_is_checked(train, tmp_path, capsys):
    assert train(*BASE, "+data.prefetch_factor=0", f"hydra.run.dir={tmp_path / 'r'}") == 2
    assert "data.prefetch_factor=0: expected an integer >= 1, or null" in capsys.readouterr().err
