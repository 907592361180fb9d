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
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn


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

    def _cell(self, x_proj, state, w_hh, b_hh, w_hr):
        """One time step: x_proj = x @ W_ih.T + b_ih; state is (h,) or (h, c)."""
        raise NotImplementedError

    def _initial_state(self, hx, batch: int) -> list[tuple]:
        """One state tuple per (layer, direction), from hx (num_layers * D, N, H)."""
        count = self.num_layers * len(self.suffixes)
        h_size = self.proj_size or self.hidden_size
        if hx is None:
            hx = (mx.zeros((count, batch, h_size)),)
            if self.gates == 4:
                hx += (mx.zeros((count, batch, self.hidden_size)),)
        elif not isinstance(hx, (tuple, list)):
            hx = (hx,)
        return [tuple(part[i] for part in hx) for i in range(count)]

    def __call__(self, input: mx.array, hx=None):
        batched = input.ndim == 3
        if not batched:  # (L, H_in), hx (layers * D, H)
            input = input[:, None]
            if hx is not None:
                hx = tuple(h[:, None] for h in hx) if isinstance(hx, tuple) else hx[:, None]
        elif self.batch_first:
            input = input.swapaxes(0, 1)
        x = input  # time-major (L, N, H_in) from here on
        states = self._initial_state(hx, x.shape[1])

        finals = []
        for k in range(self.num_layers):
            outputs = []
            for d, sfx in enumerate(self.suffixes):
                w_ih, w_hh, b_ih, b_hh, w_hr = (
                    self.get(f"{name}_l{k}{sfx}")
                    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
                )
                x_proj = x @ w_ih.T  # the input's share of every step at once
                if b_ih is not None:
                    x_proj = x_proj + b_ih
                state = states[k * len(self.suffixes) + d]
                ys = [None] * x.shape[0]
                steps = range(x.shape[0])
                for t in reversed(steps) if d == 1 else steps:
                    state = self._cell(x_proj[t], state, w_hh, b_hh, w_hr)
                    ys[t] = state[0]
                outputs.append(mx.stack(ys))
                finals.append(state)
            x = mx.concatenate(outputs, axis=-1)

        final = tuple(mx.stack([s[i] for s in finals]) for i in range(len(finals[0])))
        if not batched:
            x = x[:, 0]
            final = tuple(f[:, 0] for f in final)
        elif self.batch_first:
            x = x.swapaxes(0, 1)
        return x, (final if self.gates == 4 else final[0])


def _hidden(h, w_hh, b_hh):
    y = h @ w_hh.T
    return y if b_hh is None else y + b_hh


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

    def _cell(self, x_proj, state, w_hh, b_hh, w_hr):
        y = x_proj + _hidden(state[0], w_hh, b_hh)
        return (mx.tanh(y) if self.nonlinearity == "tanh" else mx.maximum(y, 0),)


class LSTM(_RNNBase):
    """torch.nn.LSTM, gates (i, f, g, o) in that order along the rows of the weights:

        i, f, o = sigmoid(...), g = tanh(...),  c' = f * c + i * g,  h' = o * tanh(c')
        with proj_size > 0:  h' = (o * tanh(c')) W_hr^T

    Call (input, hx=None) -> (output, (h_n, c_n)); hx is (h_0, c_0).
    """

    gates = 4

    def _cell(self, x_proj, state, w_hh, b_hh, w_hr):
        h, c = state
        i, f, g, o = mx.split(x_proj + _hidden(h, w_hh, b_hh), 4, axis=-1)
        c = mx.sigmoid(f) * c + mx.sigmoid(i) * mx.tanh(g)
        h = mx.sigmoid(o) * mx.tanh(c)
        if w_hr is not None:
            h = h @ w_hr.T
        return h, c


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

    def _cell(self, x_proj, state, w_hh, b_hh, w_hr):
        h = state[0]
        x_r, x_z, x_n = mx.split(x_proj, 3, axis=-1)
        h_r, h_z, h_n = mx.split(_hidden(h, w_hh, b_hh), 3, axis=-1)
        r = mx.sigmoid(x_r + h_r)
        z = mx.sigmoid(x_z + h_z)
        n = mx.tanh(x_n + r * h_n)
        return ((1 - z) * n + z * h,)
