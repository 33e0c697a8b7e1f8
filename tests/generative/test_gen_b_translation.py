"""The two-domain models (BiGAN, CoGAN, CycleGAN, latent inversion, swap autoencoder),
their data and the translation task: pairing of the data, optimizer groups that change
only their own parameters, the image pool, CoGAN's sharing, the identity-loss switch,
the evaluator's numbers on hand-made predictions, predict.py, and an exact CycleGAN
resume through the real entry."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers import one_line_error
from zoo.data.two_domains import DomainBatch, TwoDomainsData, collate_domains, render_a, render_b
from zoo.metrics.translation import TranslationEvaluator, reconstruction_ratio
from zoo.models.generative.bigan import BiGAN
from zoo.models.generative.cogan import CoGAN
from zoo.models.generative.cyclegan import CycleGAN, ImagePool
from zoo.models.generative.inversion import LatentInversion
from zoo.models.generative.swap_autoencoder import SwapAutoencoder
from zoo.tasks import get_task

SMALL_DATA = ["data.num_train=32", "data.num_val=8", "data.num_test=8", "data.batch_size=4",
              "data.eval_batch_size=8", "+evaluator.frechet=false", "logger=none",
              "trainer.progress=false"]


def small_batch(n: int = 4, split: str = "train") -> DomainBatch:
    ds = TwoDomainsData(num_train=16, num_val=8, num_test=8).dataset(split)
    return collate_domains([ds[i] for i in range(n)])


# -- data ----------------------------------------------------------------------------------------
def test_two_domains_pairing_is_the_same_content_in_two_styles():
    data = TwoDomainsData(num_train=16, num_val=8, num_test=8)
    ds = data.dataset("train")
    a, b, a_in_b, b_in_a, la, lb, idx = ds[3]
    mask_a, mask_b = ds.masks_a[3].float() / 255, ds.masks_b[3].float() / 255
    assert torch.equal(a, render_a(mask_a)) and torch.equal(a_in_b, render_b(mask_a))
    assert torch.equal(b, render_b(mask_b)) and torch.equal(b_in_a, render_a(mask_b))
    assert a.shape == (3, 32, 32) and a.min() >= -1 and a.max() <= 1 and int(idx) == 3
    assert int(la) == int(ds.labels_a[3]) and int(lb) == int(ds.labels_b[3])
    # the two contents of an item are drawn independently: unpaired training
    masks_a, masks_b = ds.masks_a.float(), ds.masks_b.float()
    assert not torch.equal(masks_a, masks_b)
    # style A is grey, style B is not; the same data twice is the same data
    assert torch.equal(a[0], a[1]) and not torch.equal(b[0], b[2])
    again = TwoDomainsData(num_train=16, num_val=8, num_test=8).dataset("train")
    assert torch.equal(again.masks_a, ds.masks_a)
    images, labels = data.domain_images("val", "B")
    assert images.shape == (16, 3, 32, 32) and labels.shape == (16,)


def test_two_domains_bad_sizes_are_one_line(train, tmp_path, capsys):
    assert train("model=cyclegan", "data.min_px=30", "data.max_px=20", "trainer=debug",
                 f"hydra.run.dir={tmp_path / 'r'}", *SMALL_DATA) == 2
    assert "data.min_px=30 and data.max_px=20 must satisfy" in one_line_error(capsys)


# -- optimizer groups ----------------------------------------------------------------------------
MODELS = {
    "bigan": lambda: BiGAN(width=8, z_dim=8, disc_hidden=16),
    "bigan_ali": lambda: BiGAN(width=8, z_dim=8, disc_hidden=16, encoder="stochastic"),
    "bigan_sn": lambda: BiGAN(width=8, z_dim=8, disc_hidden=16, spectral_norm=True),
    "bigan_alice": lambda: BiGAN(width=8, z_dim=8, disc_hidden=16, cycle_critic=True),
    "bigan_cycle": lambda: BiGAN(width=8, z_dim=8, disc_hidden=16, cycle_weight=1.0),
    "cogan": lambda: CoGAN(width=8, z_dim=8, invert_steps=2),
    "cyclegan": lambda: CycleGAN(gen_width=4, blocks=1, disc_width=8, pool_size=4),
    "inversion": lambda: LatentInversion(width=8, z_dim=8, gan_steps=1, optimise_steps=2),
}


class Handle:
    """A StepHandle stand-in: backward and step one group with plain SGD, recording which
    parameters each group's step changed."""

    def __init__(self, model, batch) -> None:
        self.model, self.window = model, [batch]
        self.groups = model.optimizer_groups()
        self.opts = {g: torch.optim.SGD(p, lr=0.1) for g, p in self.groups.items()}
        self.changed: dict[str, set[int]] = {}

    def micro_batches(self):
        yield from self.window

    def forward(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)

    def backward(self, loss, group):
        total = loss if isinstance(loss, torch.Tensor) else sum(v for k, v in loss.items()
                                                                if not k.startswith("log_"))
        total.backward()

    def step(self, group):
        before = {id(p): p.detach().clone() for p in self.model.parameters()}
        self.opts[group].step()
        self.model.zero_grad(set_to_none=True)
        self.changed[group] = {id(p) for p in self.model.parameters() if not torch.equal(p, before[id(p)])}

    def log(self, name, value):
        pass


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_optimizer_group_changes_only_its_own_parameters(name):
    torch.manual_seed(0)
    model = MODELS[name]()
    model.train()
    groups = model.optimizer_groups()
    ids = {g: {id(p) for p in ps} for g, ps in groups.items()}
    # the groups partition the parameters
    assert sum(len(v) for v in ids.values()) == len({i for v in ids.values() for i in v})
    assert set().union(*ids.values()) == {id(p) for p in model.parameters()}
    h = Handle(model, small_batch())
    model.training_step(h.window[0], h)
    if name == "inversion":  # phase 2: the encoder alone
        model.training_step(h.window[0], h)
    for group, changed in h.changed.items():
        assert changed, group
        assert changed <= ids[group], f"{group} step changed another group's parameters"
    expected = set(groups)
    assert set(h.changed) == expected


