// What the passes share (passes.cpp, fusions.cpp): reading a node's arguments, and
// rewiring and removing values while keeping the program in SSA form.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "torch2mlx/graph.h"

namespace torch2mlx::pass_util {

/// Every later read of `from` (node inputs after `node_index`, and the graph's outputs)
/// reads `to` instead.
void replace_uses(ExportedProgram& program, std::size_t node_index, const std::string& from,
                  const std::string& to);

/// Removes the nodes whose flag is set, keeping the order of the others.
std::size_t remove_nodes(ExportedProgram& program, const std::vector<bool>& remove);

/// The metadata of a tensor argument, or nullptr.
const TensorMeta* meta_of(const ExportedProgram& program, const Arg* arg);

/// The metadata of a value by name, or nullptr.
const TensorMeta* meta_of(const ExportedProgram& program, const std::string& value);

/// Whether two shapes are the same, symbol for symbol.
bool same_dims(const std::vector<Dim>& a, const std::vector<Dim>& b);

/// The value names a node defines.
std::vector<std::string> output_names(const Node& node);

/// The value a tensor argument reads, or "" when the argument is absent or not a tensor.
std::string tensor_input(const Node& node, std::string_view name);

/// A literal (not symbolic) int, bool or float argument.
std::optional<double> literal_number(const Node& node, std::string_view name);

/// A literal (not symbolic) int or bool argument.
std::optional<std::int64_t> literal_int(const Node& node, std::string_view name);

/// A literal (not symbolic) int-list argument.
std::optional<std::vector<std::int64_t>> literal_ints(const Node& node, std::string_view name);

/// Who defines and who reads each value of a program, as it is when built.
class DefUse {
 public:
  explicit DefUse(const ExportedProgram& program);

  /// The node defining `value`, or nullptr for graph inputs and unknown names.
  [[nodiscard]] const Node* producer(const std::string& value) const;
  /// The nodes reading `value`, in order (a node reading it twice is listed once).
  [[nodiscard]] std::vector<const Node*> readers(const std::string& value) const;
  /// Whether `value` is read by exactly one node and is not a graph output.
  [[nodiscard]] bool read_once(const std::string& value) const;
  /// Whether `value` is one of the graph's outputs.
  [[nodiscard]] bool is_graph_output(const std::string& value) const;

 private:
  const ExportedProgram& program_;
  std::map<std::string, std::size_t> producer_;
  std::map<std::string, std::vector<std::size_t>> readers_;
  std::map<std::string, int> graph_outputs_;
};

}  // namespace torch2mlx::pass_util
