// The code generator: ExportedProgram -> model.py. See codegen.h for the steps.
//
// Vocabulary used below:
//   value   a graph value name (a tensor, or a symbolic int such as a dynamic batch size);
//   perm    the order a tensor's axes are stored in (ops/call.h); empty is torch's order;
//   region  the nodes of one module call, with the calls nested inside it;
//   method  a region that becomes the __call__ of a generated class; other regions are
//           inlined into their parent (Sequential containers, modules called from outside
//           their owner, or a second call whose code differs from the first).
#include "torch2mlx/codegen.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <utility>

#include "ops/call.h"
#include "torch2mlx/code_rewrites.h"
#include "torch2mlx/error.h"
#include "torch2mlx/model_args.h"
#include "torch2mlx/op_mapping.h"
#include "torch2mlx/passes.h"
#include "torch2mlx/python_ast.h"
#include "torch2mlx/python_text.h"

namespace torch2mlx {

namespace {

// ---------------------------------------------------------------------------------------
// Small utilities.

bool is_identity(const Perm& perm) {
  for (std::size_t axis = 0; axis < perm.size(); ++axis) {
    if (perm[axis] != static_cast<int>(axis)) return false;
  }
  return true;
}

Perm normal(const Perm& perm) { return is_identity(perm) ? Perm{} : perm; }

/// Channels-last order for a tensor of `rank`: (0, 2, ..., rank-1, 1).
Perm channels_last(std::size_t rank) {
  if (rank < 3) return {};
  Perm perm{0};
  for (std::size_t axis = 2; axis < rank; ++axis) perm.push_back(static_cast<int>(axis));
  perm.push_back(1);
  return perm;
}

/// The axes argument of the transpose that turns storage order `from` into `to`.
std::vector<std::int64_t> transpose_axes(const Perm& from, const Perm& to, std::size_t rank) {
  Perm source = from;
  Perm target = to;
  if (source.empty()) source.resize(rank), std::iota(source.begin(), source.end(), 0);
  if (target.empty()) target.resize(rank), std::iota(target.begin(), target.end(), 0);
  std::vector<std::int64_t> axes;
  for (const int logical : target) {
    axes.push_back(std::find(source.begin(), source.end(), logical) - source.begin());
  }
  return axes;
}

std::string layout_suffix(const Perm& perm, std::size_t rank) {
  static constexpr std::array<std::string_view, 6> kLast = {"", "", "", "nlc", "nhwc", "ndhwc"};
  static constexpr std::array<std::string_view, 6> kFirst = {"", "", "", "ncl", "nchw", "ncdhw"};
  if (rank < kLast.size() && perm == channels_last(rank) && !perm.empty())
    return std::string(kLast[rank]);
  if (rank < kFirst.size() && perm.empty() && rank >= 3) return std::string(kFirst[rank]);
  return "t";
}

// The local name of a value moved to another axis order: "x_nhwc" / "x_nchw" across the
// channels-last boundary; a deferred permute ("transpose") keeps the name torch gave it.
std::string converted_name(const std::string& value, const Perm& from, const Perm& to,
                           std::size_t rank);

// The local name of a method parameter moved to another axis order: the parameter's name
// and the order it moves to ("x_nchw", "x_t").
std::string parameter_converted_name(const std::string& parameter, const Perm& to,
                                     std::size_t rank) {
  return parameter + "_" + layout_suffix(to, rank);
}

// A name model.py cannot give a local, attribute or class: a Python keyword, or a name the
// generated code itself uses.
bool is_reserved(std::string_view name) {
  constexpr std::array<std::string_view, 4> kUsedByTheCode = {"self", "mx", "nn", "math"};
  return is_python_keyword(name) ||
         std::find(kUsedByTheCode.begin(), kUsedByTheCode.end(), name) != kUsedByTheCode.end();
}

/// An attribute name MLX keeps as a parameter: an identifier not starting with "_".
std::string attribute_name(std::string_view segment) {
  std::string name(segment);
  for (char& c : name) {
    if (std::isalnum(static_cast<unsigned char>(c)) == 0 && c != '_') c = '_';
  }
  if (name.empty() || name[0] == '_' || std::isdigit(static_cast<unsigned char>(name[0])) != 0 ||
      is_reserved(name)) {
    name = "p" + (name.empty() || name[0] != '_' ? "_" + name : name);
  }
  return name;
}

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  if (path.empty()) return parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t dot = path.find('.', start);
    parts.emplace_back(path.substr(start, dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts;
}

bool is_index(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) != 0;
  });
}

std::string base_name(const std::string& value) {
  // "conv2d_3" -> "conv2d", "relu_" -> "relu": local names in a method do not depend on
  // the instance, nor on whether torch ran the op in place.
  std::string name = value;
  while (name.size() > 1 && name.back() == '_') name.pop_back();
  const std::size_t underscore = name.rfind('_');
  if (underscore != std::string::npos && underscore + 1 < name.size() &&
      is_index(std::string_view(name).substr(underscore + 1))) {
    name.erase(underscore);
    while (name.size() > 1 && name.back() == '_') name.pop_back();
  }
  // Ops whose names make locals too long to read: the name mlx-lm gives their result.
  static const std::map<std::string, std::string, std::less<>> kShortNames{
      {"scaled_dot_product_attention", "attn"},
  };
  if (const auto shorter = kShortNames.find(name); shorter != kShortNames.end()) {
    name = shorter->second;
  }
  // A keyword or a name the code uses gets a trailing underscore, as PEP 8 has it (`and_`).
  if (is_value_name(name) && is_reserved(name)) return name + "_";
  if (!is_value_name(name)) name = "v_" + attribute_name(name);
  return name;
}

std::string short_type(std::string_view type) {
  const std::size_t dot = type.rfind('.');
  std::string name(dot == std::string_view::npos ? type : type.substr(dot + 1));
  for (char& c : name) {
    if (std::isalnum(static_cast<unsigned char>(c)) == 0) c = '_';
  }
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0])) != 0) name = "M" + name;
  // A class named "None" or "mx" would not parse, or would hide the module the code uses.
  if (!is_python_identifier(name) || is_reserved(name)) name += "_";
  return name;
}

// All value names an argument mentions (tensors and symbolic sizes).
void collect_names(const Arg& arg, std::vector<std::string>& names) {
  for (const std::string& name : arg.names) {
    if (!name.empty()) names.push_back(name);
  }
}

std::vector<std::string> output_names(const Node& node) {
  std::vector<std::string> names;
  for (const Arg& output : node.outputs) {
    if (output.kind == ArgKind::Tensor || output.kind == ArgKind::TensorList ||
        output.kind == ArgKind::Int || output.kind == ArgKind::Float ||
        output.kind == ArgKind::Bool) {
      for (const std::string& name : output.names) names.push_back(name);
    } else {
      names.emplace_back();
    }
  }
  return names;
}

std::vector<std::string> tensor_inputs(const Node& node) {
  std::vector<std::string> names;
  for (const NamedArg& input : node.inputs) {
    if (input.arg.kind == ArgKind::Tensor || input.arg.kind == ArgKind::TensorList) {
      collect_names(input.arg, names);
    }
  }
  return names;
}

std::string converted_name(const std::string& value, const Perm& from, const Perm& to,
                           std::size_t rank) {
  const bool across =
      (!to.empty() && to == channels_last(rank)) || (!from.empty() && from == channels_last(rank));
  return across ? base_name(value) + "_" + layout_suffix(to, rank) : base_name(value);
}

// The activation a layer-like op consumes: its first input, except for embedding lookups.
const Arg* data_input(const Node& node) {
  if (node.target == "aten.embedding.default") return node.input("indices");
  return node.inputs.empty() ? nullptr : &node.inputs[0].arg;
}

// ---------------------------------------------------------------------------------------
// Generator state.

struct Region {
  std::string key;
  std::string path;
  std::string type;
  Region* parent = nullptr;
  struct Item {
    int node = -1;
    Region* child = nullptr;
  };
  std::vector<Item> items;
  int first = 0;  // node index range [first, last]
  int last = -1;
  bool inline_into_parent = false;
  bool is_leaf_layer = false;
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  // Dynamic sizes the method reads off the shape of one of its tensor inputs instead of
  // taking them as arguments, as a hand-written model does (`batch = x.shape[0]`).
  struct SizeOf {
    std::string value;   // the symbolic int, e.g. "sym_size_int"
    std::string tensor;  // an input of the region with that size
    std::size_t axis;    // in torch's order
  };
  std::vector<SizeOf> sizes;
};

// A module of the MLX tree: where parameters live and what class it is.
struct ModuleNode {
  std::string path;
  std::string type;                   // torch type when known
  std::vector<std::string> children;  // child segment names, in first-seen order
  std::vector<std::pair<std::string, std::string>> params;  // attribute, source weight
  bool is_list = false;
  std::optional<py::Expr> leaf_constructor;  // set when an mlx.nn layer stands for it
  std::optional<py::Stmt> method;            // __call__ of its class, when a region became one
  std::string method_text;                   // the method as printed, to compare calls by
  std::string class_name;
  py::Expr constructor;  // how the parent builds it, e.g. `BasicBlock(in_channels=16)`
};

struct Method {
  std::vector<py::Stmt> lines;
  std::map<std::string, py::Expr> local;  // value -> its local (or a self.x expression)
  std::set<std::string> taken;
  std::map<std::pair<std::string, Perm>, py::Expr> converted;
  // value -> the parameter it arrives as: what the method calls it, whatever the caller did.
  std::map<std::string, std::string> parameters;
  std::string last_source_line;  // the source-line comment most recently written
  // Lines that define a dynamic size, written where the size is first read: a method whose
  // children read their sizes themselves does not compute them (reference()).
  std::map<std::string, py::Stmt> deferred;
};

// A model input that torch.export flattened out of a list, tuple or dict argument: the
// argument's parameter name and the subscripts that reach the input (`[0]`, `["mask"]`).
struct ContainerLeaf {
  std::string parameter;
  std::vector<py::Expr> access;
};

// What model.py computes for an input the caller leaves out (CodegenOptions::input_defaults).
struct InputDefault {
  std::string fill;                                // "ones", "zeros" or "arange"
  py::Expr dtype;                                  // `mx.int64`
  std::string like;                                // the required input whose sizes it takes ...
  std::vector<std::optional<std::int64_t>> sizes;  // ... where a size is not fixed (nullopt)
};

class Generator {
 public:
  Generator(const ExportedProgram& program, std::map<std::string, OptionalInput> input_defaults)
      : program_(program), wanted_defaults_(std::move(input_defaults)) {
    state_.program = &program;
  }

  /// The model; with `model_args`, its classes read their sizes from ModelArgs wherever
  /// `probe_classes` (the classes generated from each probe) show how.
  GeneratedModel run(const ModelArgsSpec& model_args = {},
                     const std::vector<std::vector<py::Stmt>>& probe_classes = {});
  /// The node being translated, as errors name it: "node 'x' (op) in path (type) at line".
  [[nodiscard]] std::string current_node() const;

 private:
  void index_inputs();
  void decide_defaults();
  [[nodiscard]] py::Expr default_value(const InputDefault& spec, const Method& scope) const;
  void drop_dead_uses();
  void name_from_source();
  void name_sizes();
  [[nodiscard]] std::vector<ModuleBoundary> boundaries() const;
  [[nodiscard]] std::string mlx_path(const std::string& path) const;
  [[nodiscard]] std::string source_name(const std::string& value) const;
  void plan_layouts();
  void build_regions();
  void build_module_tree();
  void decide_leaf_layers(Region& region);
  void compute_signature(Region& region);
  py::Stmt emit_method(Region& region, const std::string& method_path);
  py::Expr literal_of(const Arg& value);
  void emit_items(Region& region, const std::string& method_path, Method& method);
  void emit_node(int index, const std::string& method_path, Method& method);
  py::Expr reference(const std::string& value, const std::string& method_path, Method& method);
  void convert_inputs(int index, const std::string& method_path, Method& method);
  bool needed(const std::string& path) const;
  void decide_structure(Region& region, const std::string& method_path);
  py::Stmt emit_root();
  std::string local_name(Method& method, const std::string& value, std::string hint = {});
  [[nodiscard]] py::Expr module_access(const std::string& path,
                                       const std::string& method_path) const;
  bool accessible(const std::string& target, const std::string& method_path) const;
  py::Expr output_expression(const nlohmann::json& spec, std::size_t& next,
                             const std::vector<py::Expr>& values) const;
  std::map<std::string, ContainerLeaf> container_leaves() const;
  std::vector<py::Stmt> make_classes();
  std::string assemble(std::vector<py::Stmt> classes, bool generic);
  void ensure_module(const std::string& path);
  std::vector<py::Stmt> class_body(ModuleNode& module);
  [[nodiscard]] std::vector<py::Expr> list_items(const ModuleNode& list) const;

