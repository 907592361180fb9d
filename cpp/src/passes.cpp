#include "torch2mlx/passes.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <bit>
#include <exception>
#include <map>
#include <set>
#include <string>
#include <utility>

#include "pass_util.h"
#include "torch2mlx/error.h"
#include "torch2mlx/python_text.h"

namespace torch2mlx {

namespace pass_util {

void replace_uses(ExportedProgram& program, std::size_t node_index, const std::string& from,
                  const std::string& to) {
  const auto rename = [&](Arg& arg) { std::replace(arg.names.begin(), arg.names.end(), from, to); };
  for (std::size_t index = node_index + 1; index < program.nodes.size(); ++index) {
    for (NamedArg& input : program.nodes[index].inputs) rename(input.arg);
  }
  for (OutputSpec& output : program.outputs) rename(output.value);
}

std::size_t remove_nodes(ExportedProgram& program, const std::vector<bool>& remove) {
  std::size_t index = 0;
  const std::size_t before = program.nodes.size();
  std::erase_if(program.nodes, [&](const Node&) { return remove[index++]; });
  return before - program.nodes.size();
}

const TensorMeta* meta_of(const ExportedProgram& program, const std::string& value) {
  const auto found = program.tensors.find(value);
  return found == program.tensors.end() ? nullptr : &found->second;
}

const TensorMeta* meta_of(const ExportedProgram& program, const Arg* arg) {
  if (arg == nullptr || arg->kind != ArgKind::Tensor || arg->names.empty()) return nullptr;
  return meta_of(program, arg->names[0]);
}

bool same_dims(const std::vector<Dim>& a, const std::vector<Dim>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const Dim& x, const Dim& y) {
    return x.hint == y.hint && x.symbol == y.symbol;
  });
}

std::vector<std::string> output_names(const Node& node) {
  std::vector<std::string> names;
  for (const Arg& output : node.outputs) {
    for (const std::string& name : output.names) {
      if (!name.empty()) names.push_back(name);
    }
  }
  return names;
}

std::string tensor_input(const Node& node, std::string_view name) {
  const Arg* arg = node.input(name);
  return arg != nullptr && arg->kind == ArgKind::Tensor && !arg->names.empty() ? arg->names[0]
                                                                               : std::string();
}

std::optional<double> literal_number(const Node& node, std::string_view name) {
  const Arg* arg = node.input(name);
  if (arg == nullptr || (!arg->names.empty() && !arg->names[0].empty())) return std::nullopt;
  if (arg->kind == ArgKind::Float && arg->floats.size() == 1) return arg->floats[0];
  if ((arg->kind == ArgKind::Int || arg->kind == ArgKind::Bool) && arg->ints.size() == 1) {
    return static_cast<double>(arg->ints[0]);
  }
  return std::nullopt;
}

std::optional<std::int64_t> literal_int(const Node& node, std::string_view name) {
  const Arg* arg = node.input(name);
  if (arg == nullptr || (!arg->names.empty() && !arg->names[0].empty())) return std::nullopt;
  if ((arg->kind == ArgKind::Int || arg->kind == ArgKind::Bool) && arg->ints.size() == 1) {
    return arg->ints[0];
  }
  return std::nullopt;
}

std::optional<std::vector<std::int64_t>> literal_ints(const Node& node, std::string_view name) {
  const Arg* arg = node.input(name);
  if (arg == nullptr || (arg->kind != ArgKind::IntList && arg->kind != ArgKind::Int)) {
    return std::nullopt;
  }
  for (const std::string& symbol : arg->names) {
    if (!symbol.empty()) return std::nullopt;
  }
  return arg->ints;
}

DefUse::DefUse(const ExportedProgram& program) : program_(program) {
  for (std::size_t index = 0; index < program.nodes.size(); ++index) {
    const Node& node = program.nodes[index];
    for (const std::string& name : output_names(node)) producer_[name] = index;
    for (const NamedArg& input : node.inputs) {
      for (const std::string& name : input.arg.names) {
        if (name.empty()) continue;
        auto& list = readers_[name];
        if (list.empty() || list.back() != index) list.push_back(index);
      }
    }
  }
  for (const OutputSpec& output : program.outputs) {
    for (const std::string& name : output.value.names) ++graph_outputs_[name];
  }
}