def test_inversion_phases_step_gan_then_encoder_and_the_generator_stays_frozen():
    torch.manual_seed(0)
    model = LatentInversion(width=8, z_dim=8, gan_steps=2, optimise_steps=2)
    batch = small_batch()
    seen = []
    for _ in range(4):
        h = Handle(model, batch)
        g_before = [p.detach().clone() for p in model.G.parameters()]
        stats = model.G.trunk.project[1].running_mean.clone()
        model.training_step(batch, h)
        seen.append(sorted(h.changed))
        if int(model.steps_done) > 2:  # phase 2 leaves G's weights and BatchNorm statistics alone
            assert all(torch.equal(a, b) for a, b in zip(g_before, model.G.parameters()))
            assert torch.equal(stats, model.G.trunk.project[1].running_mean)
    assert seen == [["discriminator", "generator"]] * 2 + [["encoder"]] * 2


# -- the image pool ------------------------------------------------------------------------------
def test_image_pool_returns_the_new_images_until_full_then_swaps_half():
    pool = ImagePool(size=3)
    first = torch.arange(3.0).view(3, 1, 1, 1)
    assert torch.equal(pool.query(first), first)          # not full: the images themselves
    assert [float(x) for x in pool.state().flatten()] == [0.0, 1.0, 2.0]
    torch.manual_seed(0)
    n, returned_old = 4000, 0
    for i in range(n):
        new = torch.full((1, 1, 1, 1), 100.0 + i)
        stored_before = {float(x) for x in pool.state().flatten()}
        out = float(pool.query(new))
        stored_after = {float(x) for x in pool.state().flatten()}
        if out == 100.0 + i:          # the new image, not stored
            assert stored_after == stored_before
        else:                         # a stored one comes back and the new one takes its place
            returned_old += 1
            assert out in stored_before and stored_after == (stored_before - {out}) | {100.0 + i}
        assert len(stored_after) == 3
    assert abs(returned_old / n - 0.5) < 0.03
    assert torch.equal(ImagePool(0).query(first), first)   # size 0: no pool
    restored = ImagePool(3)
    restored.load(pool.state())
    assert torch.equal(restored.state(), pool.state())


