"""Recurrent cells written out gate by gate, and the layer stacks every recurrent model uses.

``RecurrentStack`` runs a multi-layer Elman RNN (tanh), LSTM or GRU over a (B, T, I)
batch from the explicit cells below. Its parameters carry ``torch.nn.RNN``/``nn.LSTM``/
``nn.GRU``'s names and layout (``weight_ih_l0`` = an LSTM's four gates stacked in the
order input, forget, cell, output; a GRU's three as reset, update, new), so a state
dict moves between the two unchanged and a test can prove the outputs equal. ``make_recurrent(impl="torch")`` returns the fast built-in instead (the
default); both take ``(x, state)`` and return ``(outputs, state)``, batch first.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from zoo.layers import Example, _randn
from zoo.registry import buildable

CELLS = ("rnn", "lstm", "gru")
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
IMPLS = ("torch", "explicit")

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def rnn_cell(x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
             b_ih: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
    """Elman (1990): h' = tanh(W_ih x + b_ih + W_hh h + b_hh). x (B, I), h (B, H)."""
    return torch.tanh(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)


def lstm_cell(x: torch.Tensor, h: torch.Tensor, c: torch.Tensor, w_ih: torch.Tensor,
              w_hh: torch.Tensor, b_ih: torch.Tensor, b_hh: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

    x (B, I), h and c (B, H); weights stack the gates as [input, forget, cell, output].
    """
    gates = x @ w_ih.T + b_ih + h @ w_hh.T + b_hh       # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=1)
    i = torch.sigmoid(i)   # input gate: how much of the candidate to write
    f = torch.sigmoid(f)   # forget gate: how much of the old cell to keep (0 = forget all)
    g = torch.tanh(g)      # candidate memory, signed so it can also decrease the cell
    o = torch.sigmoid(o)   # output gate: which part of the memory becomes the new h
    c = f * c + i * g      # long-term memory: forget first, then add
    h = o * torch.tanh(c)  # short-term memory and this step's output
    return h, c


def gru_cell(x: torch.Tensor, h: torch.Tensor, w_ih: torch.Tensor, w_hh: torch.Tensor,
             b_ih: torch.Tensor, b_hh: torch.Tensor) -> torch.Tensor:
    """One GRU step (Cho et al. 2014), in ``nn.GRU``'s form: the reset gate scales the
    recurrent part of the candidate *after* its projection. x (B, I), h (B, H); weights
    stack the gates as [reset, update, new]."""
    xr, xz, xn = (x @ w_ih.T + b_ih).chunk(3, dim=1)
    hr, hz, hn = (h @ w_hh.T + b_hh).chunk(3, dim=1)
    r = torch.sigmoid(xr + hr)     # reset: how much of the past enters the candidate
    z = torch.sigmoid(xz + hz)     # update: how much of the old state to keep
    n = torch.tanh(xn + r * hn)    # candidate state
    return (1 - z) * n + z * h


@buildable
class RecurrentStack(nn.Module):
    """A stack of explicit RNN, LSTM or GRU cells run step by step (uni-directional, batch first).

    Accepts padded input with ``lengths`` or a ``PackedSequence``; past a sequence's
    length its state is frozen, so the returned final state is the state after its last
    real token, exactly as ``nn.LSTM`` on a packed batch.
    """

    def __init__(self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 dropout: float = 0.0) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
        self.cell, self.hidden_size, self.num_layers, self.dropout = (
            cell, hidden_size, num_layers, dropout)
        gates = GATES[cell]
        for k in range(num_layers):
            in_k = input_size if k == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{k}", nn.Parameter(torch.empty(gates * hidden_size, in_k)))
            self.register_parameter(f"weight_hh_l{k}", nn.Parameter(torch.empty(gates * hidden_size, hidden_size)))
            self.register_parameter(f"bias_ih_l{k}", nn.Parameter(torch.empty(gates * hidden_size)))
            self.register_parameter(f"bias_hh_l{k}", nn.Parameter(torch.empty(gates * hidden_size)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # same initialisation as torch.nn.LSTM: U(-1/sqrt(H), 1/sqrt(H))
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def _weights(self, k: int) -> tuple[torch.Tensor, ...]:
        return (getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}"),
                getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}"))

    def forward(self, x: torch.Tensor | PackedSequence, state: State | None = None,
                lengths: torch.Tensor | None = None) -> tuple[torch.Tensor | PackedSequence, State]:
        packed = isinstance(x, PackedSequence)
        if packed:
            x, lengths = pad_packed_sequence(x, batch_first=True)  # (B, T, I), original order
        B, T, _ = x.shape
        H, L = self.hidden_size, self.num_layers
        if state is None:
            zeros = x.new_zeros(L, B, H)
            state = (zeros, zeros.clone()) if self.cell == "lstm" else zeros
        hs = list((state[0] if self.cell == "lstm" else state).unbind(0))
        cs = list(state[1].unbind(0)) if self.cell == "lstm" else None
        # (B, T, 1) True while t < length: padded steps leave the state unchanged
        valid = None if lengths is None else (
            torch.arange(T, device=x.device)[None, :] < lengths.to(x.device)[:, None])[..., None]
        layer_in = x
        for k in range(L):
            w = self._weights(k)
            outs = []
            for t in range(T):
                if self.cell == "lstm":
                    h, c = lstm_cell(layer_in[:, t], hs[k], cs[k], *w)
                    if valid is not None:
                        h = torch.where(valid[:, t], h, hs[k])
                        c = torch.where(valid[:, t], c, cs[k])
                    cs[k] = c
                else:
                    h = (gru_cell if self.cell == "gru" else rnn_cell)(layer_in[:, t], hs[k], *w)
                    if valid is not None:
                        h = torch.where(valid[:, t], h, hs[k])
                hs[k] = h
                outs.append(h)
            layer_in = torch.stack(outs, dim=1)  # (B, T, H)
            if valid is not None:
                layer_in = layer_in * valid  # padded outputs are zero, as pad_packed gives
            if self.dropout > 0 and self.training and k < L - 1:
                layer_in = nn.functional.dropout(layer_in, self.dropout, training=True)
        h_n = torch.stack(hs, 0)
        new_state: State = (h_n, torch.stack(cs, 0)) if self.cell == "lstm" else h_n
        if packed:
            out = pack_padded_sequence(layer_in, lengths.cpu(), batch_first=True,
                                       enforce_sorted=False)
            return out, new_state
        return layer_in, new_state

    @classmethod
    def example(cls) -> Example:
        return Example(cls("lstm", 3, 4, num_layers=2), (_randn(2, 5, 3),), (2, 5, 4),
                       {"lengths": torch.tensor([5, 2])})


def make_recurrent(cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
                   dropout: float = 0.0, impl: str = "torch") -> nn.Module:
    """``nn.RNN``/``nn.LSTM``/``nn.GRU`` (``impl="torch"``, fast) or the explicit
    ``RecurrentStack``;
    both batch first, both called as ``module(x, state) -> (outputs, state)``."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {cell!r}")
    if impl == "explicit":
        return RecurrentStack(cell, input_size, hidden_size, num_layers, dropout)
    drop = dropout if num_layers > 1 else 0.0  # torch warns about dropout on a single layer
    if cell == "lstm":
        return nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, dropout=drop)
    if cell == "gru":
        return nn.GRU(input_size, hidden_size, num_layers, batch_first=True, dropout=drop)
    return nn.RNN(input_size, hidden_size, num_layers, nonlinearity="tanh", batch_first=True,
                  dropout=drop)


def detach_state(state: State | None) -> State | None:
    """Cut the graph between truncated-BPTT chunks while keeping the values."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()


def last_hidden(state: State) -> torch.Tensor:
    """The top layer's final hidden state (B, H) from an RNN, GRU or LSTM state."""
    h = state[0] if isinstance(state, tuple) else state
    return h[-1]