const Node* DefUse::producer(const std::string& value) const {
  const auto found = producer_.find(value);
  return found == producer_.end() ? nullptr : &program_.nodes[found->second];
}

std::vector<const Node*> DefUse::readers(const std::string& value) const {
  std::vector<const Node*> nodes;
  const auto found = readers_.find(value);
  if (found == readers_.end()) return nodes;
  for (const std::size_t index : found->second) nodes.push_back(&program_.nodes[index]);
  return nodes;
}

bool DefUse::read_once(const std::string& value) const {
  const auto found = readers_.find(value);
  return found != readers_.end() && found->second.size() == 1 && !graph_outputs_.contains(value);
}

bool DefUse::is_graph_output(const std::string& value) const {
  return graph_outputs_.contains(value);
}

}  // namespace pass_util

namespace {

using pass_util::meta_of;
using pass_util::output_names;
using pass_util::remove_nodes;
using pass_util::replace_uses;
using pass_util::same_dims;

// --- No-ops.

// The output equals the input: same dtype and same shape (so no broadcast either).
bool same_value_type(const Node& node, const ExportedProgram& program, std::string_view input) {
  const TensorMeta* in = meta_of(program, node.input(input));
  const TensorMeta* out = node.outputs.size() == 1 ? meta_of(program, &node.outputs[0]) : nullptr;
  return in != nullptr && out != nullptr && in->dtype == out->dtype &&
         same_dims(in->shape, out->shape);
}

// A literal argument (not a tensor, not a symbol) equal to `value`.
bool literal_is(const Node& node, std::string_view name, double value) {
  const Arg* arg = node.input(name);
  if (arg == nullptr) return false;
  if (!arg->names.empty() && !arg->names[0].empty()) return false;  // symbolic
  if (arg->kind == ArgKind::Float && arg->floats.size() == 1) return arg->floats[0] == value;
  if (arg->kind == ArgKind::Int && arg->ints.size() == 1) {
    return static_cast<double>(arg->ints[0]) == value;
  }
  return false;
}

bool absent_or(const Node& node, std::string_view name, double value) {
  return node.input(name) == nullptr || literal_is(node, name, value);
}

// What makes a node of each target a no-op, beyond its output having its input's dtype and
// shape; and the input it passes through.
struct NoopRule {
  std::string_view target;
  std::string_view input;
  bool (*holds)(const Node& node);
};

bool always(const Node& /*node*/) { return true; }
bool adds_zero(const Node& node) {
  return literal_is(node, "other", 0.0) && absent_or(node, "alpha", 1.0);
}
bool multiplies_by_one(const Node& node) { return literal_is(node, "other", 1.0); }
bool starts_at_zero(const Node& node) { return absent_or(node, "start", 0.0); }
bool not_training(const Node& node) {
  const Arg* train = node.input("train");
  return train != nullptr && train->kind == ArgKind::Bool && train->ints.size() == 1 &&
         train->ints[0] == 0 && (train->names.empty() || train->names[0].empty());
}

constexpr NoopRule kNoopRules[] = {
    {"aten.alias.default", "self", always},
    {"aten.detach.default", "self", always},
    {"aten.clone.default", "self", always},
    {"aten.contiguous.default", "self", always},
    {"aten.lift_fresh_copy.default", "self", always},
    {"aten.view.default", "self", always},
    {"aten.reshape.default", "self", always},
    {"aten._unsafe_view.default", "self", always},
    {"aten.expand.default", "self", always},
    {"aten.slice.Tensor", "self", starts_at_zero},
    {"aten._to_copy.default", "self", always},
    {"aten.to.dtype", "self", always},
    {"aten.to.dtype_layout", "self", always},
    {"aten.to.device", "self", always},
    {"aten.type_as.default", "self", always},
    {"aten.add.Tensor", "self", adds_zero},
    {"aten.add.Scalar", "self", adds_zero},
    {"aten.sub.Tensor", "self", adds_zero},
    {"aten.sub.Scalar", "self", adds_zero},
    {"aten.mul.Tensor", "self", multiplies_by_one},
    {"aten.mul.Scalar", "self", multiplies_by_one},
    {"aten.div.Tensor", "self", multiplies_by_one},
    {"aten.div.Scalar", "self", multiplies_by_one},
    {"aten.dropout.default", "input", not_training},
};

// --- Common subexpressions.

// Ops whose every call gives a new value: never merged.
bool is_random(std::string_view target) {
  constexpr std::string_view kRandom[] = {"rand",    "normal",      "bernoulli",  "uniform",
                                          "dropout", "multinomial", "poisson",    "exponential",
                                          "cauchy",  "geometric",   "log_normal", "empty"};
  return std::any_of(std::begin(kRandom), std::end(kRandom),
                     [&](std::string_view word) { return target.find(word) != target.npos; });
}

// Everything that decides what a node computes, as one string: its op, its arguments and
// the module call it belongs to (merging across module calls would move code between the
// generated classes).
std::string node_key(const Node& node) {
  std::string key = node.target;
  for (const ModuleFrame& frame : node.module_stack) key += fmt::format("|{}", frame.key);
  for (const NamedArg& input : node.inputs) {
    const Arg& arg = input.arg;
    std::vector<std::uint64_t> float_bits;
    for (const double value : arg.floats) float_bits.push_back(std::bit_cast<std::uint64_t>(value));
    key += fmt::format("|{}={}:{}:{}:{}:{}", input.name, static_cast<int>(arg.kind),
                       fmt::join(arg.names, ","), fmt::join(arg.ints, ","),
                       fmt::join(float_bits, ","), fmt::join(arg.strings, "\x1f"));
  }
  return key;
}

// --- Printing.

std::string arg_text(const Arg& arg) {
  const auto value = [&](std::size_t index, const std::string& literal) {
    return index < arg.names.size() && !arg.names[index].empty() ? "%" + arg.names[index] : literal;
  };
  std::vector<std::string> items;
  switch (arg.kind) {
    case ArgKind::None:
      return "None";
    case ArgKind::Tensor:
    case ArgKind::TensorList:
      for (const std::string& name : arg.names) items.push_back(name.empty() ? "None" : "%" + name);
      return arg.kind == ArgKind::Tensor && items.size() == 1
                 ? items[0]
                 : fmt::format("[{}]", fmt::join(items, ", "));
    case ArgKind::Int:
    case ArgKind::Bool:
      return value(0, arg.ints.empty() ? "?" : fmt::format("{}", arg.ints[0]));
    case ArgKind::IntList:
    case ArgKind::BoolList:
      for (std::size_t i = 0; i < arg.ints.size(); ++i)
        items.push_back(value(i, fmt::format("{}", arg.ints[i])));
      return fmt::format("[{}]", fmt::join(items, ", "));
    case ArgKind::Float:
      return value(0, arg.floats.empty() ? "?" : fmt::format("{}", arg.floats[0]));
    case ArgKind::FloatList:
      return fmt::format("[{}]", fmt::join(arg.floats, ", "));
    case ArgKind::String:
    case ArgKind::StringList:
    case ArgKind::ScalarType:
    case ArgKind::Device:
      for (const std::string& text : arg.strings) items.push_back(python_comment(text, 60));
      return fmt::format("'{}'", fmt::join(items, "', '"));
    default:
      return fmt::format("<{}>", arg.strings.empty() ? "?" : python_comment(arg.strings[0], 40));
  }
}

std::string type_text(const ExportedProgram& program, const std::string& name) {
  const auto found = program.tensors.find(name);
  if (found == program.tensors.end()) return "";
  std::vector<std::string> dims;
  for (const Dim& dim : found->second.shape) {
    dims.push_back(dim.symbol.empty() ? fmt::format("{}", dim.hint) : dim.symbol);
  }
  return fmt::format(" : {}[{}]", found->second.dtype, fmt::join(dims, ", "));
}

constexpr std::string_view kInputKindNames[] = {"user input", "parameter", "buffer",
                                                "constant",   "token",     "custom object"};
constexpr std::string_view kOutputKindNames[] = {
    "user output",        "buffer mutation", "user input mutation",
    "parameter mutation", "token",           "other"};

}  // namespace