# -- CoGAN's sharing -----------------------------------------------------------------------------
def test_cogan_shares_generator_trunk_and_discriminator_tail():
    model = CoGAN(width=8, z_dim=8, invert_steps=0)
    z = torch.randn(4, 8)
    model.eval()
    before_b = model.G_B(z)
    with torch.no_grad():  # the trunk is one module: a change to it changes both domains
        for p in model.trunk.parameters():
            p.add_(0.05)
    assert not torch.allclose(model.G_B(z), before_b)
    # a gradient through G_A alone reaches the trunk that G_B uses, not G_B's own head
    model.zero_grad()
    model.G_A(z).sum().backward()
    assert all(p.grad is not None for p in model.trunk.parameters())
    assert all(p.grad is None for p in model.head_b.parameters())
    model.zero_grad()
    model.G_B(z).sum().backward()  # and G_B's gradient reaches it too
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.trunk.parameters())
    model.zero_grad()
    x = torch.randn(2, 3, 32, 32)
    model.D_B(x).sum().backward()
    assert all(p.grad is not None for p in model.disc.parameters())
    assert all(p.grad is None for p in model.first_a.parameters())
    names = {n.split(".")[0] for n, _ in model.named_parameters()}
    assert names == {"trunk", "head_a", "head_b", "first_a", "first_b", "disc"}


# -- CycleGAN's identity switch ---------------------------------------------------------------------
def test_cyclegan_identity_loss_switch():
    torch.manual_seed(0)
    b = small_batch()
    on = CycleGAN(gen_width=4, blocks=1, disc_width=8, identity=0.5)
    off = CycleGAN(gen_width=4, blocks=1, disc_width=8, identity=0.0)
    off.load_state_dict(on.state_dict())
    losses_on, _, _ = on.generator_losses(b.a, b.b)
    losses_off, _, _ = off.generator_losses(b.a, b.b)
    assert "loss_identity" in losses_on and "loss_identity" not in losses_off
    expected = 0.5 * 10 * (torch.nn.functional.l1_loss(on.G_BA(b.a), b.a)
                           + torch.nn.functional.l1_loss(on.G_AB(b.b), b.b))
    assert torch.allclose(losses_on["loss_identity"], expected)
    for k in ("loss_gan_ab", "loss_gan_ba", "loss_cycle"):
        assert torch.allclose(losses_on[k], losses_off[k])


# -- the evaluator ---------------------------------------------------------------------------------
def test_evaluator_numbers_on_hand_made_predictions_and_batch_independence():
    b = small_batch(8, "val")
    perfect = {"a_to_b": b.a_in_b, "b_to_a": b.b_in_a, "a_cycle": b.a, "b_cycle": b.b, "a_recon": b.a}
    ev = TranslationEvaluator()
    ev.update(perfect, b)
    m = ev.compute()
    assert m["translation_error"] == 0 and m["cycle_error"] == 0 and m["reconstruction_ratio"] == 0
    expect = float((b.a - b.a_in_b).abs().mean())
    assert m["translation_error_baseline"] == pytest.approx(expect, rel=1e-6)
    # do-nothing translation scores the baseline; a constant reconstruction scores 1
    ev.reset()
    ev.update({"a_to_b": b.a, "a_recon": torch.zeros_like(b.a)}, b)
    m = ev.compute()
    assert m["translation_error"] == pytest.approx(m["translation_error_baseline"])
    assert m["reconstruction_ratio"] == pytest.approx(1.0)
    # batch size and process split do not matter
    noisy = {k: v + 0.3 * torch.randn_like(v) for k, v in perfect.items()}
    whole = TranslationEvaluator()
    whole.update(noisy, b)
    parts = [TranslationEvaluator(), TranslationEvaluator()]
    for ev_, sl in zip(parts, (slice(0, 3), slice(3, 8))):
        ev_.update({k: v[sl] for k, v in noisy.items()}, DomainBatch(*(t[sl] for t in b)))
    merged = TranslationEvaluator()
    merged.merge([p.state() for p in parts])
    assert merged.compute() == pytest.approx(whole.compute())


def test_reconstruction_ratio_against_a_direct_computation():
    torch.manual_seed(0)
    x, r = torch.randn(6, 10), torch.randn(6, 10)
    direct = sum(float((x[i] - r[i]).norm()) for i in range(6)) / sum(
        float((x[i] - r[(i + 3) % 6]).norm()) for i in range(6))
    assert reconstruction_ratio(x, r) == pytest.approx(direct, rel=1e-6)