  const ExportedProgram& program_;
  EmitState state_;
  std::map<std::string, Perm> perms_;               // value -> storage order
  std::vector<std::map<std::string, Perm>> needs_;  // per node: input -> perm
  std::map<std::string, std::vector<int>> uses_;    // value -> node indices
  std::set<std::string> graph_outputs_;
  std::map<std::string, std::string> source_names_;  // value -> the name its line assigns
  std::map<std::string, std::string> size_symbols_;  // sym_size output -> its symbol
  std::vector<std::string> user_inputs_;
  std::map<std::string, OptionalInput> wanted_defaults_;  // what the caller asked for
  std::map<std::string, InputDefault> defaults_;          // the inputs model.py makes optional
  std::map<std::string, std::string> weight_attribute_;   // weight source -> MLX key
  std::vector<std::unique_ptr<Region>> regions_;
  Region* root_ = nullptr;
  std::map<std::string, ModuleNode> modules_;
  std::vector<std::string> module_order_;
  std::vector<std::string> errors_;
  std::vector<std::string> notes_;
  std::set<int> relabel_;       // nodes whose output is their input in another axis order
  bool root_layers_ = false;    // the model is an nn.Sequential: children live in self.layers
  int current_ = -1;            // the node being planned or emitted, for internal errors
  std::size_t transposes_ = 0;  // counted by assemble()
  // Where each class came from (a torch type and the modules it serves), for its comment.
  struct Origin {
    std::string type, first_path;
    std::size_t members = 0;
  };
  std::map<std::string, Origin> class_origin_;  // by class name; the root class has none
  std::set<std::string> direct_weights_;        // MLX keys of the weights reference() reads
};

// ---------------------------------------------------------------------------------------
// Inputs and weights.

void Generator::index_inputs() {
  for (const InputSpec& input : program_.inputs) {
    if (input.kind == InputKind::UserInput) {
      if (!input.name.empty() && !input.constant) user_inputs_.push_back(input.name);
    } else if (input.kind == InputKind::Parameter || input.kind == InputKind::Buffer ||
               input.kind == InputKind::Constant) {
      state_.params.emplace(input.name, input.target);
    } else if (input.kind == InputKind::CustomObject) {
      errors_.push_back(
          fmt::format("input '{}' is a custom object (a TorchBind class), which "
                      "MLX cannot run",
                      input.target));
    }
  }
  for (std::size_t index = 0; index < program_.nodes.size(); ++index) {
    const Node& node = program_.nodes[index];
    for (const NamedArg& input : node.inputs) {
      std::vector<std::string> names;
      collect_names(input.arg, names);
      for (const std::string& name : names) uses_[name].push_back(static_cast<int>(index));
    }
  }
  for (const OutputSpec& output : program_.outputs) {
    if (output.kind == OutputKind::UserOutput) {
      for (const std::string& name : output.value.names) {
        if (!name.empty()) graph_outputs_.insert(name);
      }
    } else if (output.kind == OutputKind::BufferMutation) {
      notes_.push_back(
          fmt::format("the model updates buffer '{}' in place; the MLX model "
                      "computes the update but does not keep it",
                      output.target));
    } else if (output.kind == OutputKind::UserInputMutation) {
      notes_.push_back(
          fmt::format("the model writes into its input '{}'; the MLX model does "
                      "not (MLX arrays are immutable)",
                      output.target));
    }
  }
}

// ---------------------------------------------------------------------------------------
// Step 1: layouts.

void Generator::plan_layouts() {
  const auto rank_of = [&](const std::string& name) -> std::size_t {
    const auto found = program_.tensors.find(name);
    return found == program_.tensors.end() ? 0 : found->second.shape.size();
  };
  const auto perm_of = [&](const std::string& name) -> Perm {
    const auto found = perms_.find(name);
    return found == perms_.end() ? Perm{} : found->second;
  };
  const auto single_element = [&](const std::string& name) {
    const auto found = program_.tensors.find(name);
    if (found == program_.tensors.end()) return false;
    return std::all_of(found->second.shape.begin(), found->second.shape.end(),
                       [](const Dim& dim) { return dim.symbol.empty() && dim.hint == 1; });
  };
  needs_.resize(program_.nodes.size());
  for (std::size_t index = 0; index < program_.nodes.size(); ++index) {
    current_ = static_cast<int>(index);
    const Node& node = program_.nodes[index];
    const OpEntry* entry = find_op(node.target);
    if (entry == nullptr) {
      const std::string_view reason = unsupported_reason(node.target);
      errors_.push_back(fmt::format(
          "{}: {}", describe_node(node),
          reason.empty() ? "no MLX translation is registered for this op" : std::string(reason)));
      continue;
    }
    const std::vector<std::string> inputs = tensor_inputs(node);
    const std::vector<std::string> outputs = output_names(node);
    std::map<std::string, Perm> need;
    std::vector<Perm> out(outputs.size());
    const std::string first = inputs.empty() ? std::string() : inputs[0];
    switch (entry->layout) {
      case LayoutRule::Standard:
        for (const std::string& name : inputs) need[name] = {};
        break;
      case LayoutRule::Elementwise: {
        std::size_t rank = 0;
        Perm target;
        for (const std::string& name : inputs) rank = std::max(rank, rank_of(name));
        for (const std::string& name : inputs) {
          if (rank_of(name) == rank && !perm_of(name).empty()) {
            target = perm_of(name);
            break;
          }
        }
        // A broadcast operand, or a weight (used as stored, never transposed), pins the
        // torch order: `patches.transpose(1, 2) + self.position_embeddings`.
        for (const std::string& name : inputs) {
          const bool pinned = rank_of(name) < rank || state_.params.contains(name);
          if (!target.empty() && pinned && !single_element(name)) target.clear();
        }
        for (const std::string& name : inputs) {
          if (rank_of(name) == rank) {
            need[name] = target;
          } else if (!single_element(name)) {
            need[name] = {};
          }
        }
        for (std::size_t output = 0; output < outputs.size(); ++output) {
          if (rank_of(outputs[output]) == rank) out[output] = target;
        }
        break;
      }
      case LayoutRule::Axis: {
        const Perm perm = first.empty() ? Perm{} : perm_of(first);
        const std::size_t rank = rank_of(first);
        for (const std::string& name : inputs) {
          need[name] = rank_of(name) == rank ? perm : Perm{};
        }
        for (std::size_t output = 0; output < outputs.size(); ++output) {
          if (rank_of(outputs[output]) == rank && program_.tensors.contains(outputs[output])) {
            out[output] = perm;
          }
        }
        break;
      }
      case LayoutRule::Reduce: {
        const Perm perm = first.empty() ? Perm{} : perm_of(first);
        const std::size_t rank = rank_of(first);
        for (const std::string& name : inputs) need[name] = name == first ? perm : Perm{};
        const Arg* dim = node.input("dim");
        const bool keep = node.input("keepdim") != nullptr &&
                          !node.input("keepdim")->ints.empty() &&
                          node.input("keepdim")->ints[0] != 0;
        Perm result;
        if (dim != nullptr && !dim->ints.empty() && !perm.empty()) {
          if (keep) {
            result = perm;
          } else {
            std::set<int> reduced;
            for (const std::int64_t axis : dim->ints) {
              reduced.insert(
                  static_cast<int>(axis < 0 ? axis + static_cast<std::int64_t>(rank) : axis));
            }
            for (const int logical : perm) {
              if (reduced.contains(logical)) continue;
              result.push_back(logical - static_cast<int>(std::count_if(
                                             reduced.begin(), reduced.end(),
                                             [&](int axis) { return axis < logical; })));
            }
          }
        }
        for (std::size_t output = 0; output < outputs.size(); ++output)
          out[output] = normal(result);
        break;
      }
      case LayoutRule::Relabel: {
        // permute(dims) of a tensor stored in order p is the same bytes stored in order q,
        // q[i] = position of p[i] in dims: the transpose is deferred to whoever needs it.
        const std::size_t rank = rank_of(first);
        std::vector<std::int64_t> dims(rank);
        std::iota(dims.begin(), dims.end(), 0);
        const Arg* order = node.input("dims");
        const Arg* dim0 = node.input("dim0");
        const Arg* dim1 = node.input("dim1");
        const auto wrap = [&](std::int64_t axis) {
          return axis < 0 ? axis + static_cast<std::int64_t>(rank) : axis;
        };
        if (order != nullptr) {
          for (std::size_t axis = 0; axis < rank && axis < order->ints.size(); ++axis) {
            dims[axis] = wrap(order->ints[axis]);
          }
        } else if (dim0 != nullptr && dim1 != nullptr && !dim0->ints.empty() &&
                   !dim1->ints.empty() && rank >= 2) {
          std::swap(dims[static_cast<std::size_t>(wrap(dim0->ints[0]))],
                    dims[static_cast<std::size_t>(wrap(dim1->ints[0]))]);
        } else if (rank == 2) {
          std::swap(dims[0], dims[1]);  // t()
        }
        Perm stored = perm_of(first);
        if (stored.empty())
          stored.assign(dims.begin(), dims.end()), std::iota(stored.begin(), stored.end(), 0);
        Perm result;
        for (const int logical : stored) {
          result.push_back(
              static_cast<int>(std::find(dims.begin(), dims.end(), logical) - dims.begin()));
        }
        if (!outputs.empty()) out[0] = normal(result);
        relabel_.insert(static_cast<int>(index));
        break;
      }
      case LayoutRule::ChannelsLast: {
        for (const std::string& name : inputs) need[name] = {};
        if (!first.empty()) need[first] = channels_last(rank_of(first));
        for (std::size_t output = 0; output < outputs.size(); ++output) {
          if (program_.tensors.contains(outputs[output])) {
            out[output] = channels_last(rank_of(outputs[output]));
          }
        }
        break;
      }
    }
    // Parameters are never transposed at run time for the layout: they are used as stored.
    for (auto it = need.begin(); it != need.end();) {
      it = state_.params.contains(it->first) ? need.erase(it) : std::next(it);
    }
    needs_[index] = need;
    // Dry run of the emitter: records weight layouts and reports argument errors early.
    state_.perms.clear();
    for (const auto& [name, perm] : need) state_.perms[name] = perm;
    try {
      Call call(node, state_);
      (void)entry->emit(call);
    } catch (const Error& error) {
      errors_.emplace_back(std::string(error.what()).substr(10));  // drop "[codegen] "
    }
    for (std::size_t output = 0; output < outputs.size(); ++output) {
      if (!outputs[output].empty() && !out[output].empty()) perms_[outputs[output]] = out[output];
    }
  }
  state_.helpers.clear();
}

// ---------------------------------------------------------------------------------------
// Step 2: regions.

void Generator::build_regions() {
  regions_.push_back(std::make_unique<Region>());
  root_ = regions_.back().get();
  root_->first = 0;
  root_->last = static_cast<int>(program_.nodes.size()) - 1;
  std::vector<Region*> open{root_};
  for (std::size_t index = 0; index < program_.nodes.size(); ++index) {
    const Node& node = program_.nodes[index];
    std::vector<const ModuleFrame*> frames;
    for (const ModuleFrame& frame : node.module_stack) {
      if (frame.key.find("_empty_nn_module_stack") == std::string::npos) frames.push_back(&frame);
    }
    std::size_t common = 0;
    while (common < frames.size() && common + 1 < open.size() &&
           open[common + 1]->key == frames[common]->key) {
      ++common;
    }
    open.resize(common + 1);
    for (std::size_t depth = common; depth < frames.size(); ++depth) {
      regions_.push_back(std::make_unique<Region>());
      Region* region = regions_.back().get();
      region->key = frames[depth]->key;
      region->path = frames[depth]->path;
      region->type = frames[depth]->type;
      region->parent = open.back();
      region->first = static_cast<int>(index);
      open.back()->items.push_back({-1, region});
      open.push_back(region);
    }
    open.back()->items.push_back({static_cast<int>(index), nullptr});
    for (Region* region : open) region->last = static_cast<int>(index);
  }
}

void Generator::ensure_module(const std::string& path) {
  if (modules_.contains(path)) return;
  if (!path.empty()) {
    const std::size_t dot = path.rfind('.');
    const std::string parent = dot == std::string::npos ? std::string() : path.substr(0, dot);
    ensure_module(parent);
    modules_[parent].children.push_back(dot == std::string::npos ? path : path.substr(dot + 1));
  }
  modules_[path].path = path;
  module_order_.push_back(path);
}

void Generator::build_module_tree() {
  ensure_module("");
  for (const auto& region : regions_) {
    if (region.get() == root_) continue;
    ensure_module(region->path);
    if (modules_[region->path].type.empty()) modules_[region->path].type = region->type;
  }
  // Weights that some node reads; unused ones (num_batches_tracked, ...) are left out.
  for (const InputSpec& input : program_.inputs) {
    if (!state_.params.contains(input.name) || !uses_.contains(input.name)) continue;
    const std::size_t dot = input.target.rfind('.');
    const std::string owner =
        dot == std::string::npos ? std::string() : input.target.substr(0, dot);
    ensure_module(owner);
    const std::string leaf = dot == std::string::npos ? input.target : input.target.substr(dot + 1);
    modules_[owner].params.emplace_back(attribute_name(leaf), input.target);
  }
  for (auto& [path, module] : modules_) {
    module.is_list = !module.children.empty() && module.params.empty() &&
                     std::all_of(module.children.begin(), module.children.end(), is_index);
  }
  // MLX keys: the torch path with list indices kept and odd names made attributes.
  // A model that is itself an nn.Sequential keeps its children in a list, as mlx.nn does:
  // "0.weight" becomes "layers.0.weight".
  ModuleNode& root = modules_.at("");
  root_layers_ = root.is_list;
  root.is_list = false;
  // An index stays an index only inside a list (as module_access writes it); a child named
  // "0" of an ordinary module is an attribute, in the code and in the weights alike.
  for (auto& [path, module] : modules_) {
    for (const auto& [attribute, source] : module.params) {
      std::string key = root_layers_ ? "layers." : "";
      std::string parent;
      for (const std::string& segment : split_path(path)) {
        const auto found = modules_.find(parent);
        const bool in_list =
            parent.empty() ? root_layers_ : found != modules_.end() && found->second.is_list;
        key += (in_list ? segment : attribute_name(segment)) + ".";
        parent = parent.empty() ? segment : fmt::format("{}.{}", parent, segment);
      }
      weight_attribute_[source] = key + attribute;
    }
  }
}

