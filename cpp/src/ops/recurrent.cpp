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

}  // namespace torch2mlx
