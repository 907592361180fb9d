// The analyzer's graph rules (see analyzer.h). The rules are tables: which namespaces are
// torch's own, what each kind of mutation means, which ops read a quantizable weight.
#include "torch2mlx/analyzer.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>

#include "torch2mlx/op_mapping.h"

namespace torch2mlx {

namespace {

// Op namespaces that belong to torch itself: an op there that the registry lacks is an
// unsupported op, anywhere else it is a custom kernel (torch.ops.<ns>.*, registered by a
// C++/CUDA extension or torch.library).
constexpr std::array<std::string_view, 7> kTorchNamespaces{
    "aten", "prims", "_operator", "builtins", "math", "torch", "higher_order"};

struct StatusText {
  OpStatus status;
  std::string_view name;
  std::string_view kind;  // the Finding kind
  std::string_view fix;
};

constexpr std::array<StatusText, 3> kStatuses{{
    {OpStatus::Translated, "translated", "", ""},
    {OpStatus::Unsupported, "unsupported", "unsupported_op",
     "rewrite this line with ops torch2mlx translates (docs/ops.md lists them), or add the op "
     "to the registry (cpp/src/ops/)"},
    {OpStatus::CustomKernel, "custom_kernel", "custom_kernel",
     "a custom kernel has no MLX counterpart: give it a pure-torch fallback the export can "
     "trace (torch.library register_fake is not enough), or write it as an MLX op"},
}};

const StatusText& status_text(OpStatus status) {
  return kStatuses.at(static_cast<std::size_t>(status));
}

// What each kind of graph output that writes into caller-visible state means.
struct MutationRule {
  OutputKind kind;
  std::string_view what;  // the mutated thing, for the message
  std::string_view fix;
};

constexpr std::array<MutationRule, 3> kMutations{{
    {OutputKind::BufferMutation, "buffer",
     "return the new value from forward (and pass it back in on the next call) instead of "
     "writing it into the buffer: an MLX model's arrays are immutable, so the converted "
     "model computes the update but does not keep it"},
    {OutputKind::UserInputMutation, "input",
     "return the result instead of writing into the input tensor (x.add_(...), x[i] = v on "
     "an input): the caller's MLX array cannot be changed in place"},
    {OutputKind::ParameterMutation, "parameter",
     "do not update parameters in forward (call model.eval() and move the update into the "
     "training loop): the converted model's weights are fixed"},
}};

// Ops whose outputs are views of their first input (in torch's training IR, which keeps
// in-place ops): writing into an output writes into the input. By op name, any overload.
constexpr std::array<std::string_view, 27> kViewOps{
    "alias",     "as_strided", "chunk",       "detach",           "diagonal", "expand",
    "expand_as", "flatten",    "movedim",     "narrow",           "permute",  "reshape",
    "select",    "slice",      "split",       "split_with_sizes", "squeeze",  "swapaxes",
    "t",         "transpose",  "unbind",      "unflatten",        "unfold",   "unsqueeze",
    "view",      "view_as",    "_unsafe_view"};

// What an in-place write into each kind of graph input means (other values are temporaries).
struct InPlaceRule {
  InputKind kind;
  OutputKind mutation;  // the kind of mutation a functionalized graph would list
};

constexpr std::array<InPlaceRule, 3> kInPlaceTargets{{
    {InputKind::Buffer, OutputKind::BufferMutation},
    {InputKind::UserInput, OutputKind::UserInputMutation},
    {InputKind::Parameter, OutputKind::ParameterMutation},
}};

// Ops whose input `argument` is a weight that mlx.nn.quantize would quantize: the layers it
// quantizes (Linear, Embedding) lower to these.
struct QuantizedWeightRule {
  std::string_view target;
  std::string_view argument;
};

constexpr std::array<QuantizedWeightRule, 2> kQuantizedWeights{{
    {"aten.linear.default", "weight"},
    {"aten.embedding.default", "weight"},
}};

constexpr std::array<std::string_view, 3> kFloatDtypes{"float32", "float16", "bfloat16"};

std::string_view op_namespace(std::string_view target) {
  return target.substr(0, target.find('.'));
}

OpStatus classify(std::string_view target) {
  if (find_op(target) != nullptr) return OpStatus::Translated;
  const std::string_view space = op_namespace(target);
  const bool torch_own =
      std::find(kTorchNamespaces.begin(), kTorchNamespaces.end(), space) != kTorchNamespaces.end();
  return torch_own ? OpStatus::Unsupported : OpStatus::CustomKernel;
}

std::string reason_for(std::string_view target, OpStatus status) {
  if (status == OpStatus::Translated) return "";
  if (status == OpStatus::CustomKernel) {
    return fmt::format(
        "'{}' is a custom op (namespace '{}'), not an ATen op: its kernel is "
        "C++/CUDA code MLX cannot run",
        target, op_namespace(target));
  }
  const std::string_view refused = unsupported_reason(target);
  return refused.empty() ? "no MLX translation is registered for this op" : std::string(refused);
}

void place_node(Finding& finding, const Node& node) {
  finding.node = node.name;
  if (!node.module_stack.empty()) {
    finding.module_path = node.module_stack.back().path;
    finding.module_type = node.module_stack.back().type;
  }
  finding.source = user_frame(node.stack_trace);
}

// "relu_" and "default" for "aten.relu_.default".
std::pair<std::string_view, std::string_view> op_and_overload(std::string_view target) {
  const std::size_t first = target.find('.');
  if (first == std::string_view::npos) return {target, ""};
  const std::size_t second = target.find('.', first + 1);
  if (second == std::string_view::npos) return {target.substr(first + 1), ""};
  return {target.substr(first + 1, second - first - 1), target.substr(second + 1)};
}

// The input an in-place (relu_, copy_, index_put_) or out= overload writes into, or nullptr.
const Arg* written_input(const Node& node) {
  const auto [name, overload] = op_and_overload(node.target);
  if (overload == "out" || overload.ends_with("_out")) return node.input("out");
  if (name.size() < 2 || !name.ends_with('_') || name.starts_with("__")) return nullptr;
  for (const NamedArg& input : node.inputs) {
    if (input.arg.kind == ArgKind::Tensor && !input.arg.names.empty()) return &input.arg;
  }
  return nullptr;
}

void op_rules(const ExportedProgram& program, GraphReport& report) {
  std::map<std::string, std::size_t, std::less<>> seen;  // target -> index in report.ops
  for (const Node& node : program.nodes) {
    ++report.nodes;
    auto [where, fresh] = seen.try_emplace(node.target, report.ops.size());
    if (fresh) {
      const OpStatus status = classify(node.target);
      report.ops.push_back({node.target, status, 0, reason_for(node.target, status)});
    }
    OpUse& use = report.ops[where->second];
    ++use.count;
    if (use.status == OpStatus::Translated) {
      ++report.translated_nodes;
      continue;
    }
    const StatusText& text = status_text(use.status);
    Finding finding;
    finding.kind = std::string(text.kind);
    finding.target = node.target;
    place_node(finding, node);
    finding.message = use.reason;
    finding.fix = std::string(text.fix);
    report.findings.push_back(std::move(finding));
  }
}

// The node that produced each value, to place a mutation at the line that computed it.
std::map<std::string, const Node*, std::less<>> producers(const ExportedProgram& program) {
  std::map<std::string, const Node*, std::less<>> result;
  for (const Node& node : program.nodes) {
    for (const Arg& output : node.outputs) {
      for (const std::string& name : output.names) {
        if (!name.empty()) result.emplace(name, &node);
      }
    }
  }
  return result;
}

Finding mutation_finding(OutputKind kind, const std::string& target, const Node* node) {
  const auto* rule = std::find_if(kMutations.begin(), kMutations.end(),
                                  [&](const MutationRule& r) { return r.kind == kind; });
  Finding finding;
  finding.kind = "aliasing_mutation";
  finding.target = target;
  if (node != nullptr) place_node(finding, *node);
  finding.message = fmt::format(
      "forward writes into {} '{}' in place, and the caller sees the write (the "
      "{} aliases memory outside the call)",
      rule->what, target, rule->what);
  finding.fix = std::string(rule->fix);
  return finding;
}

// In-place ops, as torch's training IR keeps them: a write into a graph input (through any
// chain of views) aliases; a write into a temporary is harmless.
void in_place_rules(const ExportedProgram& program, GraphReport& report,
                    std::set<std::string, std::less<>>& flagged) {
  std::map<std::string, const InputSpec*, std::less<>> root;  // value -> the input it views
  for (const InputSpec& input : program.inputs) root.emplace(input.name, &input);
  const auto root_of = [&](const Arg* arg) -> const InputSpec* {
    if (arg == nullptr || arg->names.empty()) return nullptr;
    const auto found = root.find(arg->names[0]);
    return found == root.end() ? nullptr : found->second;
  };
  for (const Node& node : program.nodes) {
    const Arg* written = written_input(node);
    const Arg* first = nullptr;
    for (const NamedArg& input : node.inputs) {
      if (input.arg.kind == ArgKind::Tensor && !input.arg.names.empty()) {
        first = &input.arg;
        break;
      }
    }
    const bool is_view = std::find(kViewOps.begin(), kViewOps.end(),
                                   op_and_overload(node.target).first) != kViewOps.end();
    const InputSpec* source = root_of(written != nullptr ? written : (is_view ? first : nullptr));
    if (source != nullptr) {
      for (const Arg& output : node.outputs) {
        for (const std::string& name : output.names) {
          if (!name.empty()) root.emplace(name, source);
        }
      }
    }
    if (written == nullptr) continue;
    const auto* rule = std::find_if(
        kInPlaceTargets.begin(), kInPlaceTargets.end(),
        [&](const InPlaceRule& r) { return source != nullptr && r.kind == source->kind; });
    if (rule == kInPlaceTargets.end()) {
      HarmlessMutation harmless;
      harmless.node = node.name;
      harmless.target = node.target;
      harmless.source = user_frame(node.stack_trace);
      report.harmless.push_back(std::move(harmless));
      continue;
    }
    const std::string& target = source->target.empty() ? source->name : source->target;
    if (!flagged.insert(target).second) continue;  // once per buffer / input
    report.findings.push_back(mutation_finding(rule->mutation, target, &node));
  }
}

void mutation_rules(const ExportedProgram& program, GraphReport& report) {
  std::set<std::string, std::less<>> flagged;
  in_place_rules(program, report, flagged);
  const auto produced_by = producers(program);
  for (const OutputSpec& output : program.outputs) {
    const bool mutates = std::any_of(kMutations.begin(), kMutations.end(),
                                     [&](const MutationRule& r) { return r.kind == output.kind; });
    if (!mutates || !flagged.insert(output.target).second) continue;
    const std::string value = output.value.names.empty() ? "" : output.value.names[0];
    const auto found = produced_by.find(value);
    report.findings.push_back(mutation_finding(
        output.kind, output.target, found == produced_by.end() ? nullptr : found->second));
  }
  for (const InputSpec& input : program.inputs) {
    if (input.kind != InputKind::CustomObject) continue;
    Finding finding;
    finding.kind = "custom_object";
    finding.target = input.target;
    finding.message = fmt::format(
        "input '{}' is a custom object (a TorchBind class), whose methods are C++ code MLX "
        "cannot run",
        input.target);
    finding.fix = "keep the object's state in tensors and its logic in torch ops";
    report.findings.push_back(std::move(finding));
  }
}

void quantize_rules(const ExportedProgram& program, GraphReport& report) {
  std::map<std::string, std::string, std::less<>> parameters;  // value name -> target
  for (const InputSpec& input : program.inputs) {
    if (input.kind == InputKind::Parameter) parameters.emplace(input.name, input.target);
  }
  std::set<std::string, std::less<>> listed;
  for (const Node& node : program.nodes) {
    const auto* rule =
        std::find_if(kQuantizedWeights.begin(), kQuantizedWeights.end(),
                     [&](const QuantizedWeightRule& r) { return r.target == node.target; });
    if (rule == kQuantizedWeights.end()) continue;
    const Arg* weight = node.input(rule->argument);
    if (weight == nullptr || weight->kind != ArgKind::Tensor || weight->names.empty()) continue;
    const auto parameter = parameters.find(weight->names[0]);
    const auto meta = program.tensors.find(weight->names[0]);
    if (parameter == parameters.end() || meta == program.tensors.end()) continue;
    const TensorMeta& type = meta->second;
    const bool is_float =
        std::find(kFloatDtypes.begin(), kFloatDtypes.end(), type.dtype) != kFloatDtypes.end();
    if (!is_float || type.shape.size() != 2 || !type.shape[1].symbol.empty() ||
        type.shape[1].hint % report.quantize_group_size != 0) {
      continue;
    }
    if (!listed.insert(parameter->second).second) continue;
    report.quantizable.push_back(
        {parameter->second, node.target, {type.shape[0].hint, type.shape[1].hint}});
  }
}

}  // namespace

std::string_view op_status_name(OpStatus status) { return status_text(status).name; }

GraphReport analyze_graph(const ExportedProgram& program, std::int64_t group_size) {
  GraphReport report;
  report.quantize_group_size = group_size;
  op_rules(program, report);
  mutation_rules(program, report);
  quantize_rules(program, report);
  return report;
}

}  // namespace torch2mlx