bool Generator::accessible(const std::string& target, const std::string& method_path) const {
  return method_path.empty() || target.starts_with(method_path + ".");
}

py::Expr Generator::module_access(const std::string& path, const std::string& method_path) const {
  // "layers.0.conv" seen from "" -> self.layers[0].conv.
  py::Expr access = py::name("self");
  std::string current = method_path;
  if (path == method_path) return access;
  const std::string rest = method_path.empty() ? path : path.substr(method_path.size() + 1);
  for (const std::string& segment : split_path(rest)) {
    const auto parent = modules_.find(current);
    const bool list = parent != modules_.end() && parent->second.is_list;
    if (current.empty() && root_layers_) {
      access = access.attr("layers")[py::integer(std::stoll(segment))];
    } else {
      access =
          list ? access[py::integer(std::stoll(segment))] : access.attr(attribute_name(segment));
    }
    current = current.empty() ? segment : fmt::format("{}.{}", current, segment);
  }
  return access;
}

// ---------------------------------------------------------------------------------------
// Leaf layers: module calls that are one op an mlx.nn layer computes the same way.

py::Expr conv_constructor(const Node& node, const ExportedProgram& program, int dims,
                          bool transposed) {
  const Arg* weight = node.input("weight");
  const auto& shape = program.tensors.at(weight->names[0]).shape;
  // One int when every spatial axis has the same value, as mlx.nn takes it; else a tuple.
  const auto size = [](const std::vector<std::int64_t>& values) {
    const bool uniform =
        std::all_of(values.begin(), values.end(), [&](auto v) { return v == values[0]; });
    return uniform ? py::integer(values[0]) : py::ints(values);
  };
  const auto spatial = [&](const char* name, std::int64_t fallback) {
    const Arg* arg = node.input(name);
    std::vector<std::int64_t> values;
    if (arg != nullptr && arg->kind == ArgKind::IntList) values = arg->ints;
    if (values.empty()) values.assign(static_cast<std::size_t>(dims), fallback);
    if (values.size() == 1) values.assign(static_cast<std::size_t>(dims), values[0]);
    return size(values);
  };
  const Arg* groups_arg = node.input("groups");
  const std::int64_t groups =
      groups_arg != nullptr && !groups_arg->ints.empty() ? groups_arg->ints[0] : 1;
  std::vector<std::int64_t> kernel;
  for (std::size_t axis = 2; axis < shape.size(); ++axis) kernel.push_back(shape[axis].hint);
  const std::int64_t in = transposed ? shape[0].hint : shape[1].hint * groups;
  const std::int64_t out = transposed ? shape[1].hint : shape[0].hint;
  std::vector<py::Keyword> keywords{{"kernel_size", size(kernel)}};
  const auto is = [](const py::Expr& value, std::int64_t number) {
    return value.kind() == py::Expr::Kind::Int && value.integer() == number;
  };
  for (const auto& [name, fallback] : {std::pair{"stride", 1}, {"padding", 0}, {"dilation", 1}}) {
    const py::Expr value = spatial(name, fallback);
    if (!is(value, fallback)) keywords.push_back({name, value});
  }
  if (transposed && !is(spatial("output_padding", 0), 0)) {
    keywords.push_back({"output_padding", spatial("output_padding", 0)});
  }
  if (groups != 1) keywords.push_back({"groups", py::integer(groups)});
  const Arg* bias = node.input("bias");
  if (bias == nullptr || bias->kind == ArgKind::None)
    keywords.push_back({"bias", py::boolean(false)});
  const std::string layer = fmt::format("nn.{}{}d", transposed ? "ConvTranspose" : "Conv", dims);
  return py::call(layer, {py::integer(in), py::integer(out)}, std::move(keywords));
}

namespace {

// What a leaf-layer rule sees of the single node of a module's region.
struct LeafNode {
  const Node& node;
  const ExportedProgram& program;
  const std::map<std::string, std::string>& params;  // graph value -> state-dict target
  const std::string& path;                           // the module's path

  // The state-dict target a tensor argument reads: "" when absent, "?" when not a weight.
  [[nodiscard]] std::string param(const char* name) const {
    const Arg* arg = node.input(name);
    if (arg == nullptr || arg->kind != ArgKind::Tensor) return {};
    const auto found = params.find(arg->names[0]);
    return found == params.end() ? std::string("?") : found->second;
  }
  // Whether the argument is the module's own parameter `name` (or absent, if allowed).
  [[nodiscard]] bool owned(const char* name, bool required) const {
    const std::string target = param(name);
    if (target.empty()) return !required;
    return target == path + "." + name;
  }
  [[nodiscard]] const std::vector<Dim>& shape(const char* name) const {
    return program.tensors.at(node.input(name)->names[0]).shape;
  }
  [[nodiscard]] std::optional<double> number(const char* name) const {
    const Arg* arg = node.input(name);
    if (arg == nullptr || arg->floats.empty()) return std::nullopt;
    return arg->floats[0];
  }
  [[nodiscard]] std::int64_t integer(const char* name, std::int64_t fallback) const {
    const Arg* arg = node.input(name);
    return arg == nullptr || arg->ints.empty() ? fallback : arg->ints[0];
  }
};

using Layer = std::optional<py::Expr>;

// eps=... unless eps is mlx.nn's default, 1e-5.
std::vector<py::Keyword> eps_argument(const LeafNode& leaf) {
  const auto eps = leaf.number("eps");
  if (eps && *eps != 1e-5) return {{"eps", py::number(*eps)}};
  return {};
}

Layer linear_layer(const LeafNode& leaf) {
  if (!leaf.owned("weight", true) || !leaf.owned("bias", false)) return {};
  const auto& w = leaf.shape("weight");
  std::vector<py::Keyword> keywords;
  if (leaf.param("bias").empty()) keywords.push_back({"bias", py::boolean(false)});
  return py::call("nn.Linear", {py::integer(w[1].hint), py::integer(w[0].hint)},
                  std::move(keywords));
}

template <int Dims>
Layer conv_layer(const LeafNode& leaf) {
  if (!leaf.owned("weight", true) || !leaf.owned("bias", false)) return {};
  // mlx.nn.Conv3d takes no groups (mx.conv3d does): a grouped one stays the op.
  if (Dims == 3 && leaf.integer("groups", 1) != 1) return {};
  return conv_constructor(leaf.node, leaf.program, Dims, false);
}

template <int Dims>
Layer conv_transpose_layer(const LeafNode& leaf) {
  if (!leaf.owned("weight", true) || !leaf.owned("bias", false)) return {};
  if (leaf.integer("groups", 1) != 1) return {};
  // A dilated one keeps the functional form: fewer mlx.nn versions to match.
  const Arg* dilation = leaf.node.input("dilation");
  if (dilation != nullptr && !dilation->ints.empty()) return {};
  // mlx.nn's layer shortens the output when the padding is past the kernel: the op's helper.
  const Arg* weight = leaf.node.input("weight");
  if (transpose_padding_past_kernel(leaf.node, &leaf.program.tensors.at(weight->names[0]))) {
    return {};
  }
  return conv_constructor(leaf.node, leaf.program, Dims, true);
}

Layer layer_norm_layer(const LeafNode& leaf) {
  if (!leaf.owned("weight", false) || !leaf.owned("bias", false)) return {};
  const Arg* normalized = leaf.node.input("normalized_shape");
  if (normalized == nullptr || normalized->ints.size() != 1) return {};
  const bool weight = !leaf.param("weight").empty();
  const bool bias = !leaf.param("bias").empty();
  if (!weight && bias) return {};  // a bias without a weight: mlx.nn has no such norm
  // eps always, even mlx.nn's default: a config's epsilon reads as one argument at any
  // value (eps=args.layer_norm_eps), as in mlx-lm's models.
  std::vector<py::Keyword> keywords{{"eps", py::number(leaf.number("eps").value_or(1e-5))}};
  if (!weight) keywords.push_back({"affine", py::boolean(false)});
  if (weight && !bias) keywords.push_back({"bias", py::boolean(false)});
  return py::call("nn.LayerNorm", {py::integer(normalized->ints[0])}, std::move(keywords));
}

Layer embedding_layer(const LeafNode& leaf) {
  if (!leaf.owned("weight", true)) return {};
  const auto& w = leaf.shape("weight");
  return py::call("nn.Embedding", {py::integer(w[0].hint), py::integer(w[1].hint)});
}

Layer batch_norm_layer(const LeafNode& leaf) {
  for (const char* name : {"weight", "bias", "running_mean", "running_var"}) {
    if (!leaf.owned(name, true)) return {};
  }
  if (leaf.integer("training", 1) != 0) return {};
  return py::call("nn.BatchNorm", {py::integer(leaf.shape("weight")[0].hint)}, eps_argument(leaf));
}

// The torch modules an mlx.nn layer stands for in model.py, when the module's region is
// one call of `target` on the module's own parameters; `layer` builds the constructor, or
// nothing when this call does not fit the layer (then the op is written out).
struct LeafLayerRule {
  std::string_view type;  // the torch module type, a key of the layer registry (registry.h)
  std::string_view target;
  Layer (*layer)(const LeafNode& leaf);
};

constexpr LeafLayerRule kLeafLayers[] = {
    {"torch.nn.modules.linear.Linear", "aten.linear.default", linear_layer},
    {"torch.nn.modules.linear.NonDynamicallyQuantizableLinear", "aten.linear.default",
     linear_layer},
    {"torch.nn.modules.conv.Conv1d", "aten.conv1d.default", conv_layer<1>},
    {"torch.nn.modules.conv.Conv2d", "aten.conv2d.default", conv_layer<2>},
    {"torch.nn.modules.conv.Conv3d", "aten.conv3d.default", conv_layer<3>},
    {"torch.nn.modules.conv.ConvTranspose1d", "aten.conv_transpose1d.default",
     conv_transpose_layer<1>},
    {"torch.nn.modules.conv.ConvTranspose2d", "aten.conv_transpose2d.input",
     conv_transpose_layer<2>},
    {"torch.nn.modules.conv.ConvTranspose3d", "aten.conv_transpose3d.input",
     conv_transpose_layer<3>},
    {"torch.nn.modules.normalization.LayerNorm", "aten.layer_norm.default", layer_norm_layer},
    {"torch.nn.modules.sparse.Embedding", "aten.embedding.default", embedding_layer},
    // Not BatchNorm3d: mlx.nn.BatchNorm takes at most 4-D input, so video models' 5-D norms
    // are written out as the op (which any rank takes).
    {"torch.nn.modules.batchnorm.BatchNorm1d", "aten.batch_norm.default", batch_norm_layer},
    {"torch.nn.modules.batchnorm.BatchNorm2d", "aten.batch_norm.default", batch_norm_layer},
};

}  // namespace

void Generator::decide_leaf_layers(Region& region) {
  if (region.items.size() != 1 || region.items[0].child != nullptr) return;
  const Node& node = program_.nodes[static_cast<std::size_t>(region.items[0].node)];
  const Arg* input = data_input(node);
  if (input == nullptr || input->kind != ArgKind::Tensor ||
      state_.params.contains(input->names[0])) {
    return;
  }
  const auto* rule =
      std::find_if(std::begin(kLeafLayers), std::end(kLeafLayers), [&](const LeafLayerRule& row) {
        return row.type == region.type && row.target == node.target;
      });
  if (rule == std::end(kLeafLayers)) return;
  const Layer constructor = rule->layer(LeafNode{node, program_, state_.params, region.path});
  if (!constructor) return;
  ModuleNode& module = modules_[region.path];
  if (module.leaf_constructor && !module.leaf_constructor->same(*constructor)) return;
  module.leaf_constructor = constructor;
  region.is_leaf_layer = true;
}

// ---------------------------------------------------------------------------------------
// Step 3: emission.

