// The op registry: one entry per ATen overload (plus the few Python operators torch.export
// records for symbolic sizes), each with the function that writes its MLX code and the
// layout rule that says how it treats channels-last tensors.
//
// In-place and out= overloads are not listed: normalise_target() maps them to the
// functional op first ("aten.relu_.default" -> "aten.relu.default").
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "torch2mlx/graph.h"

namespace torch2mlx {

class Call;  // what an emitter sees of a node: cpp/src/ops/call.h
namespace py {
class Expr;  // a Python expression: torch2mlx/python_ast.h
}

/// Builds the Python expression that computes a node's output(s): a tuple for several; an
/// expression of kind Omitted writes nothing.
using Emitter = py::Expr (*)(Call& call);

/// How an op treats tensors whose axes are stored permuted (channels-last).
enum class LayoutRule : std::uint8_t {
  Standard,      // needs torch's axis order: permuted inputs are transposed back first
  Elementwise,   // works in any order as long as all inputs share it; output keeps it
  Axis,          // keeps the first input's order; its axis arguments go through call.axis()
  Reduce,        // like Axis over the "dim" list; without keepdim the reduced axes go away
  ChannelsLast,  // runs on channels-last input (NLC, NHWC, NDHWC) and returns channels-last
  Relabel        // permute/transpose: no data moves, the output is the input in another order
};

/// One registry entry.
struct OpEntry {
  std::string_view target;  // e.g. "aten.conv2d.default"
  Emitter emit;
  LayoutRule layout = LayoutRule::Standard;
};

/// An overload the registry knows and refuses, with the reason.
struct UnsupportedOp {
  std::string_view target;
  std::string_view reason;
};

/// The functional overload of an in-place or out= overload; others unchanged.
[[nodiscard]] std::string normalise_target(std::string_view target);

/// The entry for `target` (after normalise_target), or nullptr.
[[nodiscard]] const OpEntry* find_op(std::string_view target);

/// Every registered overload, sorted.
[[nodiscard]] std::vector<std::string> supported_ops();

/// Overloads that are deliberately not supported, with reasons, sorted.
[[nodiscard]] std::vector<UnsupportedOp> unsupported_ops();

/// Why torch's own loader must not be handed `program` (a node whose op this registry does
/// not know, an argument kind it cannot read, a custom object), or "" when it may be.
[[nodiscard]] std::string torch_loading_hazard(const ExportedProgram& program);

/// The reason `target` is unsupported, or "" if the registry does not list it as such.
[[nodiscard]] std::string_view unsupported_reason(std::string_view target);

}  // namespace torch2mlx
