"""torch.nn.RNN, LSTM and GRU: multi-layer, bidirectional, batch_first, with torch's
parameter names and gate order.

mlx.nn's recurrent layers are single-layer, unidirectional, batch-first and fold the two
biases together. These keep torch's parameters as they are:

    weight_ih_l{k}{sfx}  (G*H, input of layer k)   G gates: RNN 1, GRU 3 (r, z, n),
    weight_hh_l{k}{sfx}  (G*H, H)                   LSTM 4 (i, f, g, o)
    bias_ih_l{k}{sfx}    (G*H,)                     (when bias=True)
    bias_hh_l{k}{sfx}    (G*H,)
    weight_hr_l{k}{sfx}  (proj_size, H)             (LSTM with proj_size > 0)

where sfx is "" or "_reverse" (the backward direction of a bidirectional layer). Layer
k > 0 reads the concatenated outputs of both directions of layer k - 1. Dropout between
layers is not applied (inference).

The layers hold the parameters; the recurrences are the functions generated code calls for
the same ops (torch2mlx.mlx_helpers: lstm, gru_or_rnn), so that they are written once.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from torch2mlx.mlx_helpers import gru_or_rnn, lstm


class _RNNBase(nn.Module):
    gates = 1  # gate blocks stacked in the weights

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
    ):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        self.suffixes = ("", "_reverse") if bidirectional else ("",)

        out_size = proj_size or hidden_size  # size of h
        scale = 1 / math.sqrt(hidden_size)
        for k in range(num_layers):
            layer_input = input_size if k == 0 else out_size * len(self.suffixes)
            shapes = {
                f"weight_ih_l{k}": (self.gates * hidden_size, layer_input),
                f"weight_hh_l{k}": (self.gates * hidden_size, out_size),
            }
            if bias:
                shapes[f"bias_ih_l{k}"] = (self.gates * hidden_size,)
                shapes[f"bias_hh_l{k}"] = (self.gates * hidden_size,)
            if proj_size:
                shapes[f"weight_hr_l{k}"] = (proj_size, hidden_size)
            # torch's order: every tensor of the forward direction, then the reverse ones.
            for sfx in self.suffixes:
                for name, shape in shapes.items():
                    setattr(self, name + sfx, mx.random.uniform(-scale, scale, shape))

    def _params(self) -> list[mx.array]:
        """The weights in torch's _flat_weights order: per layer and direction w_ih, w_hh,
        then b_ih, b_hh (with bias) and w_hr (with proj_size)."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
        return [
            self[f"{name}_l{k}{sfx}"]
            for k in range(self.num_layers)
            for sfx in self.suffixes
            for name in names
            if f"{name}_l{k}{sfx}" in self
        ]

    def _options(self) -> tuple:
        """The helpers' arguments after the states."""
        return self._params(), self.bias, self.num_layers, self.bidirectional, self.batch_first

    def _states(self, input: mx.array, hx) -> list[mx.array]:
        """h_0 (and c_0), zeros when hx is None: (num_layers * D, N, H), or without N."""
        if hx is not None:
            return list(hx) if isinstance(hx, (tuple, list)) else [hx]
        lead = (self.num_layers * len(self.suffixes),)
        if input.ndim == 3:
            lead += (input.shape[0 if self.batch_first else 1],)
        states = [mx.zeros((*lead, self.proj_size or self.hidden_size))]
        if self.gates == 4:
            states.append(mx.zeros((*lead, self.hidden_size)))
        return states


class RNN(_RNNBase):
    """torch.nn.RNN: h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act tanh or relu.

    Call (input, hx=None) -> (output, h_n). input (L, N, H_in), (N, L, H_in) with
    batch_first, or unbatched (L, H_in); hx and h_n (num_layers * D, N, H).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', not {nonlinearity!r}")
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional
        )
        self.nonlinearity = nonlinearity

    def __call__(self, input: mx.array, hx=None):
        return gru_or_rnn(input, *self._states(input, hx), *self._options(), self.nonlinearity)


class LSTM(_RNNBase):
    """torch.nn.LSTM, gates (i, f, g, o) in that order along the rows of the weights:

        i, f, o = sigmoid(...), g = tanh(...),  c' = f * c + i * g,  h' = o * tanh(c')
        with proj_size > 0:  h' = (o * tanh(c')) W_hr^T

    Call (input, hx=None) -> (output, (h_n, c_n)); hx is (h_0, c_0).
    """

    gates = 4

    def __call__(self, input: mx.array, hx=None):
        out, h, c = lstm(input, self._states(input, hx), *self._options())
        return out, (h, c)


class GRU(_RNNBase):
    """torch.nn.GRU, gates (r, z, n) in that order along the rows of the weights:

        r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    Call (input, hx=None) -> (output, h_n).
    """

    gates = 3

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
    ):
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional
        )

    def __call__(self, input: mx.array, hx=None):
        return gru_or_rnn(input, *self._states(input, hx), *self._options(), "gru")
