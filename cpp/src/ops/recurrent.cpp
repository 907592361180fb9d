// Recurrent layers as torch.export leaves them: aten.lstm/gru/rnn_tanh/rnn_relu with the
// weights as one flat list (w_ih, w_hh[, b_ih, b_hh][, w_hr] per layer and direction).
// The helpers run the time loop in Python over MLX ops, batch-first inside.
#include <fmt/format.h>

#include "call.h"
#include "emit_util.h"
#include "torch2mlx/python_text.h"

namespace torch2mlx {

namespace {

std::string flags(Call& call) {
  return fmt::format("{}, {}, {}, {}", call.flag("has_biases", true) ? "True" : "False",
                     call.integer("num_layers", 1),
                     call.flag("bidirectional", false) ? "True" : "False",
                     call.flag("batch_first", false) ? "True" : "False");
}

std::string state(Call& call) {
  const Arg* hx = call.node().input("hx");
  if (hx != nullptr && hx->kind == ArgKind::TensorList) {
    return fmt::format("[{}]", fmt::join(call.tensors("hx"), ", "));
  }
  return call.tensor("hx");
}

std::string lstm(Call& call) {
  call.helper("recurrent_layers");
  return fmt::format("{}({}, {}, [{}], {})", call.helper("lstm"), call.tensor("input"), state(call),
                     fmt::join(call.tensors("params"), ", "), flags(call));
}

template <Text Cell>
std::string single_state(Call& call) {
  call.helper("recurrent_layers");
  return fmt::format("{}({}, {}, [{}], {}, {})", call.helper("gru_or_rnn"), call.tensor("input"),
                     state(call), fmt::join(call.tensors("params"), ", "), flags(call),
                     python_string(Cell.view()));
}

}  // namespace

std::vector<OpEntry> recurrent_ops() {
  return {
      {"aten.lstm.input", lstm, LayoutRule::Standard},
      {"aten.gru.input", single_state<"gru">, LayoutRule::Standard},
      {"aten.rnn_tanh.input", single_state<"tanh">, LayoutRule::Standard},
      {"aten.rnn_relu.input", single_state<"relu">, LayoutRule::Standard},
  };
}

std::vector<Helper> recurrent_helpers() {
  // clang-format off
  return {
{"recurrent_layers", R"(def recurrent_layers(x, states, params, has_biases, num_layers, bidirectional, batch_first, step):
    # Runs `step` over time for every layer and direction, as torch's RNN modules do.
    unbatched = x.ndim == 2
    if unbatched:
        x, states = x[None], [s[:, None] for s in states]
    if not batch_first and not unbatched:
        x = x.swapaxes(0, 1)
    directions = 2 if bidirectional else 1
    per = len(params) // (num_layers * directions)
    finals = [[] for _ in states]
    for layer in range(num_layers):
        outputs = []
        for direction in range(directions):
            index = layer * directions + direction
            weights = params[index * per : (index + 1) * per]
            w_ih, w_hh = weights[0], weights[1]
            b_ih, b_hh = (weights[2], weights[3]) if has_biases else (None, None)
            w_hr = weights[-1] if per in (3, 5) else None
            xs = x @ w_ih.T if b_ih is None else x @ w_ih.T + b_ih
            carry = [s[index] for s in states]
            ys = [None] * x.shape[1]
            order = range(x.shape[1] - 1, -1, -1) if direction else range(x.shape[1])
            for t in order:
                carry = step(xs[:, t], carry, w_hh, b_hh, w_hr)
                ys[t] = carry[0]
            outputs.append(mx.stack(ys, axis=1))
            for final, value in zip(finals, carry):
                final.append(value)
        x = mx.concatenate(outputs, axis=-1) if directions == 2 else outputs[0]
    if not batch_first and not unbatched:
        x = x.swapaxes(0, 1)
    finals = [mx.stack(final) for final in finals]
    if unbatched:
        x, finals = x[0], [f[:, 0] for f in finals]
    return x, finals
)"},
{"lstm", R"(def lstm(x, states, params, has_biases, num_layers, bidirectional, batch_first):
    # torch.nn.LSTM: gates i, f, g, o; optional projection of h (proj_size).
    def step(xw, carry, w_hh, b_hh, w_hr):
        h, c = carry
        gates = xw + (h @ w_hh.T if b_hh is None else h @ w_hh.T + b_hh)
        i, f, g, o = mx.split(gates, 4, axis=-1)
        c = mx.sigmoid(f) * c + mx.sigmoid(i) * mx.tanh(g)
        h = mx.sigmoid(o) * mx.tanh(c)
        return [h if w_hr is None else h @ w_hr.T, c]

    out, (h, c) = recurrent_layers(
        x, states, params, has_biases, num_layers, bidirectional, batch_first, step
    )
    return out, h, c
)"},
{"gru_or_rnn", R"(def gru_or_rnn(x, state, params, has_biases, num_layers, bidirectional, batch_first, cell):
    # torch.nn.GRU (gates r, z, n) and torch.nn.RNN (tanh or relu).
    def step(xw, carry, w_hh, b_hh, w_hr):
        h = carry[0]
        hw = h @ w_hh.T if b_hh is None else h @ w_hh.T + b_hh
        if cell == "gru":
            xr, xz, xn = mx.split(xw, 3, axis=-1)
            hr, hz, hn = mx.split(hw, 3, axis=-1)
            r, z = mx.sigmoid(xr + hr), mx.sigmoid(xz + hz)
            n = mx.tanh(xn + r * hn)
            return [(1 - z) * n + z * h]
        return [mx.tanh(xw + hw) if cell == "tanh" else mx.maximum(xw + hw, 0)]

    out, (h,) = recurrent_layers(
        x, [state], params, has_biases, num_layers, bidirectional, batch_first, step
    )
    return out, h
)"},
  };
  // clang-format on
}

}  // namespace torch2mlx