// torch's concatenation skips 1-D inputs with no elements whatever the axis (a legacy rule
// that caches starting from `torch.tensor([])` rely on); MLX would refuse their rank. Drops
// them from a cat that has other inputs, and returns how many it dropped.
constexpr std::string_view kConcatTargets[] = {"aten.cat.default", "aten.concat.default"};

bool is_legacy_empty(const ExportedProgram& program, const std::string& value) {
  const TensorMeta* info = meta_of(program, value);
  return info != nullptr && info->shape.size() == 1 && info->shape[0].symbol.empty() &&
         info->shape[0].hint == 0;
}

std::size_t drop_legacy_empty_inputs(Node& node, const ExportedProgram& program) {
  if (std::find(std::begin(kConcatTargets), std::end(kConcatTargets), node.target) ==
      std::end(kConcatTargets)) {
    return 0;
  }
  Arg* list = node.inputs.empty() ? nullptr : &node.inputs[0].arg;
  if (list == nullptr || list->kind != ArgKind::TensorList) return 0;
  std::vector<std::string> kept;
  for (const std::string& name : list->names) {
    if (name.empty() || !is_legacy_empty(program, name)) kept.push_back(name);
  }
  const std::size_t dropped = list->names.size() - kept.size();
  if (dropped == 0 || kept.empty()) return 0;
  list->names = std::move(kept);
  return dropped;
}