void Generator::compute_signature(Region& region) {
  // Inputs: values read inside and defined outside (or weights it cannot reach as self.x);
  // outputs: values defined inside and read after the region, or returned by the model.
  const std::string method_path = region.path;
  std::vector<std::string> inputs;
  std::set<std::string> seen;
  for (int index = region.first; index <= region.last; ++index) {
    const Node& node = program_.nodes[static_cast<std::size_t>(index)];
    for (const NamedArg& input : node.inputs) {
      std::vector<std::string> names;
      collect_names(input.arg, names);
      for (const std::string& name : names) {
        if (seen.contains(name)) continue;
        seen.insert(name);
        const auto param = state_.params.find(name);
        if (param != state_.params.end() && accessible(param->second, method_path)) continue;
        bool defined_inside = false;
        for (int other = region.first; other <= region.last && !defined_inside; ++other) {
          for (const std::string& output :
               output_names(program_.nodes[static_cast<std::size_t>(other)])) {
            if (output == name) defined_inside = true;
          }
        }
        if (!defined_inside) inputs.push_back(name);
      }
    }
  }
  // A dynamic size that is also a dimension of a tensor input is read from that tensor.
  region.sizes.clear();
  std::erase_if(inputs, [&](const std::string& value) {
    const auto symbol = size_symbols_.find(value);
    if (symbol == size_symbols_.end()) return false;
    for (const std::string& tensor : inputs) {
      const auto meta = program_.tensors.find(tensor);
      if (meta == program_.tensors.end()) continue;
      const std::vector<Dim>& shape = meta->second.shape;
      for (std::size_t axis = 0; axis < shape.size(); ++axis) {
        if (shape[axis].symbol == symbol->second) {
          region.sizes.push_back({value, tensor, axis});
          return true;
        }
      }
    }
    return false;
  });
  std::vector<std::string> outputs;
  for (int index = region.first; index <= region.last; ++index) {
    for (const std::string& name : output_names(program_.nodes[static_cast<std::size_t>(index)])) {
      if (name.empty()) continue;
      bool escapes = graph_outputs_.contains(name);
      for (const int use : uses_[name])
        escapes = escapes || use < region.first || use > region.last;
      if (escapes) outputs.push_back(name);
    }
  }
  region.inputs = inputs;
  region.outputs = outputs;
}

std::string Generator::local_name(Method& method, const std::string& value, std::string hint) {
  if (hint.empty()) hint = base_name(value);
  // Helper functions are module-level names: a local of the same name would shadow them.
  if (helper_source(hint)) method.taken.insert(hint);
  std::string name = hint;
  for (int count = 1; method.taken.contains(name); ++count)
    name = fmt::format("{}_{}", hint, count);
  method.taken.insert(name);
  method.local[value] = py::name(name);
  return name;
}

py::Expr Generator::reference(const std::string& value, const std::string& method_path,
                              Method& method) {
  const auto deferred = method.deferred.find(value);
  if (deferred != method.deferred.end()) {
    method.lines.push_back(deferred->second);
    method.deferred.erase(deferred);
  }
  const auto local = method.local.find(value);
  if (local != method.local.end()) return local->second;
  const auto param = state_.params.find(value);
  if (param != state_.params.end() && accessible(param->second, method_path)) {
    const std::string& key = weight_attribute_.at(param->second);
    direct_weights_.insert(key);
    const std::size_t dot = key.rfind('.');
    const std::size_t source_dot = param->second.rfind('.');
    const std::string owner =
        source_dot == std::string::npos ? std::string() : param->second.substr(0, source_dot);
    return module_access(owner, method_path)
        .attr(dot == std::string::npos ? key : key.substr(dot + 1));
  }
  return py::name(value);
}

void Generator::convert_inputs(int index, const std::string& method_path, Method& method) {
  const Node& node = program_.nodes[static_cast<std::size_t>(index)];
  state_.rendered.clear();
  state_.perms.clear();
  std::vector<std::string> names;
  for (const NamedArg& input : node.inputs) collect_names(input.arg, names);
  for (const std::string& name : names) {
    state_.rendered.insert_or_assign(name, reference(name, method_path, method));
    const auto current = perms_.find(name);
    if (current != perms_.end()) state_.perms[name] = current->second;
  }
  // In the order of the arguments (not of the names), so that every call of one module
  // writes its conversions in the same order whatever torch numbered its values.
  const std::map<std::string, Perm>& needs = needs_[static_cast<std::size_t>(index)];
  std::vector<std::string> order = names;
  for (const auto& [name, perm] : needs) order.push_back(name);
  std::set<std::string> done;
  for (const std::string& name : order) {
    const auto need = needs.find(name);
    if (need == needs.end() || !done.insert(name).second) continue;
    const Perm& perm = need->second;
    const Perm current = perms_.contains(name) ? perms_.at(name) : Perm{};
    state_.perms[name] = perm;
    if (current == perm) continue;
    const auto cached = method.converted.find({name, perm});
    if (cached != method.converted.end()) {
      state_.rendered.insert_or_assign(name, cached->second);
      continue;
    }
    const std::size_t rank = program_.tensors.at(name).shape.size();
    // A parameter moved to another order is named after the parameter ("x_nchw"), not after
    // the caller's value, so that every call of one module type gives the same method.
    const auto parameter = method.parameters.find(name);
    const std::string hint = parameter == method.parameters.end()
                                 ? converted_name(name, current, perm, rank)
                                 : parameter_converted_name(parameter->second, perm, rank);
    const py::Expr converted =
        py::name(local_name(method, name + "#" + layout_suffix(perm, rank), hint));
    method.lines.push_back(py::assign(
        converted, py::call("mx.transpose", {reference(name, method_path, method),
                                             py::ints(transpose_axes(current, perm, rank))})));
    method.converted.insert_or_assign({name, perm}, converted);
    state_.rendered.insert_or_assign(name, converted);
  }
}

void Generator::emit_node(int index, const std::string& method_path, Method& method) {
  current_ = index;
  const Node& node = program_.nodes[static_cast<std::size_t>(index)];
  const OpEntry* entry = find_op(node.target);
  const std::vector<std::string> outputs = output_names(node);
  // Dead code: nothing reads any output (export leaves unused batch-norm statistics).
  const bool used = std::any_of(outputs.begin(), outputs.end(), [&](const std::string& name) {
    return !name.empty() && (uses_.contains(name) || graph_outputs_.contains(name));
  });
  if (!used || entry == nullptr) return;
  convert_inputs(index, method_path, method);
  if (relabel_.contains(index)) {
    // Same bytes, another axis order: the output is the input under a new name.
    const std::string& input = node.inputs[0].arg.names[0];
    method.local.insert_or_assign(outputs[0], reference(input, method_path, method));
    return;
  }
  Call call(node, state_);
  const py::Expr expression = entry->emit(call);
  if (expression.kind() == py::Expr::Kind::Omitted) return;
  std::vector<py::Expr> targets;
  for (const std::string& name : outputs) {
    const bool live = !name.empty() && (uses_.contains(name) || graph_outputs_.contains(name));
    targets.push_back(py::name(live ? local_name(method, name, source_name(name)) : "_"));
  }
  const bool list_output = node.outputs.size() == 1 && node.outputs[0].kind == ArgKind::TensorList;
  if (targets.size() == 1 && size_symbols_.contains(outputs[0])) {
    method.deferred.insert_or_assign(outputs[0], py::assign(targets[0], expression));
  } else if (targets.size() == 1 && list_output) {
    method.lines.push_back(py::unpack(targets[0], expression));
  } else {
    method.lines.push_back(py::assign(std::move(targets), expression));
  }
}

void Generator::emit_items(Region& region, const std::string& method_path, Method& method) {
  for (const Region::Item& item : region.items) {
    if (item.child == nullptr) {
      const Node& node = program_.nodes[static_cast<std::size_t>(item.node)];
      const std::string line = user_source_line(node.stack_trace);
      const std::size_t before = method.lines.size();
      emit_node(item.node, method_path, method);
      // Where the code came from, once per source line, for code that is not a plain layer.
      if (!line.empty() && line != method.last_source_line && method.lines.size() > before) {
        // (the printer cuts a long source line to fit 100 columns)
        method.lines.insert(method.lines.begin() + static_cast<std::ptrdiff_t>(before),
                            py::comment(line));
        method.last_source_line = line;
      }
      continue;
    }
    Region& child = *item.child;
    if (child.inline_into_parent) {
      emit_items(child, method_path, method);
      continue;
    }
    std::vector<py::Expr> arguments;
    if (child.is_leaf_layer) {
      // The layer's input moves to the order its op needs, here in the caller. Its weights
      // are rendered too, but read through the layer: not directly.
      const int index = child.items[0].node;
      const std::set<std::string> direct = direct_weights_;
      convert_inputs(index, method_path, method);
      direct_weights_ = direct;
      const Arg& input = *data_input(program_.nodes[static_cast<std::size_t>(index)]);
      arguments.push_back(state_.rendered.at(input.names[0]));
    } else {
      for (const std::string& input : child.inputs) {
        arguments.push_back(reference(input, method_path, method));
      }
    }
    std::vector<py::Expr> targets;
    for (const std::string& output : child.outputs) {
      targets.push_back(py::name(local_name(method, output, source_name(output))));
    }
    if (targets.empty()) continue;
    method.lines.push_back(
        py::assign(std::move(targets), module_access(child.path, method_path)(arguments)));
  }
}

py::Stmt Generator::emit_method(Region& region, const std::string& method_path) {
  Method method;
  std::vector<py::Param> parameters{{"self", {}}};
  // The first tensor input is "x" whatever the caller named it, so that two calls of one
  // module from different places produce the same class.
  bool first_tensor = true;
  for (const std::string& input : region.inputs) {
    std::string hint = base_name(input);
    if (first_tensor && program_.tensors.contains(input)) {
      hint = "x";
      first_tensor = false;
    }
    parameters.push_back({local_name(method, input, hint), {}});
    method.parameters[input] = parameters.back().name;
  }
  for (const Region::SizeOf& size : region.sizes) {
    // The axis as the tensor is stored (channels-last values keep channels at the end).
    const auto stored = perms_.find(size.tensor);
    std::size_t axis = size.axis;
    if (stored != perms_.end() && !stored->second.empty()) {
      const auto at =
          std::find(stored->second.begin(), stored->second.end(), static_cast<int>(size.axis));
      axis = static_cast<std::size_t>(at - stored->second.begin());
    }
    const py::Expr tensor = reference(size.tensor, method_path, method);
    const py::Expr name = py::name(local_name(method, size.value, source_name(size.value)));
    method.deferred.insert_or_assign(
        size.value,
        py::assign(name, tensor.attr("shape")[py::integer(static_cast<std::int64_t>(axis))]));
  }
  emit_items(region, method_path, method);
  std::vector<py::Expr> returned;
  for (const std::string& output : region.outputs) {
    returned.push_back(reference(output, method_path, method));
  }
  method.lines.push_back(py::return_(std::move(returned)));
  return py::function("__call__", std::move(parameters), std::move(method.lines));
}

namespace {

// The leaves below `spec` (a pytree spec), each with its subscripts and the suffix torch
// appends to the argument's name to name that input (`_0`, `_mask`).
using Subscripts = std::vector<py::Expr>;

void spec_leaves(const nlohmann::json& spec, const Subscripts& access, const std::string& suffix,
                 std::vector<std::pair<Subscripts, std::string>>& leaves) {
  if (!spec.is_object() || !spec.contains("type") || spec.at("type").is_null()) {
    leaves.emplace_back(access, suffix);
    return;
  }
  const auto& children = spec.at("children_spec");
  const bool keyed = spec.at("type").get<std::string>().find("dict") != std::string::npos;
  const nlohmann::json keys =
      keyed ? nlohmann::json::parse(spec.at("context").get<std::string>()) : nlohmann::json();
  for (std::size_t i = 0; i < children.size(); ++i) {
    Subscripts deeper = access;
    if (keyed) {
      const std::string key =
          keys.at(i).is_string() ? keys.at(i).get<std::string>() : keys.at(i).dump();
      deeper.push_back(py::string(key));
      spec_leaves(children[i], deeper, fmt::format("{}_{}", suffix, key), leaves);
    } else {
      deeper.push_back(py::integer(static_cast<std::int64_t>(i)));
      spec_leaves(children[i], deeper, fmt::format("{}_{}", suffix, i), leaves);
    }
  }
}

}  // namespace

