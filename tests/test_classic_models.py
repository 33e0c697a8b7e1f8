"""The classic models: linear and logistic regression against numpy/scikit-learn, lasso
sparsity, XOR, learning on digits, and the torchvision CNNs' small-input adaptations."""

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from zoo.tasks import task_of
from zoo.data.digits import DigitsData
from zoo.data.tabular import MoonsData, RegressionData, XORData
from zoo.errors import UserError
from zoo.models.classification.alexnet import AlexNet
from zoo.models.classification.lenet import LeNet5
from zoo.models.classification.linear import (
    LinearRegression,
    LogisticRegression,
    soft_threshold,
    solve_least_squares,
)
from zoo.models.classification.mlp import MLP
from zoo.models.classification.mobilenet import MobileNetV2
from zoo.models.classification.resnet import ResNet
from zoo.models.classification.shufflenet import ShuffleNetV2
from zoo.models.classification.spp import SpatialPyramidPooling
from zoo.models.classification.squeezenet import SqueezeNet
from zoo.models.classification.vgg import VGG16
from zoo.tasks.classification import prediction_grid

def predict_cli(model, options, data, output=None):
    """What ``predict.py`` does with this model: its task's mode on a run of it."""
    from pathlib import Path
    from types import SimpleNamespace

    from zoo.tasks import task_of

    run = SimpleNamespace(model=model, data=data, run_dir="RUN")
    return task_of(model).predict(run, options, Path(output) if output is not None else None)



def fit(model, data, epochs: int, lr: float, weight_decay: float = 0.0, seed: int = 0) -> None:
    """A plain training loop: AdamW with cosine decay, the model's own training_step."""
    torch.manual_seed(seed)
    loader = DataLoader(data.dataset("train"), batch_size=data.batch_size, shuffle=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    total, step = epochs * len(loader), 0
    model.train()
    for _ in range(epochs):
        for batch in loader:
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            losses = model.training_step(batch)
            loss = sum(v for k, v in losses.items() if not k.startswith("log_"))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if hasattr(model, "on_after_step"):
                model.on_after_step("main", opt.param_groups[0]["lr"])
            step += 1


def evaluate(model, data, split: str = "val") -> dict:
    model.eval()
    ev = task_of(model).build_evaluator(model, data.meta)
    for batch in DataLoader(data.dataset(split), batch_size=512):
        ev.update(model.predict(batch), batch)
    return ev.compute()


# -- linear regression -----------------------------------------------------------------

def _problem(n: int, f: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, f))
    y = x @ rng.standard_normal(f) + 0.7 + 0.1 * rng.standard_normal(n)
    return x, y


@pytest.mark.parametrize("n,f", [(50, 5), (8, 20)])  # full rank; more features than samples
def test_closed_form_equals_numpy_lstsq(n, f):
    x, y = _problem(n, f)
    w, b = solve_least_squares(torch.tensor(x), torch.tensor(y))
    a = np.hstack([x, np.ones((n, 1))])
    ref = np.linalg.lstsq(a, y, rcond=None)[0]  # minimum-norm solution when rank deficient
    np.testing.assert_allclose(w.numpy(), ref[:f], atol=1e-8)
    np.testing.assert_allclose(float(b), ref[f], atol=1e-8)


@pytest.mark.parametrize("n,f", [(50, 5), (8, 20)])
@pytest.mark.parametrize("alpha", [0.1, 3.0])
def test_ridge_equals_sklearn(n, f, alpha):
    from sklearn.linear_model import Ridge

    x, y = _problem(n, f, seed=1)
    w, b = solve_least_squares(torch.tensor(x), torch.tensor(y), l2=alpha)
    ref = Ridge(alpha=alpha, solver="cholesky").fit(x, y)
    np.testing.assert_allclose(w.numpy(), ref.coef_, atol=1e-8)
    np.testing.assert_allclose(float(b), ref.intercept_, atol=1e-8)


