"""The generative models' math and their use of the manual step."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.data.generative import Mixture2D, SceneText, ShapeImages
from zoo.engine.step import Stepper
from zoo.models.generative.cgan import ConditionalGAN
from zoo.models.generative.dcgan import DCGAN
from zoo.models.generative.ddpm import DDPM
from zoo.models.generative.gan import GAN
from zoo.models.generative.text_gan import TextGAN
from zoo.models.generative.vae import VAE, gaussian_kl

# the tests wrap optimizer.step to watch it, which torch's scheduler notices
pytestmark = pytest.mark.filterwarnings("ignore:Seems like `optimizer.step")


def _points(n=16):
    x = torch.randn(n, 2)
    return (x, torch.zeros(n, dtype=torch.int64))


def _digits(n=8):
    return (torch.rand(n, 1, 32, 32), torch.randint(0, 10, (n,)))


def _scenes(n=8):
    images, tokens, attrs = SceneText(num_train=n).render("train")
    return (images, tokens, attrs)


MODELS = {
    "gan": (lambda: GAN(d_steps=1), _points),
    "dcgan": (lambda: DCGAN(channels=1), _digits),
    "cgan": (lambda: ConditionalGAN(num_classes=10, channels=1), _digits),
    "text_gan": (lambda: TextGAN(vocab_size=10, attribute_sizes=[3, 3, 3, 3]), _scenes),
    "vae": (lambda: VAE(channels=1), _digits),
    "ddpm": (lambda: DDPM(timesteps=20), _points),
}


def _stepper(model):
    groups = model.optimizer_groups()
    opts = {g: torch.optim.Adam(p, lr=1e-2) for g, p in groups.items()}
    scheds = {g: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 1.0) for g, o in opts.items()}
    return Stepper(model=model, wrapped=None, groups=groups, optimizers=opts, schedulers=scheds,
                   scaler=None, clip=None, device=torch.device("cpu"), amp=None), opts


@pytest.mark.parametrize("name", sorted(MODELS))
def test_each_optimizer_group_changes_only_its_own_parameters(name):
    torch.manual_seed(0)
    make, batch = MODELS[name]
    model = make()
    model.train()
    stepper, opts = _stepper(model)
    groups = model.optimizer_groups()
    ids = {g: {id(p) for p in ps} for g, ps in groups.items()}
    assert sum(len(v) for v in ids.values()) == len(set().union(*ids.values())), "groups overlap"
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set().union(*ids.values()) == trainable, "a trainable parameter is in no group"
    params = dict(model.named_parameters())
    steps = []
    for g, opt in opts.items():
        inner = opt.step

        def step(*a, _g=g, _inner=inner, **k):
            before = {n: p.detach().clone() for n, p in params.items()}
            out = _inner(*a, **k)
            changed = {n for n, p in params.items() if not torch.equal(before[n], p)}
            own = {n for n, p in params.items() if id(p) in ids[_g]}
            assert changed and changed <= own, (_g, sorted(changed - own)[:3])
            steps.append(_g)
            return out

        opt.step = step
    stepper.run([batch()], 1, check=True, log=False)
    assert set(steps) == set(groups)


@pytest.mark.parametrize("d_steps", [1, 3])
def test_the_discriminator_generator_ratio_is_honoured(d_steps):
    torch.manual_seed(0)
    model = GAN(d_steps=d_steps)
    stepper, opts = _stepper(model)
    order = []
    for g, opt in opts.items():
        inner = opt.step
        opt.step = lambda *a, _g=g, _i=inner, **k: (order.append(_g), _i(*a, **k))[1]
    for step in (1, 2):
        stepper.run([_points()], step, check=False, log=False)
    assert order == (["discriminator"] * d_steps + ["generator"]) * 2


def test_ddpm_forward_noising_is_its_closed_form():
    T = 50
    model = DDPM(timesteps=T, beta_start=1e-4, beta_end=0.3)
    betas = torch.linspace(1e-4, 0.3, T, dtype=torch.float64)
    abar = [math.prod(1 - float(b) for b in betas[: t + 1]) for t in range(T)]
    assert torch.allclose(model.abar.double(), torch.tensor(abar, dtype=torch.float64), rtol=1e-5)
    # q(x_t | x_0) by t one-step noisings sqrt(1 - beta) x + sqrt(beta) eps equals the
    # closed form's mean and variance (200k points, t = 10)
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((200000, 2), 1.5, dtype=torch.float64)
    x = x0.clone()
    t = 10
    for s in range(t + 1):
        x = (1 - betas[s]).sqrt() * x + betas[s].sqrt() * torch.randn(x.shape, generator=g, dtype=torch.float64)
    closed = model.q_sample(x0.float(), torch.full((len(x0),), t), torch.randn(x0.shape, generator=g))
    assert float(x.mean()) == pytest.approx(float(closed.mean()), abs=5e-3)
    assert float(x.var()) == pytest.approx(float(closed.var()), rel=1e-2)
    assert float(closed.mean()) == pytest.approx(1.5 * abar[t] ** 0.5, abs=5e-3)
    # the default schedule ends in pure noise
    assert float(DDPM().abar[-1]) < 1e-3


def test_vae_kl_is_the_analytic_value():
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(5, 7), torch.ones(5, 7))
    ref = torch.distributions.kl_divergence(q, p).sum(1)
    assert torch.allclose(gaussian_kl(mu, logvar), ref, atol=1e-5)


def test_vae_samples_through_the_reparameterisation():
    torch.manual_seed(0)
    model = VAE(channels=1)
    x = _digits(4)
    losses = model.losses(x)
    losses["loss_rec"].backward()
    # the reconstruction loss reaches the encoder only through z = mu + sigma * eps
    assert model.E[-1].weight.grad is not None and model.E[-1].weight.grad.abs().sum() > 0


def test_text_gan_discriminator_is_matching_aware():
    torch.manual_seed(0)
    model = TextGAN(vocab_size=10, attribute_sizes=[3, 3, 3, 3], attribute_weight=0.0)
    images, tokens, attrs = _scenes(4)
    seen = []
    real_judge = model.judge

    def judge(x, t):
        seen.append((x.detach().clone(), t.clone()))
        return real_judge(x, t)

    model.judge = judge
    losses = model.d_loss((images, tokens, attrs))
    assert set(losses) == {"loss_d_real", "loss_d_mismatch", "loss_d_fake"}
    (real, t0), (wrong, t1), (fake, t2) = seen
    net = images * 2 - 1
    assert torch.equal(real, net) and torch.equal(wrong, net.roll(1, 0)) and not torch.equal(fake, net)
    assert torch.equal(t0, tokens) and torch.equal(t1, tokens) and torch.equal(t2, tokens)


def test_conditional_requests():
    from zoo.errors import UserError

    cgan = ConditionalGAN(num_classes=10, channels=1)
    assert cgan.request(3, label=7).tolist() == [7, 7, 7]
    with pytest.raises(UserError):
        cgan.request(3, label=10)
    tg = TextGAN(vocab_size=10, attribute_sizes=[3, 3, 3, 3])
    _tokens, attrs = tg.request(2, text="blue square right of red circle")
    assert attrs.tolist() == [[0, 0, 2, 1]] * 2
    with pytest.raises(UserError, match="unknown word"):
        tg.request(2, text="purple circle left of blue square")
    with pytest.raises(UserError, match="not conditioned"):
        GAN().request(2, label=1)


def test_data_is_seeded_and_described():
    a, b = Mixture2D(layout="grid", modes=25), Mixture2D(layout="grid", modes=25)
    assert torch.equal(a.dataset("val").tensors[0], b.dataset("val").tensors[0])
    assert len(a.meta["centers"]) == 25
    images, _labels, masks = ShapeImages(num_train=20).render("train")
    assert images.shape == (20, 3, 32, 32) and 0 <= float(images.min()) and float(images.max()) <= 1
    assert torch.equal(images.amax(1) > 0, masks)
    from zoo.data.generative import describe, parse_description

    for attrs in ([0, 1, 2, 0], [2, 2, 1, 1]):
        for flipped in (False, True):
            assert parse_description(describe(attrs, flipped)).tolist() == attrs