// Inputs that come out of container arguments, from the program's input spec: each
// positional argument and keyword of (args, kwargs) whose spec is not a single leaf.
std::map<std::string, ContainerLeaf> Generator::container_leaves() const {
  std::map<std::string, ContainerLeaf> result;
  if (program_.in_spec.empty()) return result;
  std::vector<std::string> names;  // user inputs in the order of the spec's leaves
  for (const InputSpec& spec : program_.inputs) {
    if (spec.kind == InputKind::UserInput) names.push_back(spec.name);
  }
  try {
    const auto parsed = nlohmann::json::parse(program_.in_spec);
    const auto& root = parsed.is_array() && parsed.size() == 2 ? parsed[1] : parsed;
    const auto& halves = root.at("children_spec");                         // (args, kwargs)
    std::vector<std::pair<std::string, const nlohmann::json*>> arguments;  // keyword or ""
    for (const auto& argument : halves.at(0).at("children_spec"))
      arguments.emplace_back("", &argument);
    const auto keywords = nlohmann::json::parse(halves.at(1).at("context").get<std::string>());
    for (std::size_t i = 0; i < keywords.size(); ++i) {
      arguments.emplace_back(keywords.at(i).get<std::string>(),
                             &halves.at(1).at("children_spec").at(i));
    }
    std::size_t next = 0;
    for (const auto& [keyword, argument] : arguments) {
      std::vector<std::pair<Subscripts, std::string>> leaves;
      spec_leaves(*argument, {}, "", leaves);
      if (next + leaves.size() > names.size()) return {};
      const bool single = leaves.size() == 1 && leaves[0].first.empty();
      // The argument's own name: its keyword, else the first input's name less the suffix.
      std::string parameter = keyword;
      if (!single && parameter.empty() && !leaves.empty()) {
        const std::string& first = names[next];
        const std::string& suffix = leaves[0].second;
        parameter = first.ends_with(suffix) && first.size() > suffix.size()
                        ? first.substr(0, first.size() - suffix.size())
                        : fmt::format("argument_{}", result.size());
      }
      if (!is_python_identifier(parameter) || is_reserved(parameter))
        parameter = "v_" + attribute_name(parameter);
      for (const auto& [access, suffix] : leaves) {
        if (!single) result[names[next]] = {parameter, access};
        ++next;
      }
    }
  } catch (const nlohmann::json::exception&) {
    return {};  // an unusual spec: the inputs stay flat, as torch.export numbers them
  }
  return result;
}

py::Expr Generator::output_expression(const nlohmann::json& spec, std::size_t& next,
                                      const std::vector<py::Expr>& values) const {
  const auto leaf = [&]() { return next < values.size() ? values[next++] : py::none(); };
  if (!spec.is_object() || !spec.contains("type") || spec.at("type").is_null()) return leaf();
  const std::string type = spec.at("type").get<std::string>();
  std::vector<py::Expr> children;
  if (spec.contains("children_spec")) {
    for (const auto& child : spec.at("children_spec")) {
      children.push_back(output_expression(child, next, values));
    }
  }
  if (type == "builtins.tuple") return py::tuple(std::move(children));
  if (type == "builtins.list") return py::list(std::move(children));
  // Dicts, OrderedDicts, dataclasses and Hugging Face ModelOutputs: a dict by key.
  std::vector<std::string> keys;
  if (spec.contains("context") && spec.at("context").is_string()) {
    try {
      const auto context = nlohmann::json::parse(spec.at("context").get<std::string>());
      const auto& names =
          context.is_array() && context.size() == 2 && context[1].is_array() ? context[1] : context;
      if (names.is_array()) {
        for (const auto& name : names)
          keys.push_back(name.is_string() ? name.get<std::string>() : name.dump());
      }
    } catch (const nlohmann::json::exception&) {
    }
  }
  if (keys.size() != children.size()) return py::tuple(std::move(children));
  std::vector<std::pair<py::Expr, py::Expr>> entries;
  for (std::size_t index = 0; index < keys.size(); ++index) {
    entries.emplace_back(py::string(keys[index]), children[index]);
  }
  return py::dict(entries);
}

// The constructors of a list module's items (an nn.Sequential or nn.ModuleList), index by
// index. A gap, or a weight-free item whose code was inlined, holds an empty nn.Module(), so
// that indices, and with them the weight names, keep torch's numbering.
std::vector<py::Expr> Generator::list_items(const ModuleNode& list) const {
  std::vector<py::Expr> items;
  const py::Expr empty = py::call("nn.Module");
  for (const std::string& index : list.children) {
    while (items.size() < std::stoul(index)) items.push_back(empty);
    const std::string path = list.path.empty() ? index : list.path + "." + index;
    const ModuleNode& item = modules_.at(path);
    if (!needed(path)) {
      items.push_back(empty);
    } else if (item.is_list) {
      // A container inside a container (Sequential of Sequentials): a list in the list,
      // which MLX names "blocks.2.0.weight" just as torch does.
      items.push_back(py::list(list_items(item)));
    } else {
      items.push_back(item.leaf_constructor.value_or(item.constructor));
    }
  }
  return items;
}

std::vector<py::Stmt> Generator::class_body(ModuleNode& module) {
  const py::Expr self = py::name("self");
  std::vector<py::Stmt> init{py::expression(py::call("super").method("__init__"))};
  if (module.path.empty() && root_layers_ && !module.children.empty()) {
    init.push_back(py::assign(self.attr("layers"), py::list(list_items(module), true)));
  }
  for (const std::string& child : module.children) {
    if (module.path.empty() && root_layers_) break;  // all in self.layers, above
    const std::string path = module.path.empty() ? child : module.path + "." + child;
    if (!needed(path)) continue;  // weight-free modules whose code was inlined
    ModuleNode& node = modules_.at(path);
    py::Expr value;
    if (node.is_list) {
      std::vector<py::Expr> items = list_items(node);
      // A long list reads best one item per line.
      const bool long_list = py::print(py::list(items)).size() > 70;
      value = py::list(std::move(items), long_list);
    } else {
      value = node.leaf_constructor.value_or(node.constructor);
    }
    init.push_back(py::assign(self.attr(attribute_name(child)), value));
  }
  for (const auto& [attribute, source] : module.params) {
    const InputSpec* spec = nullptr;
    for (const InputSpec& input : program_.inputs) {
      if (input.target == source && state_.params.contains(input.name)) spec = &input;
    }
    const TensorMeta& meta = program_.tensors.at(spec->name);
    std::vector<std::int64_t> shape;
    for (const Dim& dim : meta.shape) shape.push_back(dim.hint);
    // As the weight converter stores it (MLX's convolution order, say): the registry's
    // description of each layout.
    const auto layout = state_.weight_layouts.find(source);
    if (layout != state_.weight_layouts.end()) {
      shape = transformed_shape(layout->second.first, shape, layout->second.second);
    }
    std::vector<py::Keyword> keywords;
    const auto dtype = mlx_dtype(meta.dtype);
    if (dtype && *dtype != "mx.float32") keywords.push_back({"dtype", py::dotted(*dtype)});
    init.push_back(
        py::assign(self.attr(attribute), py::call("mx.zeros", {py::ints(shape)}, keywords)));
  }
  if (module.path.empty()) {
    init.push_back(py::commented(py::expression(self.method("eval")),
                                 "inference: norms use running statistics, dropout is off"));
  }
  std::vector<py::Stmt> body{py::function("__init__", {{"self", {}}}, std::move(init))};
  if (module.method) body.push_back(*module.method);
  return loop_over_layers(std::move(body));
}

// An integer literal in a class body, and what it configures.
struct Literal {
  std::int64_t value = 0;
  std::string label;
  bool in_call = false;  // in __call__ rather than __init__
};

// Positional arguments of the mlx.nn constructors the generator writes, by name.
const std::map<std::string, std::vector<std::string>, std::less<>>& positional_names() {
  static const std::map<std::string, std::vector<std::string>, std::less<>> kNames = {
      {"nn.Linear", {"input_dims", "output_dims"}},
      {"nn.Conv1d", {"in_channels", "out_channels"}},
      {"nn.Conv2d", {"in_channels", "out_channels"}},
      {"nn.Conv3d", {"in_channels", "out_channels"}},
      {"nn.ConvTranspose1d", {"in_channels", "out_channels"}},
      {"nn.ConvTranspose2d", {"in_channels", "out_channels"}},
      {"nn.ConvTranspose3d", {"in_channels", "out_channels"}},
      {"nn.BatchNorm", {"num_features"}},
      {"nn.LayerNorm", {"dims"}},
      {"nn.RMSNorm", {"dims"}},
      {"nn.GroupNorm", {"num_groups", "dims"}},
      {"nn.Embedding", {"num_embeddings", "dims"}},
  };
  return kNames;
}

// The attribute a statement is about: `conv` in `self.conv = ...` or `y = self.conv(x)`.
std::string statement_attribute(const py::Stmt& statement) {
  std::string attribute;
  for (const py::Expr& expression : py::expressions(statement)) {
    py::walk(expression, [&](const py::Expr& part) {
      if (attribute.empty() && part.kind() == py::Expr::Kind::Attribute &&
          part.parts()[0].kind() == py::Expr::Kind::Name && part.parts()[0].text() == "self") {
        attribute = part.text();
      }
    });
  }
  return attribute;
}

// The non-negative integer literals under `part`, in print order, each labelled with what
// it configures: the keyword it is passed as, the positional parameter of the mlx.nn layer
// it is passed to, or "<attribute>_size" (a tensor shape, a tuple) or "size".
void collect_literals(const py::Expr& part, const std::string& label, const std::string& fallback,
                      bool in_call, std::vector<Literal>& literals) {
  if (part.kind() == py::Expr::Kind::Int) {
    if (part.integer() >= 0) literals.push_back({part.integer(), label, in_call});
    return;
  }
  const auto& parts = part.parts();
  switch (part.kind()) {
    case py::Expr::Kind::Call: {
      collect_literals(parts[0], label, fallback, in_call, literals);
      const auto names = positional_names().find(py::print(parts[0]));
      const std::size_t positional = parts.size() - part.keywords().size();
      for (std::size_t index = 1; index < parts.size(); ++index) {
        std::string inner = fallback;
        if (index >= positional) {
          inner = part.keywords()[index - positional];
        } else if (names != positional_names().end() && index - 1 < names->second.size()) {
          inner = names->second[index - 1];
        }
        collect_literals(parts[index], inner, fallback, in_call, literals);
      }
      return;
    }
    case py::Expr::Kind::Tuple:
    case py::Expr::Kind::List:
      for (const py::Expr& item : parts)
        collect_literals(item, fallback, fallback, in_call, literals);
      return;
    default:
      for (const py::Expr& item : parts) collect_literals(item, label, fallback, in_call, literals);
  }
}

// Every literal of a class body: __init__ first, then __call__.
std::vector<Literal> find_literals(const std::vector<py::Stmt>& body) {
  std::vector<Literal> literals;
  std::function<void(const std::vector<py::Stmt>&, bool)> visit =
      [&](const std::vector<py::Stmt>& statements, bool in_call) {
        for (const py::Stmt& statement : statements) {
          const std::string attribute = statement_attribute(statement);
          const std::string fallback = attribute.empty() ? "size" : attribute + "_size";
          for (const py::Expr& part : py::expressions(statement)) {
            collect_literals(part, "size", fallback, in_call, literals);
          }
          const bool call = in_call || (statement.kind == py::Stmt::Kind::Function &&
                                        statement.text == "__call__");
          visit(statement.body, call);
          visit(statement.orelse, call);
        }
      };
  visit(body, false);
  return literals;
}

// `body` with its literals (as find_literals orders them) replaced where `replace` says.
std::vector<py::Stmt> replace_literals(
    std::vector<py::Stmt> body,
    const std::function<std::optional<py::Expr>(std::size_t)>& replace) {
  std::size_t next = 0;
  return py::rewrite(std::move(body), [&](const py::Expr& part) -> std::optional<py::Expr> {
    if (part.kind() != py::Expr::Kind::Int || part.integer() < 0) return std::nullopt;
    return replace(next++);
  });
}

// The attributes a module's class sets: its children and its own parameters.
std::set<std::string> attribute_names(const ModuleNode& module) {
  std::set<std::string> names;
  for (const std::string& child : module.children) names.insert(attribute_name(child));
  for (const auto& [attribute, source] : module.params) names.insert(attribute);
  return names;
}

