// Recurrent layers as torch.export leaves them: aten.lstm/gru/rnn_tanh/rnn_relu with the
// weights as one flat list (w_ih, w_hh[, b_ih, b_hh][, w_hr] per layer and direction).
// The helpers run the time loop in Python over MLX ops, batch-first inside.
#include <utility>
#include <vector>

#include "call.h"
#include "emit_util.h"

namespace torch2mlx {

namespace {

// The state, the flat weight list and the flags: the helpers' arguments after the input.
std::vector<py::Expr> arguments(Call& call) {
  const Arg* hx = call.node().input("hx");
  const py::Expr state = hx != nullptr && hx->kind == ArgKind::TensorList
                             ? py::list(call.tensors("hx"))
                             : call.tensor("hx");
  return {call.tensor("input"),
          state,
          py::list(call.tensors("params")),
          py::boolean(call.flag("has_biases", true)),
          py::integer(call.integer("num_layers", 1)),
          py::boolean(call.flag("bidirectional", false)),
          py::boolean(call.flag("batch_first", false))};
}

py::Expr lstm(Call& call) {
  call.helper("recurrent_layers");
  return call.helper("lstm")(arguments(call));
}

template <Text Cell>
py::Expr single_state(Call& call) {
  call.helper("recurrent_layers");
  std::vector<py::Expr> args = arguments(call);
  args.push_back(py::string(Cell.view()));
  return call.helper("gru_or_rnn")(std::move(args));
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