def test_closed_form_model_fits_before_training():
    data = RegressionData(num_samples=300, num_features=6, num_informative=6, noise=0.05)
    model = LinearRegression(in_features=6)
    assert model.optimizer_groups() == {}  # the trainer runs no optimizer step
    model.on_train_start(data, None)
    assert float(model.num_train) == 180
    np.testing.assert_allclose(model.linear.weight[0].detach().numpy(),
                               data.meta["true_weight"], atol=0.02)
    metrics = evaluate(model, data)
    assert metrics["r2"] > 0.999 and metrics["mse"] < 0.01
    pred = model.predict(next(iter(DataLoader(data.dataset("val"), batch_size=4))))
    assert pred.shape == (4,)


def test_ridge_model_with_more_features_than_samples():
    data = RegressionData(num_samples=20, num_features=40, num_informative=3)  # 12 training rows
    model = LinearRegression(in_features=40, l2=1.0)
    model.on_train_start(data, None)
    assert torch.isfinite(model.linear.weight).all()
    x, y = data.arrays("train")
    from sklearn.linear_model import Ridge

    ref = Ridge(alpha=1.0).fit(x.double().numpy(), y.double().numpy())
    np.testing.assert_allclose(model.linear.weight[0].detach().numpy(), ref.coef_, atol=1e-5)


