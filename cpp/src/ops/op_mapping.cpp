// The op registry: the family tables of cpp/src/ops joined into one sorted index.
#include "torch2mlx/op_mapping.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <string>

#include "call.h"
#include "torch2mlx/error.h"

namespace torch2mlx {

namespace {

const std::map<std::string, OpEntry, std::less<>>& index() {
  static const auto* table = [] {
    auto* result = new std::map<std::string, OpEntry, std::less<>>();
    for (const auto& family :
         {elementwise_ops(), reduction_ops(), shape_ops(), conv_pool_ops(), norm_attention_ops(),
          indexing_ops(), creation_ops(), symbolic_ops(), recurrent_ops()}) {
      for (const OpEntry& entry : family) {
        if (!result->emplace(std::string(entry.target), entry).second) {
          fail("ops", fmt::format("internal: {} is registered twice", entry.target));
        }
      }
    }
    return result;
  }();
  return *table;
}

}  // namespace

// In-place overloads whose functional twin has another overload name.
constexpr std::pair<std::string_view, std::string_view> kRenamedInPlace[] = {
    {"aten.transpose_.default", "aten.transpose.int"},
    {"aten.squeeze_.default", "aten.squeeze.default"},
    {"aten.unsqueeze_.default", "aten.unsqueeze.default"},
    {"aten.t_.default", "aten.t.default"},
};

std::string normalise_target(std::string_view target) {
  for (const auto& [in_place, functional] : kRenamedInPlace) {
    if (target == in_place) return std::string(functional);
  }
  // "aten.relu_.default" -> "aten.relu.default", "aten.atan2.out" -> "aten.atan2.default",
  // "aten.sum.IntList_out" -> "aten.sum.IntList".
  std::string name(target);
  const std::size_t first = name.find('.');
  const std::size_t second = name.find('.', first + 1);
  if (first == std::string::npos || second == std::string::npos) return name;
  std::string op = name.substr(first + 1, second - first - 1);
  std::string overload = name.substr(second + 1);
  // Dunder ops (__and__) keep their underscores.
  if (op.size() > 1 && op.back() == '_' && !op.starts_with("__")) op.pop_back();
  if (overload == "out") {
    overload = "default";
  } else if (overload.ends_with("_out")) {
    overload.erase(overload.size() - 4);
  }
  return fmt::format("{}.{}.{}", name.substr(0, first), op, overload);
}

const OpEntry* find_op(std::string_view target) {
  const std::string normal = normalise_target(target);
  const auto found = index().find(normal);
  return found == index().end() ? nullptr : &found->second;
}

std::vector<std::string> supported_ops() {
  std::vector<std::string> names;
  for (const auto& [name, entry] : index()) names.push_back(name);
  return names;
}

std::vector<UnsupportedOp> unsupported_ops() {
  std::vector<UnsupportedOp> table = unsupported_op_table();
  std::sort(table.begin(), table.end(),
            [](const UnsupportedOp& a, const UnsupportedOp& b) { return a.target < b.target; });
  return table;
}

std::string_view unsupported_reason(std::string_view target) {
  const std::string normal = normalise_target(target);
  for (const UnsupportedOp& entry : unsupported_op_table()) {
    if (entry.target == normal || entry.target == target) return entry.reason;
  }
  return {};
}

std::string torch_loading_hazard(const ExportedProgram& program) {
  // torch's loader resolves a node's target by attribute lookup from the torch module
  // ("torch.os.system" resolves too) and the graph module calls it: only the ops this
  // registry knows may reach it. Arguments this reader cannot see into (subgraphs, custom
  // objects, opaque objects) would be deserialized by torch, possibly by unpickling.
  for (const Node& node : program.nodes) {
    if (find_op(node.target) == nullptr) {
      return fmt::format("node '{}' calls '{}', which is not an op torch2mlx knows", node.name,
                         node.target);
    }
    for (const NamedArg& input : node.inputs) {
      if (input.arg.kind == ArgKind::Unsupported) {
        return fmt::format("node '{}' ({}) takes '{}' as {}, which torch2mlx does not read",
                           node.name, node.target, input.name,
                           input.arg.strings.empty() ? "?" : input.arg.strings[0]);
      }
    }
  }
  for (const InputSpec& input : program.inputs) {
    if (input.kind == InputKind::CustomObject) {
      return fmt::format("input '{}' is a custom object, which torch would unpickle", input.name);
    }
  }
  return {};
}

}  // namespace torch2mlx