// A concatenation of one tensor is that tensor.
bool is_single_concat(const Node& node) {
  return std::find(std::begin(kConcatTargets), std::end(kConcatTargets), node.target) !=
             std::end(kConcatTargets) &&
         !node.inputs.empty() && node.inputs[0].arg.kind == ArgKind::TensorList &&
         node.inputs[0].arg.names.size() == 1 && !node.inputs[0].arg.names[0].empty() &&
         node.outputs.size() == 1;
}

bool same_list_type(const Node& node, const ExportedProgram& program) {
  const TensorMeta* in = meta_of(program, node.inputs[0].arg.names[0]);
  const TensorMeta* out = meta_of(program, &node.outputs[0]);
  return in != nullptr && out != nullptr && in->dtype == out->dtype &&
         same_dims(in->shape, out->shape);
}

// Checks that the tracer recorded about dtypes and devices: they held when the program was
// exported, and they constrain nothing in MLX.
constexpr std::string_view kMetadataChecks[] = {"aten._assert_tensor_metadata.default"};

std::size_t eliminate_noops(ExportedProgram& program) {
  std::vector<bool> remove(program.nodes.size(), false);
  std::size_t changed = 0;
  for (std::size_t index = 0; index < program.nodes.size(); ++index) {
    changed += drop_legacy_empty_inputs(program.nodes[index], program);
    const Node& node = program.nodes[index];
    if (is_single_concat(node) && same_list_type(node, program)) {
      replace_uses(program, index, node.outputs[0].names[0], node.inputs[0].arg.names[0]);
      remove[index] = true;
      continue;
    }
    if (std::find(std::begin(kMetadataChecks), std::end(kMetadataChecks), node.target) !=
        std::end(kMetadataChecks)) {
      remove[index] = true;
      continue;
    }
    for (const NoopRule& rule : kNoopRules) {
      if (node.target != rule.target || !rule.holds(node) ||
          !same_value_type(node, program, rule.input)) {
        continue;
      }
      replace_uses(program, index, node.outputs[0].names[0], node.input(rule.input)->names[0]);
      remove[index] = true;
      break;
    }
  }
  return changed + remove_nodes(program, remove);
}

std::size_t eliminate_dead_code(ExportedProgram& program) {
  std::set<std::string> live;
  for (const OutputSpec& output : program.outputs) {
    for (const std::string& name : output.value.names) live.insert(name);
  }
  std::vector<bool> remove(program.nodes.size(), false);
  for (std::size_t index = program.nodes.size(); index-- > 0;) {
    const Node& node = program.nodes[index];
    const std::vector<std::string> outputs = output_names(node);
    // A node without outputs is there for its effect (the tracer's asserts): kept.
    const bool used =
        outputs.empty() || std::any_of(outputs.begin(), outputs.end(),
                                       [&](const auto& n) { return live.contains(n); });
    if (!used) {
      remove[index] = true;
      continue;
    }
    for (const NamedArg& input : node.inputs) {
      for (const std::string& name : input.arg.names) {
        if (!name.empty()) live.insert(name);
      }
    }
  }
  return remove_nodes(program, remove);
}