def test_gradient_descent_reaches_the_closed_form():
    data = RegressionData(num_samples=400, num_features=5, num_informative=5, batch_size=1000)
    closed = LinearRegression(in_features=5)
    closed.on_train_start(data, None)
    gd = LinearRegression(in_features=5, solver="gd")
    gd.on_train_start(data, None)
    opt = torch.optim.SGD(gd.parameters(), lr=0.2)
    x, y = data.arrays("train")
    for _ in range(200):
        loss = sum(gd.training_step((x, y)).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.testing.assert_close(gd.linear.weight, closed.linear.weight, atol=1e-4, rtol=0)
    torch.testing.assert_close(gd.linear.bias, closed.linear.bias, atol=1e-4, rtol=0)


def test_lasso_zeroes_irrelevant_weights_and_matches_sklearn():
    from sklearn.linear_model import Lasso

    data = RegressionData(num_samples=500, num_features=12, num_informative=3, noise=0.5)
    model = LinearRegression(in_features=12, solver="gd", l1=60.0)
    model.on_train_start(data, None)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data.arrays("train")
    for _ in range(400):  # full-batch proximal gradient descent (ISTA)
        loss = sum(model.training_step((x, y)).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        model.on_after_step("main", 0.1)
    w = model.linear.weight[0].detach()
    assert (w[3:] == 0).all(), w  # exactly zero, not merely small
    assert (w[:3].abs() > 0.5).all(), w
    ref = Lasso(alpha=60.0 / (2 * len(x)), tol=1e-7, max_iter=100_000).fit(x.numpy(), y.numpy())
    np.testing.assert_allclose(w.numpy(), ref.coef_, atol=1e-3)
    # ordinary least squares leaves every irrelevant weight non-zero
    w_ols, _ = solve_least_squares(x, y)
    assert (w_ols[3:] != 0).all()


def test_soft_threshold():
    out = soft_threshold(torch.tensor([-3.0, -0.5, 0.0, 0.2, 2.0]), 1.0)
    assert out.tolist() == [-2.0, 0.0, 0.0, 0.0, 1.0]


def test_linear_regression_rejects_bad_options():
    with pytest.raises(UserError, match="solver"):
        LinearRegression(in_features=3, solver="newton")
    with pytest.raises(UserError, match="gd"):
        LinearRegression(in_features=3, l1=1.0)


# -- logistic regression, MLP, XOR -----------------------------------------------------

def test_logistic_regression_output_forms():
    binary = LogisticRegression(in_features=2, num_classes=2)
    assert binary(torch.randn(5, 2)).shape == (5, 1)
    multi = LogisticRegression(in_features=64, num_classes=10)
    assert multi(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    forced = LogisticRegression(in_features=2, num_classes=2, link="softmax")
    assert forced(torch.randn(5, 2)).shape == (5, 2)
    # the binary loss is the Bernoulli cross-entropy of sigmoid(logit)
    x, y = torch.randn(7, 2), torch.tensor([0, 1, 1, 0, 1, 0, 0])
    with torch.no_grad():
        binary.linear.weight.copy_(torch.tensor([[0.5, -1.0]]))
    p = torch.sigmoid(binary(x)[:, 0])
    ref = -(y * p.log() + (1 - y) * (1 - p).log()).mean()
    torch.testing.assert_close(binary.training_step((x, y))["loss_cls"], ref)


def test_flat_models_refuse_data_of_another_size():
    data = DigitsData(image_size=16)  # 256 features, config still saying 64
    for model in (LogisticRegression(in_features=64, num_classes=10),
                  MLP(in_features=64, num_classes=10)):
        with pytest.raises(UserError, match="data.num_features=256"):
            model.on_train_start(data, None)
    LogisticRegression(in_features=256, num_classes=10).on_train_start(data, None)


def test_logistic_regression_learns_digits():
    data = DigitsData()
    model = LogisticRegression(in_features=64, num_classes=10)
    fit(model, data, epochs=10, lr=0.05, weight_decay=0.01)
    assert evaluate(model, data)["accuracy"] >= 0.94


def test_logistic_regression_stays_near_chance_on_xor_and_mlp_solves_it():
    data = XORData(batch_size=32)
    logreg = LogisticRegression(in_features=2, num_classes=2)
    fit(logreg, data, epochs=10, lr=0.05)
    assert evaluate(logreg, data)["accuracy"] < 0.65
    mlp = MLP(in_features=2, num_classes=2, hidden=[32, 32], dropout=0.1)
    fit(mlp, data, epochs=10, lr=0.01)
    assert evaluate(mlp, data)["accuracy"] > 0.97


def test_binary_logistic_regression_separates_moons_better_than_chance():
    data = MoonsData(batch_size=32)
    model = LogisticRegression(in_features=2, num_classes=2)
    fit(model, data, epochs=10, lr=0.05)
    assert 0.8 < evaluate(model, data)["accuracy"] < 0.95  # linear: good, not perfect


def test_mlp_dropout_only_in_training():
    mlp = MLP(in_features=10, num_classes=3, hidden=[64], dropout=0.5)
    x = torch.randn(4, 10)
    mlp.train()
    assert not torch.equal(mlp(x), mlp(x))
    mlp.eval()
    assert torch.equal(mlp(x), mlp(x))
    assert torch.equal(mlp.predict((x, None)), mlp(x))


# -- CNNs --------------------------------------------------------------------------------

def test_lenet_learns_digits():
    data = DigitsData(image_size=32, num_features=1024)
    model = LeNet5(num_classes=10, in_channels=1, image_size=32)
    assert sum(p.numel() for p in model.parameters()) == 61706  # the paper's layer sizes
    fit(model, data, epochs=8, lr=3e-3)
    assert evaluate(model, data)["accuracy"] >= 0.93


def test_lenet_sizes():
    assert LeNet5(num_classes=10, image_size=28)(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(UserError, match="image_size=32"):
        LeNet5(num_classes=10, image_size=8)


CNNS = {
    "alexnet": lambda **kw: AlexNet(hidden=256, **kw),
    "vgg16": lambda **kw: VGG16(hidden=256, **kw),
    "resnet18": lambda **kw: ResNet(depth=18, **kw),
    "resnet50": lambda **kw: ResNet(depth=50, **kw),
    "squeezenet": SqueezeNet,
    "mobilenet_v2": MobileNetV2,
    "shufflenet_v2": ShuffleNetV2,
}


@pytest.mark.parametrize("name", sorted(CNNS))
@pytest.mark.parametrize("size,channels", [(8, 1), (32, 3)])
def test_small_input_cnns(name, size, channels):
    torch.manual_seed(0)
    model = CNNS[name](num_classes=7, in_channels=channels, small_input=True)
    x = torch.rand(2, channels, size, size)
    feats = model.features(x)
    # small-input stems keep a total stride of at most 8: the map does not vanish
    assert feats.shape[-1] >= size // 8 >= 1
    assert model(x).shape == (2, 7)
    losses = model.training_step((x, torch.tensor([0, 6])))
    assert torch.isfinite(losses["loss_cls"])


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "squeezenet", "alexnet"])
def test_spp_head_accepts_any_input_size(name):
    model = CNNS[name](num_classes=5, in_channels=1, small_input=True, spp_levels=[1, 2, 4]).eval()
    assert isinstance(model.pool, SpatialPyramidPooling)
    for size in (8, 12, 32):
        assert model.predict(torch.rand(2, 1, size, size)).shape == (2, 5)


def test_spatial_pyramid_pooling_values():
    spp = SpatialPyramidPooling([1, 2])
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    out = spp(x)
    assert out.shape == (1, 5)
    assert out[0].tolist() == [15.0, 5.0, 7.0, 13.0, 15.0]  # global max, then 2x2 quadrant maxima
    assert spp(torch.rand(3, 8, 9, 13)).shape == (3, 8 * 5)


def test_full_size_stems_are_torchvision_unchanged():
    import torchvision

    model = ResNet(num_classes=10, depth=18)
    ref = torchvision.models.resnet18(weights=None, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in ref.parameters())
    assert model.features.conv1.kernel_size == (7, 7) and model.features.conv1.stride == (2, 2)
    small = ResNet(num_classes=10, depth=18, in_channels=1, small_input=True)
    assert small.features.conv1.kernel_size == (3, 3) and small.features.conv1.stride == (1, 1)
    assert isinstance(small.features.maxpool, torch.nn.Identity)
    assert model(torch.rand(1, 3, 64, 64)).shape == (1, 10)


def test_classifier_pictures_and_evaluator():
    model = LeNet5(num_classes=10, image_size=32)
    x, y = torch.rand(5, 1, 32, 32), torch.arange(5)
    preds = model.predict((x, y))
    images = task_of(model).images((x, y), preds, {"num_classes": 10})
    grid = images["predictions"]
    # 64-pixel tiles, each with the predicted and true class written under it
    assert grid.shape[0] == 3 and grid.shape[1] > 64 and grid.shape[2] == 5 * 64
    assert 0 <= grid.min() and grid.max() <= 1
    ev = task_of(model).build_evaluator(model, {"num_classes": 10, "class_names": list("abcdefghij")})
    ev.update(preds, (x, y))
    assert ev.compute()["num_samples"] == 5
    # wrong predictions are framed red, right ones green
    logits = torch.zeros(2, 3)
    logits[0, 1] = logits[1, 0] = 1
    g = prediction_grid(torch.rand(2, 1, 8, 8), torch.tensor([1, 1]), logits, cell=16)
    assert g[1, 0, 0] > 0.5 > g[0, 0, 0] and g[0, 0, 16] > 0.5 > g[1, 0, 16]


def test_predict_cli_prints_top_classes(tmp_path, capsys):
    from PIL import Image

    data = DigitsData()
    model = ResNet(num_classes=10, depth=18, in_channels=1, small_input=True).eval()
    path = tmp_path / "digit.png"
    Image.fromarray((np.random.default_rng(0).random((8, 8)) * 255).astype(np.uint8)).save(path)
    out = tmp_path / "out"
    predict_cli(model, {"images": str(path), "topk": "2"}, data, out)
    line = capsys.readouterr().out.strip()
    assert line.startswith(str(path)) and len(line.split(",")) == 2
    assert (out / "predictions.txt").read_text().strip() == line
    with pytest.raises(UserError, match="images"):
        predict_cli(model, {"image": str(path)}, data, None)
    with pytest.raises(UserError, match="topk"):
        predict_cli(model, {"images": str(path), "topk": "two"}, data, None)
    with pytest.raises(UserError, match="does not exist"):
        predict_cli(model, {"images": str(tmp_path / "missing.png")}, data, None)
