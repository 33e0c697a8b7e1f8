"""Moved to :mod:`zoo.layers.recurrent`; these names stay importable for old code."""

from zoo.layers.recurrent import (
    CELLS,
    IMPLS,
    RecurrentStack,
    State,
    detach_state,
    gru_cell,
    last_hidden,
    lstm_cell,
    make_recurrent,
    rnn_cell,
)

__all__ = ["CELLS", "IMPLS", "RecurrentStack", "State", "detach_state", "gru_cell",
           "last_hidden", "lstm_cell", "make_recurrent", "rnn_cell"]