std::string camel_case(std::string_view name) {
  std::string result;
  bool upper = true;
  for (const char c : name) {
    if (c == '_') {
      upper = true;
      continue;
    }
    result += upper ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  return result;
}

// "With" the attributes a variant adds to the first class of its name, or "No" those it
// lacks (at most two, named ones first), or "" when the attributes are the same.
std::string variant_suffix(const std::set<std::string>& base,
                           const std::set<std::string>& variant) {
  const auto named = [](const std::set<std::string>& names) {
    std::vector<std::string> result;
    for (const std::string& name : names) {
      if (std::isdigit(static_cast<unsigned char>(name.back())) == 0) result.push_back(name);
    }
    return result;
  };
  std::set<std::string> added;
  std::set<std::string> missing;
  std::set_difference(variant.begin(), variant.end(), base.begin(), base.end(),
                      std::inserter(added, added.end()));
  std::set_difference(base.begin(), base.end(), variant.begin(), variant.end(),
                      std::inserter(missing, missing.end()));
  const std::vector<std::string> with = named(added);
  const std::vector<std::string> without = named(missing);
  const std::vector<std::string>& words = with.empty() ? without : with;
  if (words.empty()) return "";
  std::string suffix = with.empty() ? "No" : "With";
  for (std::size_t index = 0; index < words.size() && index < 2; ++index) {
    suffix += (index > 0 ? "And" : "") + camel_case(words[index]);
  }
  return suffix;
}

// The keyword arguments a class's __init__ passes to the layers it builds, as
// "attribute.keyword#n" -> value ("conv.kernel_size#0" -> "3"), in order of appearance.
std::vector<std::pair<std::string, std::string>> init_keywords(const std::vector<py::Stmt>& body) {
  std::vector<std::pair<std::string, std::string>> keywords;
  if (body.empty()) return keywords;
  for (const py::Stmt& statement : body[0].body) {
    const std::string attribute = statement_attribute(statement);
    py::walk(py::expressions(statement), [&](const py::Expr& part) {
      if (part.kind() != py::Expr::Kind::Call) return;
      const std::size_t positional = part.parts().size() - part.keywords().size();
      for (std::size_t index = 0; index < part.keywords().size(); ++index) {
        // The n-th use of a keyword within one attribute (a list of convs) is told apart
        // from the others: "block.kernel_size#2".
        const std::string key = attribute + "." + part.keywords()[index] + "#";
        const auto uses = std::count_if(keywords.begin(), keywords.end(), [&](const auto& entry) {
          return entry.first.starts_with(key);
        });
        keywords.emplace_back(key + std::to_string(uses),
                              py::print(part.parts()[positional + index]));
      }
    });
  }
  return keywords;
}

// A keyword's value as a name part: 3 -> "3", (1, 3) -> "1x3", in_channels -> "InChannels".
std::string value_word(std::string_view value) {
  std::string word;
  for (const char c : value) {
    if (c == ',') {
      word += 'x';
    } else if (std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_') {
      word += c;
    }
  }
  return std::isdigit(static_cast<unsigned char>(word.empty() ? 'x' : word[0])) != 0
             ? word
             : camel_case(word);
}

// Words that tell `variant` from `known`, two classes of one torch type whose attributes
// are the same, by the arguments their layers are built with: "1KernelSize" (a value that
// differs), "NoGroups" (an argument it leaves out), "2Stride" (one it adds); "Bias" and
// "NoBias" for flags.
std::vector<std::string> distinguishing_words(const std::vector<py::Stmt>& known,
                                              const std::vector<py::Stmt>& variant) {
  const auto before = init_keywords(known);
  const auto after = init_keywords(variant);
  const auto find = [](const auto& keywords, const std::string& key) {
    return std::find_if(keywords.begin(), keywords.end(),
                        [&](const auto& entry) { return entry.first == key; });
  };
  const auto bare = [](const std::string& key) {
    const std::size_t dot = key.find('.') + 1;
    return key.substr(dot, key.rfind('#') - dot);
  };
  const auto keyword_of = [&](const std::string& key) { return camel_case(bare(key)); };
  const auto word = [&](const std::string& key, const std::string& value) {
    if (value == "False") return "No" + keyword_of(key);
    // True, or a size the constructor takes (kernel_size=kernel_size): the keyword alone.
    if (value == "True" || value == bare(key)) return keyword_of(key);
    // A number goes first, as it is said ("1KernelSize", "2Stride", "1x3KernelSize"): a
    // class name that ends in a digit reads as a counter.
    const std::string written = value_word(value);
    return std::isdigit(static_cast<unsigned char>(written.empty() ? 'x' : written[0])) != 0
               ? written + keyword_of(key)
               : keyword_of(key) + written;
  };
  std::vector<std::string> words;
  const auto add = [&](std::string candidate) {
    if (std::find(words.begin(), words.end(), candidate) == words.end())
      words.push_back(std::move(candidate));
  };
  for (const auto& [key, value] : after) {
    const auto found = find(before, key);
    if (found == before.end() || found->second != value) add(word(key, value));
  }
  for (const auto& [key, value] : before) {
    if (find(after, key) == after.end()) add("No" + keyword_of(key));
  }
  return words;
}

std::vector<py::Stmt> Generator::make_classes() {
  // Classes, deepest modules first so that every class is defined before it is used. At
  // each depth, modules of one torch type whose code differs only in integer sizes share a
  // class whose constructor takes those sizes.
  std::map<std::size_t, std::vector<std::string>, std::greater<>> levels;
  for (const std::string& path : module_order_) {
    levels[path.empty() ? 0 : std::count(path.begin(), path.end(), '.') + 1].push_back(path);
  }
  struct Class {
    std::string name;
    std::vector<py::Stmt> body;
  };
  std::vector<Class> classes;
  std::map<std::string, Origin>& class_origin = class_origin_;
  // A class made at a deeper level, by group key: a module of the same type and code
  // nearer the root (a model's final norm beside its layers' norms) reuses it, when the
  // sizes the class fixes are its sizes too.
  using Column = std::vector<std::int64_t>;  // one literal's value in each member
  struct MadeClass {
    std::string name;
    std::vector<std::string> parameter;  // per literal: the parameter, or "" when fixed
    std::vector<std::int64_t> fixed;     // per literal: its value when fixed
  };
  std::map<std::string, MadeClass> made;
  std::map<std::string, std::set<std::string>> first_attributes;  // by class name
  // The constructor of each member: the class, with the values of its parameters.
  const auto construct = [&](const std::string& name, const std::vector<std::string>& members,
                             const std::vector<std::string>& parameter_of_literal,
                             const std::vector<Column>& columns) {
    for (std::size_t member = 0; member < members.size(); ++member) {
      ModuleNode& module = modules_.at(members[member]);
      module.class_name = name;
      std::vector<py::Keyword> arguments;
      std::set<std::string> passed;
      for (std::size_t index = 0; index < columns.size(); ++index) {
        const std::string& parameter = parameter_of_literal[index];
        if (parameter.empty() || !passed.insert(parameter).second) continue;
        arguments.push_back({parameter, py::integer(columns[index][member])});
      }
      module.constructor = py::name(name)({}, std::move(arguments));
    }
  };
  const auto reuse = [&](const std::string& key, const std::vector<std::string>& members,
                         const std::vector<Column>& columns) {
    const auto found = made.find(key);
    if (found == made.end()) return false;
    const MadeClass& known = found->second;
    for (std::size_t index = 0; index < columns.size(); ++index) {
      if (!known.parameter[index].empty()) continue;
      for (const std::int64_t value : columns[index]) {
        if (value != known.fixed[index]) return false;
      }
    }
    // Literals that share a parameter (equal in every module the class was made for) must
    // be equal here too: a block whose in and out widths differ is not `channels` twice.
    for (std::size_t member = 0; member < members.size(); ++member) {
      std::map<std::string, std::int64_t> value_of;
      for (std::size_t index = 0; index < columns.size(); ++index) {
        const std::string& parameter = known.parameter[index];
        if (parameter.empty()) continue;
        const auto [it, inserted] = value_of.emplace(parameter, columns[index][member]);
        if (!inserted && it->second != columns[index][member]) return false;
      }
    }
    class_origin[known.name].members += members.size();
    construct(known.name, members, known.parameter, columns);
    return true;
  };
  for (const auto& [depth, paths] : levels) {
    // Group key: type and code with the integer literals masked.
    std::map<std::string, std::vector<std::string>> groups;
    std::vector<std::string> group_order;
    std::map<std::string, std::vector<py::Stmt>> bodies;
    const py::Expr mask = py::name("_literal_");
    for (const std::string& path : paths) {
      ModuleNode& module = modules_.at(path);
      if (module.is_list || module.leaf_constructor || !needed(path)) continue;
      const std::vector<py::Stmt>& body = bodies[path] = class_body(module);
      const std::string key =
          module.type + "\n" +
          py::print(
              replace_literals(body, [&](std::size_t) -> std::optional<py::Expr> { return mask; }));
      if (!groups.contains(key)) group_order.push_back(key);
      groups[key].push_back(path);
    }
    for (const std::string& key : group_order) {
      const std::vector<std::string>& members = groups[key];
      ModuleNode& first = modules_.at(members.front());
      const std::vector<py::Stmt>& body = bodies[members.front()];
      const auto literals = find_literals(body);
      // Columns of literal values across the members; varying columns become parameters,
      // and equal columns share one. A size in __call__ (GPT-2's Conv1D reshapes to its
      // own width) is kept as an attribute.
      std::vector<Column> columns(literals.size());
      for (const std::string& path : members) {
        const auto values = find_literals(bodies[path]);
        for (std::size_t index = 0; index < literals.size(); ++index) {
          columns[index].push_back(values[index].value);
        }
      }
      if (reuse(key, members, columns)) continue;
      std::map<Column, std::string> parameter_of;
      std::vector<std::string> parameters;
      std::vector<std::string> replacement(literals.size());
      std::set<std::string> taken;
      for (std::size_t index = 0; index < literals.size(); ++index) {
        const auto& column = columns[index];
        if (std::all_of(column.begin(), column.end(),
                        [&](std::int64_t v) { return v == column[0]; })) {
          continue;
        }
        auto found = parameter_of.find(column);
        if (found == parameter_of.end()) {
          std::string name = literals[index].label;
          for (int suffix = 2; taken.contains(name) || is_reserved(name); ++suffix) {
            name = fmt::format("{}{}", literals[index].label, suffix);
          }
          taken.insert(name);
          parameters.push_back(name);
          found = parameter_of.emplace(column, name).first;
        }
        replacement[index] = found->second;
      }
      std::set<std::string> stored;  // parameters __call__ reads, kept as attributes
      std::vector<py::Stmt> source =
          replace_literals(body, [&](std::size_t index) -> std::optional<py::Expr> {
            if (replacement[index].empty()) return std::nullopt;
            if (!literals[index].in_call) return py::name(replacement[index]);
            stored.insert(replacement[index]);
            return py::name("self").attr(replacement[index]);
          });
      py::Stmt& init = source[0];
      for (const std::string& parameter : stored) {
        init.body.push_back(py::assign(py::name("self").attr(parameter), py::name(parameter)));
      }
      for (const std::string& parameter : parameters) init.params.push_back({parameter, {}});
      std::string name =
          first.path.empty() ? "Model" : short_type(first.type.empty() ? "Module" : first.type);
      if (!first.path.empty() && (name == "Model" || name == "Module")) name = "Block";
      // A second class of one torch type is named for what it has or lacks
      // (BasicBlockWithDownsample, LlamaRMSNormNoWeight); a number only when that is nothing.
      const std::set<std::string> attributes = attribute_names(first);
      const auto base = first_attributes.emplace(name, attributes).first;
      name += variant_suffix(base->second, attributes);
      // Still taken: named for the arguments that set it apart from the class holding the
      // name (ConvNormAct1KernelSize, then ConvNormAct1KernelSizeNoGroups); a number only
      // when no argument differs (classes that differ in __call__ alone).
      const auto holder = [&](const std::string& candidate) -> const Class* {
        for (const Class& known : classes) {
          if (known.name == candidate) return &known;
        }
        return nullptr;
      };
      std::string candidate = name;
      std::set<std::string> used;
      for (const Class* taken = holder(candidate); taken != nullptr; taken = holder(candidate)) {
        const auto words = distinguishing_words(taken->body, source);
        const auto next = std::find_if(words.begin(), words.end(), [&](const std::string& word) {
          return !used.contains(word);
        });
        if (next == words.end()) break;
        used.insert(*next);
        candidate += *next;
      }
      if (holder(candidate) == nullptr) {
        name = candidate;
      } else {
        int suffix = 2;
        while (holder(fmt::format("{}{}", name, suffix)) != nullptr) ++suffix;
        name += fmt::format("{}", suffix);
      }
      classes.push_back({name, std::move(source)});
      MadeClass record{name, replacement, {}};
      for (const auto& column : columns) record.fixed.push_back(column.empty() ? 0 : column[0]);
      made.emplace(key, std::move(record));
      if (!first.path.empty()) class_origin[name] = {first.type, first.path, members.size()};
      construct(name, members, replacement, columns);
    }
  }
  std::vector<py::Stmt> code;
  code.reserve(classes.size());
  for (Class& made_class : classes) {
    code.push_back(
        py::class_(made_class.name, {py::dotted("nn.Module")}, std::move(made_class.body)));
  }
  return code;
}

// The module: imports, the helpers the code calls, and the classes, each with a comment
// naming the torch modules it serves (the first of them, "and others" when `generic`: the
// count changes with the model's size).
std::string Generator::assemble(std::vector<py::Stmt> code, bool generic) {
  for (py::Stmt& definition : code) {
    const auto origin = class_origin_.find(definition.text);
    if (definition.kind != py::Stmt::Kind::Class || origin == class_origin_.end()) continue;
    const Origin& from = origin->second;
    const std::string paths =
        from.members == 1 ? from.first_path
        : generic         ? fmt::format("{} and others", from.first_path)
                          : fmt::format("{} and {} more", from.first_path, from.members - 1);
    definition = py::commented(
        definition, "torch: " + python_comment(fmt::format("{} ({})", from.type, paths), 90));
  }
  // Imports the code uses: names in the code, and the helpers' code lines (their comments
  // may mention math.sqrt).
  // The transposes the code performs (the helpers' own included) are counted for the report.
  std::set<std::string> names;
  transposes_ = 0;
  py::walk(code, [&](const py::Expr& part) {
    if (part.kind() == py::Expr::Kind::Name) names.insert(part.text());
    if (part.kind() == py::Expr::Kind::Call &&
        part.parts()[0].kind() == py::Expr::Kind::Attribute &&
        part.parts()[0].text() == "transpose") {
      ++transposes_;
    }
  });
  std::vector<py::Stmt> helpers;
  for (const std::string& helper : state_.helpers) {
    const std::string_view text = *helper_source(helper);
    helpers.push_back(py::verbatim(text));
    for (std::size_t at = text.find("transpose("); at != std::string_view::npos;
         at = text.find("transpose(", at + 1)) {
      ++transposes_;
    }
    for (std::size_t start = 0; start < text.size();) {
      const std::size_t end = std::min(text.find('\n', start), text.size());
      const std::string_view line = text.substr(start, end - start);
      const std::size_t first = line.find_first_not_of(' ');
      if (first != std::string_view::npos && line[first] != '#') {
        for (const char* module : {"math", "mx"}) {
          if (line.find(std::string(module) + ".") != std::string_view::npos) names.insert(module);
        }
      }
      start = end + 1;
    }
  }
  std::vector<py::Stmt> module{
      py::comment(fmt::format(
          "Generated by torch2mlx from a torch.export program (torch {}).",
          program_.torch_version.empty() ? "unknown" : python_comment(program_.torch_version, 40))),
      py::comment("It needs MLX only; edit it freely.")};
  if (names.contains("math")) {
    module.push_back(py::import("math"));
    module.push_back(py::blank());
  }
  if (names.contains("dataclass")) {
    module.push_back(py::import_from("dataclasses", "dataclass"));
    module.push_back(py::blank());
  }
  if (names.contains("mx")) module.push_back(py::import("mlx.core", "mx"));
  module.push_back(py::import("mlx.nn", "nn"));
  for (py::Stmt& helper : helpers) module.push_back(std::move(helper));
  for (py::Stmt& definition : code) module.push_back(std::move(definition));
  return py::print(module);
}

// The name a line of source assigns, `queries` in "file.py:3: queries = self.q(x).view(s)",
// or "" for any other statement (returns, tuple targets, attributes, augmented assignment).
std::string assigned_name(const std::string& line) {
  const std::size_t location = line.find(": ");
  if (location == std::string::npos) return "";
  const std::string_view code = std::string_view(line).substr(location + 2);
  std::size_t end = 0;
  while (end < code.size() &&
         (std::isalnum(static_cast<unsigned char>(code[end])) != 0 || code[end] == '_')) {
    ++end;
  }
  std::size_t next = end;
  while (next < code.size() && code[next] == ' ') ++next;
  if (end == 0 || next + 1 >= code.size() || code[next] != '=' || code[next + 1] == '=') return "";
  std::string name(code.substr(0, end));
  return is_python_identifier(name) && !is_reserved(name) ? name : "";
}

// Whether the innermost frame of a stack trace is the user's line itself: an op written
// there (`x.mean()`), not one inside a torch module that the line calls (`self.conv(x)`).
bool called_on_the_line(const std::string& trace) {
  const std::size_t file = trace.rfind("File \"");
  if (file == std::string::npos) return false;
  const std::size_t end = trace.find('"', file + 6);
  return end != std::string::npos &&
         std::string_view(trace).substr(file, end - file).find("/torch/") == std::string::npos;
}

// Dynamic sizes are named for what they measure: a symbol the user named
// (`Dim("sequence")`) keeps its name; torch's own (`s77`) are named by the input axis they
// first appear on, batch for the leading axis and length for the others.
void Generator::name_sizes() {
  std::map<std::string, std::string> names;  // symbol -> name
  for (const std::string& input : user_inputs_) {
    const auto meta = program_.tensors.find(input);
    if (meta == program_.tensors.end()) continue;
    for (std::size_t axis = 0; axis < meta->second.shape.size(); ++axis) {
      const std::string& symbol = meta->second.shape[axis].symbol;
      if (symbol.empty() || names.contains(symbol) || !is_python_identifier(symbol)) continue;
      const bool torch_named = symbol.size() > 1 && symbol[0] == 's' &&
                               std::all_of(symbol.begin() + 1, symbol.end(), [](char c) {
                                 return std::isdigit(static_cast<unsigned char>(c)) != 0;
                               });
      names[symbol] = !torch_named && !is_reserved(symbol) ? symbol
                      : axis == 0                          ? "batch"
                                                           : "length";
    }
  }
  for (const Node& node : program_.nodes) {
    if (node.target != "aten.sym_size.int" || node.inputs.size() < 2) continue;
    const std::vector<std::string> outputs = output_names(node);
    const auto meta = node.inputs[0].arg.names.empty()
                          ? program_.tensors.end()
                          : program_.tensors.find(node.inputs[0].arg.names[0]);
    if (outputs.size() != 1 || meta == program_.tensors.end() || node.inputs[1].arg.ints.empty()) {
      continue;
    }
    std::int64_t axis = node.inputs[1].arg.ints[0];
    const auto rank = static_cast<std::int64_t>(meta->second.shape.size());
    if (axis < 0) axis += rank;
    if (axis < 0 || axis >= rank) continue;
    const std::string& symbol = meta->second.shape[static_cast<std::size_t>(axis)].symbol;
    if (symbol.empty()) continue;
    size_symbols_[outputs[0]] = symbol;
    const auto name = names.find(symbol);
    if (name != names.end() && !source_names_.contains(outputs[0])) {
      source_names_[outputs[0]] = name->second;
    }
  }
}

void Generator::name_from_source() {
  // The value a line `name = ...` assigns is the last one computed on that line within one
  // module call, counting the calls it makes on the line: in `y = self.proj(x * 2)` the
  // last value is the projection's, so `x * 2` is not named y. The others keep op names.
  std::map<std::string, std::size_t> last;  // call key + line -> index of its last node
  for (std::size_t index = 0; index < program_.nodes.size(); ++index) {
    const Node& node = program_.nodes[index];
    const std::string line = user_source_line(node.stack_trace);
    if (line.empty()) continue;
    last[fmt::format("\n{}", line)] = index;  // the root's call
    for (const ModuleFrame& frame : node.module_stack) {
      last[fmt::format("{}\n{}", frame.key, line)] = index;
    }
  }
  for (const auto& [key, index] : last) {
    const Node& node = program_.nodes[index];
    const std::string own_call = node.module_stack.empty() ? "" : node.module_stack.back().key;
    const std::string line = key.substr(key.find('\n') + 1);
    const std::string name = assigned_name(line);
    const std::vector<std::string> outputs = output_names(node);
    if (key.substr(0, key.find('\n')) != own_call || name.empty() || outputs.size() != 1 ||
        !program_.tensors.contains(outputs[0]) || !called_on_the_line(node.stack_trace)) {
      continue;
    }
    source_names_[outputs[0]] = name;
  }
}

std::string Generator::source_name(const std::string& value) const {
  const auto found = source_names_.find(value);
  return found == source_names_.end() ? std::string() : found->second;
}

std::string Generator::mlx_path(const std::string& path) const {
  // As the weight keys are made: list indices stay, other odd names become attributes.
  std::vector<std::string> segments;
  if (root_layers_) segments.emplace_back("layers");
  std::string parent;
  for (const std::string& segment : split_path(path)) {
    const auto found = modules_.find(parent);
    const bool in_list =
        parent.empty() ? root_layers_ : found != modules_.end() && found->second.is_list;
    segments.push_back(in_list ? segment : attribute_name(segment));
    parent = parent.empty() ? segment : fmt::format("{}.{}", parent, segment);
  }
  return fmt::format("{}", fmt::join(segments, "."));
}

std::vector<ModuleBoundary> Generator::boundaries() const {
  std::vector<ModuleBoundary> result;
  std::set<std::string> seen;
  const auto perm_of = [&](const std::string& value) {
    const auto found = perms_.find(value);
    return found == perms_.end() ? Perm{} : found->second;
  };
  for (const auto& region : regions_) {
    if (region.get() == root_ || region->inline_into_parent || region->path.empty() ||
        !seen.insert(region->path).second) {
      continue;
    }
    ModuleBoundary boundary;
    boundary.path = region->path;
    boundary.mlx_path = mlx_path(region->path);
    boundary.type = region->type;
    for (int index = region->first; index <= region->last; ++index) {
      const Node& node = program_.nodes[static_cast<std::size_t>(index)];
      const std::string target = normalise_target(node.target);
      if (std::find(boundary.ops.begin(), boundary.ops.end(), target) == boundary.ops.end()) {
        boundary.ops.push_back(target);
      }
      if (boundary.source_line.empty()) boundary.source_line = user_source_line(node.stack_trace);
    }
    if (region->is_leaf_layer) {
      // The caller moves the layer's input to the order its op needs.
      const int index = region->items[0].node;
      const Arg* input = data_input(program_.nodes[static_cast<std::size_t>(index)]);
      if (input != nullptr && !input->names.empty()) {
        boundary.input_perm = perm_of(input->names[0]);
        for (const auto& [name, perm] : needs_[static_cast<std::size_t>(index)]) {
          if (name == input->names[0]) boundary.input_perm = perm;
        }
      }
    } else {
      for (const std::string& input : region->inputs) {
        if (program_.tensors.contains(input)) {
          boundary.input_perm = perm_of(input);
          break;
        }
      }
    }
    for (const std::string& output : region->outputs) {
      boundary.output_perms.push_back(perm_of(output));
    }
    result.push_back(std::move(boundary));
  }
  return result;
}

bool Generator::needed(const std::string& path) const {
  const ModuleNode& module = modules_.at(path);
  if (!module.params.empty() || module.method || module.leaf_constructor) {
    return true;
  }
  return std::any_of(module.children.begin(), module.children.end(), [&](const std::string& child) {
    return needed(path.empty() ? child : path + "." + child);
  });
}

void Generator::decide_structure(Region& region, const std::string& method_path) {
  // Inlined: containers (Sequential), weight-free torch.nn modules (activations, pooling,
  // dropout...), weight-free modules of other libraries that compute one op (transformers'
  // SiLUActivation is `nn.silu(x)`, as mlx-lm writes it), and modules called from code that
  // does not own them.
  bool has_weights = false;
  for (const auto& [path, module] : modules_) {
    if ((path == region.path || path.starts_with(region.path + ".")) && !module.params.empty()) {
      has_weights = true;
    }
  }
  const bool builtin = region.type.starts_with("torch.nn.modules.");
  const bool one_op = region.items.size() == 1 && region.items[0].child == nullptr;
  region.inline_into_parent = modules_.at(region.path).is_list ||
                              ((builtin || one_op) && !has_weights) ||
                              !(method_path.empty() || region.path.starts_with(method_path + "."));
  const std::string inner = region.inline_into_parent ? method_path : region.path;
  for (const Region::Item& item : region.items) {
    if (item.child != nullptr) decide_structure(*item.child, inner);
  }
}

// Which inputs the caller may leave out. Python wants parameters with a default last, so
// the optional ones are a tail of the signature. A left-out input takes the sizes of its
// `like` input (transformers' default mask has the shape of input_ids, whatever symbols
// torch gave the two), except where its own size is fixed.
void Generator::decide_defaults() {
  if (wanted_defaults_.empty()) return;
  const std::map<std::string, ContainerLeaf> containers = container_leaves();
  std::size_t first_optional = user_inputs_.size();
  while (first_optional > 0) {
    const std::string& input = user_inputs_[first_optional - 1];
    if (!wanted_defaults_.contains(input) || containers.contains(input)) break;
    --first_optional;
  }
  const auto required = [&](const std::string& name) {
    const auto end = user_inputs_.begin() + static_cast<std::ptrdiff_t>(first_optional);
    return std::find(user_inputs_.begin(), end, name) != end && !containers.contains(name);
  };
  for (std::size_t index = 0; index < user_inputs_.size(); ++index) {
    const std::string& input = user_inputs_[index];
    const auto wanted = wanted_defaults_.find(input);
    if (wanted == wanted_defaults_.end()) continue;
    const OptionalInput& asked = wanted->second;
    if (asked.fill != "ones" && asked.fill != "zeros" && asked.fill != "arange") {
      fail("codegen", fmt::format("input '{}': the default '{}' is not one of ones, zeros, arange",
                                  input, asked.fill));
    }
    const auto refuse = [&](const std::string& why) {
      notes_.push_back(fmt::format("input '{}' stays required: {}", input, why));
    };
    if (index < first_optional) {
      refuse("a required input follows it, and Python puts parameters with a default last");
      continue;
    }
    const auto meta = program_.tensors.find(input);
    const auto like = program_.tensors.find(asked.like);
    if (meta == program_.tensors.end() || like == program_.tensors.end() || !required(asked.like)) {
      refuse(fmt::format("'{}', whose sizes it would take, is not a required tensor input",
                         asked.like));
      continue;
    }
    const std::vector<Dim>& shape = meta->second.shape;
    const std::optional<py::Expr> dtype = mlx_dtype_expr(meta->second.dtype);
    if (!dtype || shape.size() != like->second.shape.size() ||
        (asked.fill == "arange" && shape.empty())) {
      refuse(
          fmt::format("a default of {} cannot stand in for it: MLX has no dtype {}, or its "
                      "rank is not that of '{}'",
                      asked.fill, meta->second.dtype, asked.like));
      continue;
    }
    InputDefault spec{asked.fill, *dtype, asked.like, {}};
    for (std::size_t axis = 0; axis < shape.size(); ++axis) {
      const Dim& other = like->second.shape[axis];
      const bool same =
          shape[axis].symbol.empty() && other.symbol.empty() && shape[axis].hint == other.hint;
      spec.sizes.push_back(shape[axis].symbol.empty() && !same ? std::optional(shape[axis].hint)
                                                               : std::nullopt);
    }
    defaults_.emplace(input, std::move(spec));
  }
}

// The value of a left-out input: its fill, shaped as its `like` input (`input_ids.shape`)
// but for the sizes of its own that are fixed.
py::Expr Generator::default_value(const InputDefault& spec, const Method& scope) const {
  const py::Expr like = scope.local.at(spec.like).attr("shape");
  std::vector<py::Expr> sizes;
  bool whole = true;
  for (std::size_t axis = 0; axis < spec.sizes.size(); ++axis) {
    whole = whole && !spec.sizes[axis];
    sizes.push_back(spec.sizes[axis] ? py::integer(*spec.sizes[axis])
                                     : like[py::integer(static_cast<std::int64_t>(axis))]);
  }
  const py::Expr shape = whole ? like : py::tuple(sizes);
  if (spec.fill == "arange") {
    return py::call("mx.broadcast_to",
                    {py::call("mx.arange", {sizes.back()}, {{"dtype", spec.dtype}}), shape});
  }
  return py::call(spec.fill == "ones" ? "mx.ones" : "mx.zeros", {shape}, {{"dtype", spec.dtype}});
}

void Generator::drop_dead_uses() {
  // Liveness, backwards from the outputs: a node is live when a live node or the model's
  // output reads what it computes. Reads by dead nodes (and by the tracer's asserts, which
  // compute nothing) do not keep a value alive.
  std::set<std::string> live(graph_outputs_.begin(), graph_outputs_.end());
  std::vector<bool> node_live(program_.nodes.size(), false);
  for (std::size_t index = program_.nodes.size(); index-- > 0;) {
    const Node& node = program_.nodes[index];
    const auto outputs = output_names(node);
    if (std::none_of(outputs.begin(), outputs.end(),
                     [&](const std::string& name) { return live.contains(name); })) {
      continue;
    }
    node_live[index] = true;
    for (const NamedArg& input : node.inputs) {
      std::vector<std::string> names;
      collect_names(input.arg, names);
      live.insert(names.begin(), names.end());
    }
  }
  for (auto it = uses_.begin(); it != uses_.end();) {
    std::erase_if(it->second, [&](int use) { return !node_live[static_cast<std::size_t>(use)]; });
    it = it->second.empty() ? uses_.erase(it) : std::next(it);
  }
}

GeneratedModel Generator::run(const ModelArgsSpec& model_args,
                              const std::vector<std::vector<py::Stmt>>& probe_classes) {
  index_inputs();
  decide_defaults();
  drop_dead_uses();
  name_from_source();
  name_sizes();
  plan_layouts();
  if (!errors_.empty()) {
    fail("codegen", fmt::format("{} node(s) cannot be translated to MLX (rewrite those lines of "
                                "the model with ops that docs/ops.md lists, or add a "
                                "translation in cpp/src/ops/):\n  {}",
                                errors_.size(), fmt::join(errors_, "\n  ")));
  }
  build_regions();
  build_module_tree();
  for (const Region::Item& item : root_->items) {
    if (item.child != nullptr) decide_structure(*item.child, "");
  }
  // Post-order: a region's children are settled (layer, method or inlined) before it.
  std::function<void(Region&)> settle = [&](Region& region) {
    for (const Region::Item& item : region.items) {
      if (item.child != nullptr) settle(*item.child);
    }
    if (&region == root_ || region.inline_into_parent) return;
    decide_leaf_layers(region);
    compute_signature(region);
    if (region.is_leaf_layer) return;
    if (region.outputs.empty()) {
      region.inline_into_parent = true;
      return;
    }
    py::Stmt method = emit_method(region, region.path);
    const std::string text = py::print({method});
    ModuleNode& owner = modules_.at(region.path);
    if (!owner.method) {
      owner.method = std::move(method);
      owner.method_text = text;
    } else if (owner.method_text != text) {
      region.inline_into_parent = true;  // a second call that computes something else
    }
  };
  settle(*root_);
  // Emit for real: helpers asked for by methods that were inlined later are dropped.
  state_.helpers.clear();
  direct_weights_.clear();
  for (auto& [path, module] : modules_) module.method.reset();
  std::function<void(Region&)> emit = [&](Region& region) {
    for (const Region::Item& item : region.items) {
      if (item.child != nullptr) emit(*item.child);
    }
    if (&region == root_ || region.inline_into_parent || region.is_leaf_layer) return;
    ModuleNode& owner = modules_.at(region.path);
    if (!owner.method) owner.method = emit_method(region, region.path);
  };
  emit(*root_);
  modules_.at("").method = emit_root();
  GeneratedModel generated;
  generated.classes = make_classes();
  if (model_args.probes.empty()) {
    generated.source = assemble(generated.classes, !model_args.fields.empty());
  } else {
    std::vector<std::string> fields;
    std::vector<double> values;
    std::vector<ProbeBase> bases;
    for (const ConfigProbe& probe : model_args.probes) {
      fields.push_back(probe.field);
      values.push_back(probe.value);
      bases.push_back(probe.base);
    }
    ParameterizedCode code =
        parameterize(generated.classes, model_args.fields, fields, values, probe_classes, bases);
    generated.model_args = std::move(code.fields);
    for (std::string& note : code.notes) notes_.push_back(std::move(note));
    generated.source = assemble(std::move(code.classes), true);
  }
  for (const auto& [source, key] : weight_attribute_) {
    PackageWeight weight;
    weight.name = key;
    weight.source = source;
    const auto layout = state_.weight_layouts.find(source);
    if (layout != state_.weight_layouts.end()) {
      weight.transform = layout->second.first;
      weight.groups = layout->second.second;
    }
    generated.weights.push_back(weight);
  }
  for (const std::string& input : user_inputs_) {
    PackageInput info;
    info.name = input;
    const auto meta = program_.tensors.find(input);
    if (meta != program_.tensors.end()) {
      info.dtype = meta->second.dtype;
      for (const Dim& dim : meta->second.shape) {
        info.shape.push_back(dim.symbol.empty() ? fmt::format("{}", dim.hint) : dim.symbol);
      }
    }
    const auto optional = defaults_.find(input);
    if (optional != defaults_.end()) info.default_fill = optional->second.fill;
    generated.inputs.push_back(info);
  }
  generated.notes = notes_;
  generated.modules = boundaries();
  generated.transposes = transposes_;
  generated.direct_weights.assign(direct_weights_.begin(), direct_weights_.end());
  return generated;
}

// A constant argument (a number, a list, None...) as Python source, rendered by the same
// code as the arguments of an op.
py::Expr Generator::literal_of(const Arg& value) {
  Node holder;
  holder.inputs.push_back({"value", value, false});
  state_.rendered.clear();
  Call call(holder, state_);
  return call.literal("value");
}

py::Stmt Generator::emit_root() {
  // The model's inputs in torch's order; its outputs back in torch's axis order and
  // structure (tuples, lists, dicts).
  Method scope;
  // An argument that is a list, tuple or dict of tensors stays one parameter, unpacked into
  // the graph's inputs first (torch.export flattens it into one input per tensor).
  const std::map<std::string, ContainerLeaf> containers = container_leaves();
  std::vector<py::Param> parameters{{"self", {}}};
  std::set<std::string> container_taken;
  for (const std::string& input : user_inputs_) {
    const auto leaf = containers.find(input);
    if (leaf == containers.end()) {
      const bool optional = defaults_.contains(input);
      parameters.push_back(
          {local_name(scope, input), optional ? std::optional(py::none()) : std::nullopt});
      continue;
    }
    const auto [it, first] = container_taken.emplace(leaf->second.parameter);
    if (first) parameters.push_back({local_name(scope, "#arg " + *it, *it), {}});
    const bool plain = is_python_identifier(input) && !is_reserved(input);
    py::Expr access = scope.local.at("#arg " + *it);
    for (const py::Expr& subscript : leaf->second.access) access = access[subscript];
    scope.lines.push_back(
        py::assign(py::name(local_name(scope, input, plain ? input : "")), access));
  }
  // Non-tensor inputs keep their place in the signature with the value export baked in.
  for (const InputSpec& spec : program_.inputs) {
    if (!spec.constant || containers.contains(spec.name)) continue;
    parameters.push_back({local_name(scope, spec.name), literal_of(spec.value)});
  }
  // Inputs left out get the value transformers computes for them (all-ones mask...).
  for (const auto& [input, spec] : defaults_) {
    const py::Expr local = scope.local.at(input);
    scope.lines.push_back(py::if_(py::binary(local, py::Op::Is, py::none()),
                                  {py::assign(local, default_value(spec, scope))}));
  }
  emit_items(*root_, "", scope);
  std::vector<py::Expr> values;
  for (const OutputSpec& output : program_.outputs) {
    if (output.kind != OutputKind::UserOutput) continue;
    const Arg& value = output.value;
    const bool named = !value.names.empty() && !value.names[0].empty();
    if (value.kind == ArgKind::None) {
      values.push_back(py::none());
    } else if (named && value.kind != ArgKind::TensorList) {
      const std::string& name = value.names[0];
      py::Expr expression = reference(name, "", scope);
      const auto perm = perms_.find(name);
      if (perm != perms_.end() && !perm->second.empty()) {
        const std::size_t rank = program_.tensors.at(name).shape.size();
        const py::Expr converted = py::name(
            local_name(scope, name + "#out", base_name(name) + "_" + layout_suffix({}, rank)));
        scope.lines.push_back(py::assign(
            converted, py::call("mx.transpose",
                                {expression, py::ints(transpose_axes(perm->second, {}, rank))})));
        expression = converted;
      }
      values.push_back(expression);
    } else {
      values.push_back(literal_of(value));
    }
  }
  std::optional<py::Expr> result;
  if (!program_.out_spec.empty()) {
    try {
      const auto spec = nlohmann::json::parse(program_.out_spec);
      std::size_t next = 0;
      result =
          output_expression(spec.is_array() && spec.size() == 2 ? spec[1] : spec, next, values);
    } catch (const nlohmann::json::exception&) {
      result.reset();
    }
  }
  if (!result) result = values.size() == 1 ? values[0] : py::tuple(values);
  scope.lines.push_back(py::return_({*result}));
  return py::function("__call__", std::move(parameters), std::move(scope.lines));
}

}  // namespace

