"""The generative task: output form, evaluator, pictures, predict.py and resume."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import one_line_error
from zoo.tasks import get_task
from zoo.tasks.base import ModelOutputError

TASK = get_task("generative")
RING = {"kind": "points", "centers": [[2.0, 0.0], [-2.0, 0.0]], "sigma": 0.1}


def test_check_output_names_what_is_wrong():
    batch = (torch.zeros(4, 2), torch.zeros(4, dtype=torch.int64))
    TASK.check_output({"samples": torch.zeros(4, 2)}, batch)
    with pytest.raises(ModelOutputError, match="dict with 'samples'"):
        TASK.check_output(torch.zeros(4, 2), batch)
    with pytest.raises(ModelOutputError, match="shaped like the real batch"):
        TASK.check_output({"samples": torch.zeros(3, 2)}, batch)
    with pytest.raises(ModelOutputError, match="integer classes"):
        TASK.check_output({"samples": torch.zeros(4, 2), "labels": torch.zeros(4)}, batch)


def test_points_evaluator_does_not_depend_on_batching():
    ev = TASK.build_evaluator(None, RING)
    samples = torch.tensor([[2.0, 0.05]] * 6 + [[-2.0, 0.0]] * 2 + [[0.0, 0.0]] * 2)
    ev.update({"samples": samples[:3]}, (samples[:3],))
    ev.update({"samples": samples[3:]}, (samples[3:],))
    m = ev.compute()
    assert m["modes_covered"] == 2.0 and m["high_quality_fraction"] == pytest.approx(0.8)
    pictures = TASK.images((samples,), {"samples": samples}, RING)
    assert pictures["generative/scatter"].shape[0] == 3


def test_image_evaluator_scores_label_accuracy_with_the_domain_classifier(monkeypatch):
    from zoo.metrics import generative as G

    # a stand-in classifier: class = brightness of the image's left half above 0
    monkeypatch.setattr(G, "image_features", lambda x, d: x.flatten(1)[:, :4])
    monkeypatch.setattr(G, "predict_attributes",
                        lambda x, d: (x[:, :, :, :2].mean((1, 2, 3)) > 0).long()[:, None])
    ev = TASK.build_evaluator(None, {"kind": "images", "domain": "anything"})
    real = torch.rand(6, 1, 4, 4)
    fake = torch.zeros(6, 1, 4, 4)
    fake[:4, :, :, :2] = 1.0  # classified 1
    asked = torch.tensor([1, 1, 1, 0, 0, 0])  # only sample 3 (asked 0, got 1) is wrong
    ev.update({"samples": fake, "labels": asked}, (real, asked))
    m = ev.compute()
    assert m["label_accuracy"] == pytest.approx(5 / 6)
    assert m["frechet_distance"] > 0
    with pytest.raises(Exception, match="names no domain"):
        TASK.build_evaluator(None, {"kind": "images"})


def test_gan_run_writes_pictures_and_predicts(train, tmp_path, capsys):
    from zoo.cli import predict_main

    run = tmp_path / "gan"
    assert train("model=gan", "trainer=debug", "logger=tensorboard", f"hydra.run.dir={run}") == 0
    assert {p.name.split("_step")[0] for p in (run / "images").glob("*.png")} == {"generative_scatter"}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["num_samples"] == 2500
    out = tmp_path / "samples"
    assert predict_main([f"run={run}", "num=300", f"output={out}"]) == 0
    assert torch.load(out / "samples.pt").shape == (300, 2)
    assert len((out / "samples.csv").read_text().splitlines()) == 301
    capsys.readouterr()
    assert predict_main([f"run={run}", "label=3", f"output={out}"]) == 2
    assert "not conditioned on label" in one_line_error(capsys)


def test_gan_resume_is_exact(train, tmp_path, capsys):
    from tests.engine.toys import load, states_equal

    base = ["model=gan", "logger=none", "trainer.progress=false", "trainer.max_steps=12",
            "trainer.val_every_steps=6", "trainer.log_every=3", "trainer.ckpt_every=4",
            "model.d_steps=2", "data.num_train=1024", "data.num_val=200", "data.batch_size=64"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert train(*base, f"hydra.run.dir={whole}") == 0
    assert train(*base, "trainer.interrupt_at=5", f"hydra.run.dir={part}") == 0
    assert load(part)["step"] == 5
    assert train(*base, f"resume={part}") == 0
    a, b = load(whole), load(part)
    assert a["step"] == b["step"] == 12
    assert states_equal(a["model"], b["model"]) and states_equal(a["optimizers"], b["optimizers"])


@pytest.mark.slow
def test_ddpm_draws_images_too(train, tmp_path):
    run = tmp_path / "ddpm_images"
    assert train("model=ddpm", "data=shape_images", "trainer=debug", "logger=none", "data.num_val=8",
                 "data.eval_batch_size=8", "model.timesteps=10", "trainer.monitor=frechet_distance",
                 "trainer.mode=min", f"hydra.run.dir={run}") == 0
    assert json.loads((run / "metrics.json").read_text())["frechet_distance"] > 0