std::size_t eliminate_common_subexpressions(ExportedProgram& program) {
  std::map<std::string, std::size_t> first;  // node key -> index of its first node
  std::vector<bool> remove(program.nodes.size(), false);
  for (std::size_t index = 0; index < program.nodes.size(); ++index) {
    const Node& node = program.nodes[index];
    if (is_random(node.target) || node.outputs.empty()) continue;
    const auto [found, inserted] = first.emplace(node_key(node), index);
    if (inserted) continue;
    const std::vector<std::string> earlier = output_names(program.nodes[found->second]);
    const std::vector<std::string> later = output_names(node);
    if (earlier.size() != later.size()) continue;
    for (std::size_t i = 0; i < later.size(); ++i)
      replace_uses(program, index, later[i], earlier[i]);
    remove[index] = true;
  }
  return remove_nodes(program, remove);
}

namespace {

// The module call a node belongs to: its innermost frame, "" at the top level.
std::string call_key(const Node& node) {
  return node.module_stack.empty() ? std::string() : node.module_stack.back().key;
}

bool is_size_arithmetic(const Node& node) {
  return node.target.starts_with("_operator.") && node.outputs.size() == 1 &&
         output_names(node).size() == 1;
}

// Renames reads of `from` to `to` in the inputs of `node`.
void rename_input(Node& node, const std::string& from, const std::string& to) {
  for (NamedArg& input : node.inputs) {
    for (std::string& name : input.arg.names) {
      if (name == from) name = to;
    }
  }
}

bool reads(const Node& node, const std::string& value) {
  return std::any_of(node.inputs.begin(), node.inputs.end(), [&](const NamedArg& input) {
    return std::find(input.arg.names.begin(), input.arg.names.end(), value) !=
           input.arg.names.end();
  });
}

}  // namespace

std::size_t rematerialize_sizes(ExportedProgram& program) {
  std::set<std::string> taken;
  for (const Node& node : program.nodes) {
    for (const std::string& name : output_names(node)) taken.insert(name);
  }
  for (const InputSpec& input : program.inputs) taken.insert(input.name);
  std::size_t changed = 0;
  // Last to first, so that a size computed from another size is copied first and then
  // counts as a reader of that one in its new module call.
  for (std::size_t index = program.nodes.size(); index-- > 0;) {
    if (!is_size_arithmetic(program.nodes[index])) continue;
    const std::string value = output_names(program.nodes[index])[0];
    const std::string home = call_key(program.nodes[index]);
    std::map<std::string, std::string> copies;  // module call -> the copy's value
    std::vector<std::pair<std::size_t, Node>> inserts;
    for (std::size_t user = index + 1; user < program.nodes.size(); ++user) {
      Node& reader = program.nodes[user];
      const std::string call = call_key(reader);
      if (call == home || !reads(reader, value)) continue;
      auto copy = copies.find(call);
      if (copy == copies.end()) {
        Node clone = program.nodes[index];
        // "add_5" -> "add_6": the code generator names locals after the stem ("add").
        std::string stem = value;
        const std::size_t underscore = stem.rfind('_');
        if (underscore != std::string::npos && underscore + 1 < stem.size() &&
            stem.find_first_not_of("0123456789", underscore + 1) == std::string::npos) {
          stem.erase(underscore);
        }
        std::string name = stem;
        for (int count = 1; taken.contains(name); ++count) name = fmt::format("{}_{}", stem, count);
        taken.insert(name);
        clone.name = name;
        clone.outputs[0].names[0] = name;
        clone.module_stack = reader.module_stack;
        copy = copies.emplace(call, name).first;
        inserts.emplace_back(user, std::move(clone));
      }
      rename_input(reader, value, copy->second);
      ++changed;
    }
    // Each copy goes just before the first node of its module call that reads it.
    for (std::size_t k = inserts.size(); k-- > 0;) {
      program.nodes.insert(program.nodes.begin() + static_cast<std::ptrdiff_t>(inserts[k].first),
                           std::move(inserts[k].second));
    }
  }
  return changed;
}