std::string Generator::current_node() const {
  if (current_ < 0 || static_cast<std::size_t>(current_) >= program_.nodes.size())
    return "the model's structure";
  return describe_node(program_.nodes[static_cast<std::size_t>(current_)]);
}

std::vector<std::string_view> leaf_layer_types() {
  std::vector<std::string_view> types;
  for (const LeafLayerRule& rule : kLeafLayers) types.push_back(rule.type);
  return types;
}

namespace {

// The first line of an error, for a note.
std::string first_line(std::string_view text) {
  return std::string(text.substr(0, text.find('\n')));
}

}  // namespace

GeneratedModel generate_model(const ExportedProgram& program, const CodegenOptions& options) {
  // Each probe's classes first, generated as the model's own are (with the fields given, so
  // that their comments are the generic ones too). A probe is only evidence about its field:
  // one that cannot be read or translated (a size expression past our limits, an op only
  // that size uses) leaves the field fixed, with a note, and never fails the model.
  ModelArgsSpec usable;
  usable.fields = options.model_args.fields;
  std::vector<std::vector<py::Stmt>> probe_classes;
  std::vector<std::string> probe_notes;
  for (const ConfigProbe& probe : options.model_args.probes) {
    std::string problem = probe.error;
    if (problem.empty()) {
      CodegenOptions plain;
      plain.model_args.fields = options.model_args.fields;
      plain.input_defaults = options.input_defaults;
      try {
        probe_classes.push_back(generate_model(probe.program, plain).classes);
      } catch (const Error& error) {
        problem = error.what();
      }
    }
    if (!problem.empty()) {
      probe_notes.push_back(fmt::format(
          "ModelArgs: '{}' stays fixed: the model captured with {} = {} cannot be used ({})",
          probe.field, probe.field, probe.value, first_line(problem)));
      continue;
    }
    ConfigProbe kept;  // what parameterize reads of it: the change and its base
    kept.field = probe.field;
    kept.value = probe.value;
    kept.base = probe.base;
    usable.probes.push_back(std::move(kept));
  }
  ExportedProgram rewritten = program;
  run_passes(rewritten, default_passes(), options.dump_ir_after, options.dump);
  Generator generator(rewritten, options.input_defaults);
  try {
    GeneratedModel generated = generator.run(usable, probe_classes);
    generated.notes.insert(generated.notes.end(), probe_notes.begin(), probe_notes.end());
    return generated;
  } catch (const Error&) {
    throw;
  } catch (const std::exception& error) {
    // A bug of ours (a missing map entry, an index out of range): still name the node,
    // its module and its line, so the user knows what to report or rewrite.
    fail("codegen", fmt::format("internal error ({}) translating {}; this is a torch2mlx bug: "
                                "please report it with the model",
                                error.what(), generator.current_node()));
  }
}

}  // namespace torch2mlx
