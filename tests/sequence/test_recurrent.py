"""The explicit RNN/LSTM/GRU cells equal PyTorch's, and packed batches equal one-by-one runs."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from zoo.models.sequence.classifier import RecurrentClassifier
from zoo.models.sequence.language_model import RecurrentLM
from zoo.layers.recurrent import RecurrentStack, gru_cell, lstm_cell, make_recurrent


@pytest.mark.parametrize("cell", ["lstm", "rnn", "gru"])
def test_explicit_stack_equals_torch(cell):
    torch.manual_seed(0)
    ref = make_recurrent(cell, 5, 8, num_layers=2)
    ours = make_recurrent(cell, 5, 8, num_layers=2, impl="explicit")
    assert isinstance(ours, RecurrentStack)
    # identical parameter names and shapes: state dicts move both ways unchanged
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 7, 5, dtype=torch.float64)
    ref.double(), ours.double()
    h0 = torch.randn(2, 3, 8, dtype=torch.float64)
    state = (h0, torch.randn_like(h0)) if cell == "lstm" else h0
    out_ref, s_ref = ref(x, state)
    out, s = ours(x, state)
    torch.testing.assert_close(out, out_ref, rtol=0, atol=1e-12)
    for a, b in zip(s if cell == "lstm" else [s], s_ref if cell == "lstm" else [s_ref]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_lstm_cell_gates_equal_nn_lstmcell():
    torch.manual_seed(1)
    ref = nn.LSTMCell(4, 6).double()
    x, h, c = torch.randn(2, 4).double(), torch.randn(2, 6).double(), torch.randn(2, 6).double()
    h_ref, c_ref = ref(x, (h, c))
    h1, c1 = lstm_cell(x, h, c, ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh)
    torch.testing.assert_close(h1, h_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(c1, c_ref, rtol=0, atol=1e-12)


def test_gru_cell_gates_equal_nn_grucell():
    torch.manual_seed(1)
    ref = nn.GRUCell(4, 6).double()
    x, h = torch.randn(2, 4).double(), torch.randn(2, 6).double()
    torch.testing.assert_close(gru_cell(x, h, ref.weight_ih, ref.weight_hh, ref.bias_ih, ref.bias_hh),
                               ref(x, h), rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_explicit_stack_on_packed_input_equals_torch_for_each_cell(cell):
    torch.manual_seed(3)
    ref = make_recurrent(cell, 3, 5, 2).double()
    ours = make_recurrent(cell, 3, 5, 2, impl="explicit").double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    packed = pack_padded_sequence(x, torch.tensor([6, 2, 4]), batch_first=True, enforce_sorted=False)
    (out_ref, s_ref), (out, s) = ref(packed), ours(packed)
    torch.testing.assert_close(out.data, out_ref.data, rtol=0, atol=1e-12)
    for a, b in zip(s if cell == "lstm" else [s], s_ref if cell == "lstm" else [s_ref]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_forget_gate_closed_and_input_gate_open_overwrites_the_cell():
    # forget gate bias -inf and input gate bias +inf: c' = g exactly (memory replaced)
    H, I = 3, 2
    w_ih, w_hh = torch.zeros(4 * H, I), torch.zeros(4 * H, H)
    b = torch.zeros(4 * H)
    b[:H], b[H:2 * H] = 1e4, -1e4
    b[2 * H:3 * H] = 0.5
    _h, c = lstm_cell(torch.ones(1, I), torch.zeros(1, H), torch.full((1, H), 9.0), w_ih, w_hh, b, b * 0)
    torch.testing.assert_close(c, torch.full((1, H), torch.tanh(torch.tensor(0.5)).item()))


@pytest.mark.parametrize("impl", ["torch", "explicit"])
def test_packed_classifier_equals_one_by_one(impl):
    torch.manual_seed(0)
    model = RecurrentClassifier(vocab_size=12, num_classes=3, hidden_size=16, num_layers=2,
                                impl=impl).double().eval()
    seqs = [torch.randint(1, 12, (n,)) for n in (7, 2, 5, 1)]
    batch = torch.zeros(4, 7, dtype=torch.int64)
    for i, s in enumerate(seqs):
        batch[i, : len(s)] = s
    together = model(batch)
    alone = torch.cat([model(s[None]) for s in seqs])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-12)


def test_explicit_stack_on_packed_input_equals_torch():
    torch.manual_seed(2)
    ref = make_recurrent("lstm", 3, 5, 2).double()
    ours = make_recurrent("lstm", 3, 5, 2, impl="explicit").double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    packed = pack_padded_sequence(x, torch.tensor([6, 2, 4]), batch_first=True, enforce_sorted=False)
    (out_ref, (h_ref, c_ref)), (out, (h, c)) = ref(packed), ours(packed)
    torch.testing.assert_close(out.data, out_ref.data, rtol=0, atol=1e-12)
    torch.testing.assert_close(h, h_ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(c, c_ref, rtol=0, atol=1e-12)


def test_lm_carries_detached_state_across_batches():
    torch.manual_seed(0)
    lm = RecurrentLM(vocab_size=10, embed_dim=4, hidden_size=8, num_layers=1)
    x = torch.randint(0, 10, (2, 5))
    lm.training_step((x, x))
    h, _c = lm._carry
    assert not h.requires_grad and h.abs().sum() > 0
    # the second chunk starts from the carried state, so it differs from a fresh start
    loss_carried = lm.training_step((x, x))["loss"]
    loss_carried.backward()  # gradients stop at the chunk edge: no error about freed graphs
    lm._carry = None
    assert not torch.allclose(loss_carried, lm.training_step((x, x))["loss"])
    # prediction always starts from zero and resets the training state
    p1 = lm.predict((x, x))
    assert lm._carry is None
    torch.testing.assert_close(p1, lm.predict((x, x)))
    # a batch of another size is not a continuation: the state is dropped, not broadcast
    lm.training_step((x, x))
    lm.training_step((x[:1], x[:1]))
    assert lm._carry[0].shape[1] == 1