def test_task_checks_the_output_form():
    task = get_task("translation")
    b = small_batch()
    task.check_output({"a_to_b": b.a.clone()}, b)
    with pytest.raises(Exception, match="unknown key 'a_2_b'"):
        task.check_output({"a_2_b": b.a}, b)
    with pytest.raises(Exception, match="a_to_b must be a float tensor of shape"):
        task.check_output({"a_to_b": b.a[:2]}, b)
    with pytest.raises(Exception, match="non-empty dict"):
        task.check_output(b.a, b)


# -- the real entry: predict.py and an exact CycleGAN resume -------------------------------------------
CYCLE = ["model=cyclegan", "model.gen_width=4", "model.blocks=1", "model.disc_width=8",
         "model.pool_size=6", "trainer.max_steps=8", "trainer.val_every_steps=4",
         "trainer.ckpt_every=2", "trainer.log_every=1", *SMALL_DATA]


def _state_equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_state_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_state_equal(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.slow
def test_cyclegan_resumes_exactly_mid_run_with_its_pool(train, tmp_path, capsys):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert train(*CYCLE, f"hydra.run.dir={whole}") == 0
    assert train(*CYCLE, "trainer.interrupt_at=3", f"hydra.run.dir={cut}") == 0
    mid = torch.load(cut / "checkpoints" / "last.pt", weights_only=True)
    assert mid["step"] == 3 and len(mid["model_state"]["pool_a"]) == 6  # the pool is full, saved
    assert train(*CYCLE, f"resume={cut}") == 0
    a = torch.load(whole / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(cut / "checkpoints" / "last.pt", weights_only=True)
    for key in ("model", "optimizers", "schedulers", "model_state", "step"):
        assert _state_equal(a[key], b[key]), key
    assert json.loads((whole / "metrics.json").read_text())["translation_error"] == \
        json.loads((cut / "metrics.json").read_text())["translation_error"]


def test_predict_translates_a_folder_and_refuses_a_direction_it_lacks(train, tmp_path, capsys):
    from zoo import viz
    from zoo.cli import predict_main

    run = tmp_path / "run"
    assert train(*CYCLE, "trainer.max_steps=2", f"hydra.run.dir={run}") == 0
    src = tmp_path / "src"
    src.mkdir()
    for i in range(2):
        viz.save_png((small_batch(2).a[i] + 1) / 2, src / f"digit{i}.png")
    out = tmp_path / "out"
    capsys.readouterr()
    assert predict_main([f"run={run}", f"source={src}", "direction=b2a", f"output={out}"]) == 0
    printed = capsys.readouterr().out
    assert "2 images, b2a" in printed and "digit1.png: mean absolute change" in printed
    assert sorted(p.name for p in out.iterdir()) == ["digit0.png", "digit1.png", "translation.png"]
    assert predict_main([f"run={run}", f"source={src}", "direction=reconstruct"]) == 2
    assert "CycleGAN cannot do direction=reconstruct; it does a2b, b2a" in one_line_error(capsys)
    assert predict_main([f"run={run}", f"source={tmp_path / 'none'}"]) == 2
    assert "is neither an image nor a folder" in one_line_error(capsys)
    assert predict_main([f"run={run}", f"source={src}", "direction=sideways"]) == 2
    assert "direction=sideways is not one of" in one_line_error(capsys)


def test_images_are_labelled_columns_in_unit_range():
    task = get_task("translation")
    b = small_batch(4, "val")
    model = SwapAutoencoder(width=8, code=4).eval()
    pictures = task.images(b, model.predict(b), {})
    assert set(pictures) == {"a_side", "b_side"}
    for image in pictures.values():
        assert image.shape[0] == 3 and 0 <= float(image.min()) and float(image.max()) <= 1
    cogan = CoGAN(width=8, z_dim=8, invert_steps=0).eval()
    assert set(task.images(b, cogan.predict(b), {})) == {"samples"}


def test_latent_optimisation_leaves_weights_and_gradients_alone():
    torch.manual_seed(0)
    model = LatentInversion(width=8, z_dim=8, optimise_steps=20).eval()
    target = model.render(torch.randn(3, 8), "A").detach()
    before = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        z = model.optimise(target, "A", torch.zeros(3, 8))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())
    start = (model.render(torch.zeros(3, 8), "A") - target).pow(2).sum()
    assert (model.render(z, "A") - target).pow(2).sum() < start  # it moved z toward the target
    with torch.no_grad():  # each image's code does not depend on the batch it came in
        halves = torch.cat([model.optimise(target[:1], "A", torch.zeros(1, 8)),
                            model.optimise(target[1:], "A", torch.zeros(2, 8))])
    assert torch.allclose(halves, z, atol=1e-5)


def test_model_rejects_bad_settings():
    from zoo.errors import UserError

    with pytest.raises(UserError, match="image_size must be a power of two"):
        BiGAN(image_size=24)
    with pytest.raises(UserError, match="model.d_steps must be >= 1"):
        BiGAN(d_steps=0)
    with pytest.raises(UserError, match="must be >= 0"):
        LatentInversion(gan_steps=-1)


def test_bigan_cycle_term_is_the_weighted_pixel_distance_of_x_and_its_reconstruction():
    """ALICE's explicit cycle consistency: cycle_weight * mean |x - G(E(x))| (l1) or its
    square (l2), a loss of G and E beside the adversarial one; 0 leaves the pure BiGAN."""
    from zoo.errors import UserError

    x = small_batch().a
    for kind, power in (("l1", 1), ("l2", 2)):
        torch.manual_seed(0)
        model = BiGAN(width=8, z_dim=8, disc_hidden=16, cycle_weight=2.5, cycle_loss=kind).eval()
        losses = model.ge_loss(x)
        with torch.no_grad():
            want = 2.5 * (x - model.G(model.E(x))).abs().pow(power).mean()
        torch.testing.assert_close(losses["loss_cycle"], want)
        # it reaches the encoder: E's weights get a gradient from the cycle term alone
        model.zero_grad()
        losses["loss_cycle"].backward()
        assert model.E.out[-1].weight.grad.abs().sum() > 0
    assert "loss_cycle" not in BiGAN(width=8, z_dim=8, disc_hidden=16, cycle_weight=0).ge_loss(x)
    with pytest.raises(UserError, match="model.cycle_weight must be >= 0"):
        BiGAN(cycle_weight=-1)
    with pytest.raises(UserError, match="model.cycle_loss must be one of l1, l2"):
        BiGAN(cycle_loss="l3")


def test_bigan_stabilisers_do_what_they_say():
    """ALI's stochastic encoder samples in training and gives its mean at prediction;
    spectral norm bounds every D weight's largest singular value by 1; ALICE's critic
    joins the discriminator group and judges (x, x) against (x, G(E(x)))."""
    torch.manual_seed(0)
    x = small_batch().a
    ali = BiGAN(width=8, z_dim=8, disc_hidden=16, encoder="stochastic")
    assert not torch.equal(ali.encode(x), ali.encode(x))              # a draw each time
    torch.testing.assert_close(ali.encode(x, sample=False), ali.encode(x, sample=False))
    mu = ali.E(x).chunk(2, dim=1)[0]
    torch.testing.assert_close(ali.encode(x, sample=False), mu)
    assert BiGAN(width=8, z_dim=8, disc_hidden=16).E(x).shape[1] == 8
    assert ali.E(x).shape[1] == 16                                    # mean and log-variance

    sn = BiGAN(width=8, z_dim=8, disc_hidden=16, spectral_norm=True)
    sn.train()
    for _ in range(30):  # power iterations converge in training-mode forwards
        sn.D(x, torch.randn(len(x), 8))
    linears = [m for m in sn.D.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in linears)
    for m in linears:
        assert torch.linalg.matrix_norm(m.weight.detach(), ord=2) < 1.05
    assert not any(torch.nn.utils.parametrize.is_parametrized(m, "weight")
                   for m in BiGAN(width=8, z_dim=8, disc_hidden=16).D.modules()
                   if isinstance(m, torch.nn.Linear))

    alice = BiGAN(width=8, z_dim=8, disc_hidden=16, cycle_critic=True)
    d_ids = {id(p) for p in alice.optimizer_groups()["discriminator"]}
    assert alice.D_xx is not None and {id(p) for p in alice.D_xx.parameters()} <= d_ids
    plain = BiGAN(width=8, z_dim=8, disc_hidden=16)
    assert plain.D_xx is None
    # the critic adds a term to both losses
    torch.manual_seed(1)
    with_critic = alice.ge_loss(x)["loss_ge"]
    alice.D_xx = None
    torch.manual_seed(1)
    assert not torch.isclose(with_critic, alice.ge_loss(x)["loss_ge"])