const std::vector<Pass>& default_passes() {
  static const std::vector<Pass> kPasses = {
      {"noops", eliminate_noops},
      {"cse", eliminate_common_subexpressions},
      // Before fuse-rms-norm, which would take a layer norm's centred values for its input.
      {"fuse-layer-norm", fuse_layer_norm},
      {"fuse-rms-norm", fuse_rms_norm},
      {"fuse-rope", fuse_rope},
      {"fuse-activations", fuse_activations},
      {"fuse-gqa", fuse_grouped_query_attention},
      // After the fusions, which match ranges and tables by how they are computed.
      {"fold-constants", fold_constants},
      {"rematerialize-sizes", rematerialize_sizes},
      {"dead-code", eliminate_dead_code},
  };
  return kPasses;
}

std::string print_ir(const ExportedProgram& program) {
  std::string text;
  for (const InputSpec& input : program.inputs) {
    const auto kind = kInputKindNames[static_cast<std::size_t>(input.kind)];
    text += fmt::format("input  %{}{}  ({}{}{})\n", input.name, type_text(program, input.name),
                        kind, input.target.empty() ? "" : " ", input.target);
  }
  for (const Node& node : program.nodes) {
    std::vector<std::string> outputs;
    for (const Arg& output : node.outputs) outputs.push_back(arg_text(output));
    std::vector<std::string> inputs;
    for (const NamedArg& input : node.inputs) {
      inputs.push_back(fmt::format("{}={}", input.name, arg_text(input.arg)));
    }
    const std::string type = node.outputs.size() == 1 && node.outputs[0].kind == ArgKind::Tensor
                                 ? type_text(program, node.outputs[0].names[0])
                                 : "";
    std::string where;
    if (!node.module_stack.empty()) {
      where =
          fmt::format("  # {} ({})", node.module_stack.back().path, node.module_stack.back().type);
    }
    if (const std::string line = user_source_line(node.stack_trace); !line.empty())
      where += (where.empty() ? "  # " : " at ") + line;
    text += fmt::format("{} = {}({}){}{}\n", fmt::join(outputs, ", "), node.target,
                        fmt::join(inputs, ", "), type, python_comment(where, 200));
  }
  for (const OutputSpec& output : program.outputs) {
    const auto kind = kOutputKindNames[static_cast<std::size_t>(output.kind)];
    text += fmt::format("output {}  ({}{}{})\n", arg_text(output.value), kind,
                        output.target.empty() ? "" : " ", output.target);
  }
  return text;
}

void run_passes(ExportedProgram& program, const std::vector<Pass>& passes,
                std::string_view dump_after, const std::function<void(const std::string&)>& dump) {
  const bool known = dump_after.empty() || dump_after == "input" ||
                     std::any_of(passes.begin(), passes.end(),
                                 [&](const Pass& pass) { return pass.name == dump_after; });
  if (!known) {
    std::vector<std::string_view> names{"input"};
    for (const Pass& pass : passes) names.push_back(pass.name);
    fail("passes", fmt::format("there is no pass '{}' to dump the IR after; the passes are: {}",
                               python_comment(dump_after, 60), fmt::join(names, ", ")));
  }
  if (dump_after == "input" && dump) dump(print_ir(program));
  for (const Pass& pass : passes) {
    try {
      pass.run(program);
    } catch (const Error&) {
      throw;
    } catch (const std::exception& error) {
      // A bug of ours (a missing map entry, an index out of range) must not reach the user
      // as a bare "map::at": name the pass and how to get around it meanwhile.
      fail("passes", fmt::format("internal error ({}) in pass '{}'; this is a torch2mlx bug: "
                                 "please report it with the model (torch2mlx convert "
                                 "--dump-ir input prints the graph the passes were given)",
                                 error.what(), pass.name));
    }
    if (pass.name == dump_after && dump) dump(print_ir(program));
  }
}

}  // namespace torch2mlx
