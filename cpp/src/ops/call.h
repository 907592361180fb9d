// What an op emitter sees of a node: its arguments as Python expressions (python_ast.h),
// their metadata, and the layout they are stored in. Emitters return one expression built
// with the py:: builders, never text; they ask for helper functions (emitted once at the top
// of model.py) with call.helper().
//
// Axis arguments must go through axis()/axes(): a tensor stored channels-last keeps torch's
// logical axes in the graph, and these map them to the stored ones.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "torch2mlx/graph.h"
#include "torch2mlx/op_mapping.h"
#include "torch2mlx/python_ast.h"
#include "torch2mlx/registry.h"

namespace torch2mlx {

/// A storage order: stored axis i holds logical axis perm[i]. Empty means torch's order.
using Perm = std::vector<int>;

/// The code generator's state that emitters read and add to.
struct EmitState {
  const ExportedProgram* program = nullptr;
  std::map<std::string, py::Expr> rendered;   // value name -> expression in this scope
  std::map<std::string, Perm> perms;          // value name -> storage order
  std::map<std::string, std::string> params;  // graph value name -> state-dict target
  std::map<std::string, std::pair<Transform, std::int64_t>> weight_layouts;  // target ->
  std::set<std::string> helpers;                                             // requested
};

/// One node, as an emitter sees it.
class Call {
 public:
  Call(const Node& node, EmitState& state) : node_(node), state_(state) {}

  /// The node being emitted.
  [[nodiscard]] const Node& node() const { return node_; }
  /// True when the argument is given and is not None.
  [[nodiscard]] bool has(std::string_view name) const;
  /// The expression of a tensor argument.
  [[nodiscard]] py::Expr tensor(std::string_view name) const;
  /// The expressions of a tensor-list argument (None for missing optional entries).
  [[nodiscard]] std::vector<py::Expr> tensors(std::string_view name) const;
  /// Any argument as an expression: ints, tuples, floats, bools, None, strings, dtypes,
  /// symbolic sizes; `fallback` when the node does not have it.
  [[nodiscard]] py::Expr literal(std::string_view name, const py::Expr& fallback = {}) const;
  /// An integer argument; symbolic sizes are refused (use literal()).
  [[nodiscard]] std::int64_t integer(std::string_view name, std::int64_t fallback) const;
  /// An int-list argument (a single int becomes a one-element list); symbols are refused.
  [[nodiscard]] std::vector<std::int64_t> ints(std::string_view name) const;
  /// A float (or int) argument.
  [[nodiscard]] double number(std::string_view name, double fallback) const;
  /// A bool argument.
  [[nodiscard]] bool flag(std::string_view name, bool fallback) const;
  /// A string argument.
  [[nodiscard]] std::string text(std::string_view name, std::string_view fallback) const;
  /// A dtype argument as `mx.float32`, or nullopt when absent or None.
  [[nodiscard]] std::optional<py::Expr> dtype(std::string_view name) const;
  /// The storage axis of a (possibly negative) logical axis argument of the first input.
  [[nodiscard]] std::int64_t axis(std::string_view name, std::int64_t fallback) const;
  /// The storage axes of an axis-list argument; empty when absent or None.
  [[nodiscard]] std::vector<std::int64_t> axes(std::string_view name) const;
  /// The storage axis of logical axis `logical` of the first input (negatives allowed).
  [[nodiscard]] std::int64_t storage_axis(std::int64_t logical) const;
  /// Metadata of a tensor argument, or nullptr when unknown.
  [[nodiscard]] const TensorMeta* meta(std::string_view name) const;
  /// Metadata of output `index`, or nullptr.
  [[nodiscard]] const TensorMeta* out_meta(std::size_t index = 0) const;
  /// Rank of a tensor argument; refuses when unknown.
  [[nodiscard]] int rank(std::string_view name) const;
  /// The dtype of a tensor argument as `mx.float32`; refuses when unknown.
  [[nodiscard]] py::Expr tensor_dtype(std::string_view name) const;
  /// True when the first input is stored in a permuted order.
  [[nodiscard]] bool permuted() const;
  /// A tensor argument that is a convolution weight, in MLX's layout. A parameter is
  /// converted once at conversion time; anything else is transposed at run time.
  [[nodiscard]] py::Expr conv_weight(std::string_view name, bool transposed, std::int64_t groups);
  /// Requests helper function `name` (see helpers.cpp) and returns its name, to call.
  py::Expr helper(std::string_view name);
  /// Throws Error naming the node, its module and the reason.
  [[noreturn]] void unsupported(std::string_view reason) const;

 private:
  [[nodiscard]] const Arg* arg(std::string_view name) const;
  [[nodiscard]] py::Expr value(const std::string& name) const;
  [[nodiscard]] int rank_of(const std::string& name) const;
  const Node& node_;
  EmitState& state_;
};

/// "mx.float32" for "float32"; nullopt for dtypes MLX lacks.
[[nodiscard]] std::optional<std::string> mlx_dtype(std::string_view numpy_name);
/// `mx.float32` for "float32"; nullopt for dtypes MLX lacks.
[[nodiscard]] std::optional<py::Expr> mlx_dtype_expr(std::string_view numpy_name);

/// The Python source of helper `name` (a function of src/torch2mlx/mlx_helpers.py), or
/// nullopt.
[[nodiscard]] std::optional<std::string_view> helper_source(std::string_view name);

/// The helpers that helper `name` calls, directly or through others.
[[nodiscard]] std::vector<std::string> helper_dependencies(std::string_view name);

/// True when a transposed convolution's padding is past dilation * (kernel - 1) on some
/// axis, where MLX's own padding returns too short an output (mlx 0.32.4; mx.conv_transpose*d
/// and mlx.nn.ConvTranspose*d alike): such a node is computed by the conv_transpose helper.
/// `weight` is the torch weight's metadata, (I, O/g, *K); an unknown kernel counts as past.
[[nodiscard]] bool transpose_padding_past_kernel(const Node& node, const TensorMeta* weight);

// The op tables, one per family (cpp/src/ops/<family>.cpp).
std::vector<OpEntry> elementwise_ops();
std::vector<OpEntry> reduction_ops();
std::vector<OpEntry> shape_ops();
std::vector<OpEntry> conv_pool_ops();
std::vector<OpEntry> norm_attention_ops();
std::vector<OpEntry> indexing_ops();
std::vector<OpEntry> creation_ops();
std::vector<OpEntry> symbolic_ops();
std::vector<OpEntry> recurrent_ops();
/// The unsupported overloads and why, one table for all families.
std::vector<UnsupportedOp> unsupported_op_table();

}  // namespace torch2mlx
