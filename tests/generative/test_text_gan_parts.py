"""The text-conditioned GAN's conditioning parts: word order reaches the code, conditional
BatchNorm takes its scale and shift from the code, and the projection term is the inner
product the discriminator adds."""

from __future__ import annotations

import pytest
import torch

from zoo.errors import UserError
from zoo.models.generative.text_gan import (
    ConditionalBatchNorm,
    PositionalTextEncoder,
    text_encoder_of,
)


def test_positional_encoder_tells_word_order_apart():
    torch.manual_seed(0)
    enc = PositionalTextEncoder(vocab_size=10, dim=8, length=4)
    a = torch.tensor([[1, 2, 3, 4]])
    b = torch.tensor([[3, 2, 1, 4]])  # the same words, two of them swapped
    assert not torch.allclose(enc(a), enc(b))
    with pytest.raises(UserError, match="reads 4 words"):
        enc(torch.tensor([[1, 2, 3]]))
    with pytest.raises(UserError, match="text_encoder=bow"):
        text_encoder_of("bow", 10, 8, 4)


def test_conditional_batchnorm_scale_and_shift_come_from_the_code():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm(channels=3, code_dim=5)
    cbn.train()
    x = torch.randn(4, 3, 6, 6)
    code = torch.randn(4, 5)
    y = cbn(x, code)
    gamma, beta = cbn.film(code).chunk(2, 1)
    ref = torch.nn.functional.batch_norm(x, None, None, training=True, eps=cbn.bn.eps)
    torch.testing.assert_close(y, ref * (1 + gamma[:, :, None, None]) + beta[:, :, None, None])
    # another description, another normalisation of the same features
    assert not torch.allclose(cbn(x, torch.randn(4, 5)), y)
    assert not any(p is not None for p in (cbn.bn.weight, cbn.bn.bias))  # no own affine
