// Floor 2 of the core: the graph IR that torch.export programs are read into, and that the
// code generator walks. It mirrors torch/_export/serde/schema.py closely enough that a node
// reads the same in both, with the JSON unions resolved into one small Arg type.
//
// Names are the graph's value names ("conv2d", "p_conv_weight", "sym_size_int"). Targets
// drop the "torch.ops." prefix: "aten.conv2d.default", "_operator.mul".
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "torch2mlx/tensor.h"

namespace torch2mlx {

/// What an argument of a node holds. Lists of ints may mix literals and symbols.
enum class ArgKind : std::uint8_t {
  None,
  Tensor,      // names[0]
  TensorList,  // names; "" marks a None inside an optional-tensor list
  Int,         // ints[0], or names[0] when symbolic
  IntList,     // ints[i], or names[i] when symbolic
  Float,       // floats[0], or names[0] when symbolic
  FloatList,   // floats
  Bool,        // ints[0] (0 or 1), or names[0] when symbolic
  BoolList,    // ints
  String,      // strings[0]
  StringList,  // strings
  ScalarType,  // strings[0]: "float32", "int64", ... (numpy names, "complex64" too)
  MemoryFormat,
  Layout,
  Device,       // strings[0], e.g. "cpu"
  Unsupported,  // strings[0] names the JSON kind, e.g. "as_graph"
};

/// One argument or output of a node.
struct Arg {
  ArgKind kind = ArgKind::None;
  std::vector<std::string> names;
  std::vector<std::int64_t> ints;
  std::vector<double> floats;
  std::vector<std::string> strings;
};

/// An input of a node with its name in the operator schema ("input", "weight", "dim").
struct NamedArg {
  std::string name;
  Arg arg;
  bool keyword = false;
};

/// One entry of a node's nn_module_stack: the module call it happened in.
struct ModuleFrame {
  std::string key;   // unique per call, e.g. "L__self___layers_0"
  std::string path;  // state-dict style path, e.g. "layers.0"
  std::string type;  // qualified class name, e.g. "torch.nn.modules.conv.Conv2d"
};

/// A call of an operator.
struct Node {
  std::string name;
  std::string target;
  std::vector<NamedArg> inputs;
  std::vector<Arg> outputs;
  std::vector<ModuleFrame> module_stack;  // outermost first; the root module is left out
  std::string stack_trace;

  /// The input named `name`, or nullptr when the call left it at its default.
  [[nodiscard]] const Arg* input(std::string_view input_name) const;
};

/// A dimension of a tensor: a known size, or a symbol of a dynamic shape with the size it
/// had when the program was exported.
struct Dim {
  std::int64_t hint = 0;
  std::string symbol;  // "" when static; else the sympy expression, e.g. "s77" or "2*s77"
};

/// Dtype and shape of a graph value.
struct TensorMeta {
  std::string dtype;  // numpy name: "float32", "bfloat16", "int64", "bool", ...
  std::vector<Dim> shape;
};

/// What a graph input is.
enum class InputKind : std::uint8_t { UserInput, Parameter, Buffer, Constant, Token, CustomObject };

/// A graph input: a value name and what it binds to.
struct InputSpec {
  InputKind kind = InputKind::UserInput;
  std::string name;    // graph value name, e.g. "p_conv_weight" or "x"
  std::string target;  // state-dict key or constant name, e.g. "conv.weight"; "" for user inputs
  bool persistent = true;
  Arg value;  // the argument itself (a user input may be an int or None, not only a tensor)
  // A non-tensor input (use_cache=False, a flag, a size): export baked its value into the
  // graph, so other values are not honoured.
  bool constant = false;
};

/// What a graph output is.
enum class OutputKind : std::uint8_t {
  UserOutput,
  BufferMutation,
  UserInputMutation,
  ParameterMutation,
  Token,
  Other,
};

/// A graph output.
struct OutputSpec {
  OutputKind kind = OutputKind::UserOutput;
  Arg value;
  std::string target;  // the mutated buffer or input, for mutations
};

/// The range a dynamic dimension's symbol may take.
struct SymbolRange {
  std::int64_t min = 0;
  std::optional<std::int64_t> max;  // nullopt: unbounded
};

/// An ExportedProgram as read from a .pt2 archive.
struct ExportedProgram {
  std::vector<Node> nodes;
  std::vector<InputSpec> inputs;
  std::vector<OutputSpec> outputs;
  std::map<std::string, TensorMeta> tensors;  // every tensor value by name
  std::map<std::string, SymbolRange> ranges;  // dynamic-shape symbols
  std::string in_spec;                        // pytree spec of (args, kwargs), JSON text
  std::string out_spec;                       // pytree spec of the outputs, JSON text
  std::pair<int, int> schema_version{0, 0};
  std::string torch_version;
  std::vector<NamedTensor> weights;  // parameters, buffers and constants, by target name
  std::string source_json;           // the JSON it was read from, as torch's loader reads it
};

/// The schema major versions this reader understands.
inline constexpr std::pair<int, int> kSupportedSchemaMajor{5, 8};

/// Parses the JSON of a serialized ExportedProgram (models/<name>.json in a .pt2 archive, or
/// serialized_exported_program.json in older ones). `name` names the file in errors. Checks
/// the schema version and that every value a node reads is defined before it (which also
/// rules out cycles). Weights are left empty.
[[nodiscard]] ExportedProgram parse_exported_program(std::string_view json, std::string_view name);

/// Why `text` is not a symbolic size expression as torch writes them (symbols, numbers,
/// operators, the sympy functions torch uses), or "" when it is one.
[[nodiscard]] std::string expression_problem(std::string_view text);

/// Whether `text` is a value name as torch.fx writes them: an ASCII identifier.
[[nodiscard]] bool is_value_name(std::string_view text);

/// The innermost frame of a node's stack trace that is the user's code, not torch's.
struct SourceFrame {
  std::string file;  // as the trace names it (a full path, normally); "" when there is none
  std::int64_t line = 0;
  std::string code;  // the source line, stripped
};

/// The innermost frame of `trace` (a node's stack_trace) that is the user's code rather
/// than torch's or a wrapper's that forwards `(*args, **kwargs)`, or an empty frame.
[[nodiscard]] SourceFrame user_frame(const std::string& trace);

/// "file.py:12: code" (the file's base name) for user_frame(trace), or "" when there is none.
[[nodiscard]] std::string user_source_line(const std::string& trace);

/// What an error says about where it happened: "node 'conv2d' (aten.conv2d.default) in
/// features.0 (torch.nn.modules.conv.Conv2d) at model.py:12: y = self.conv(x)"; the module
/// path is "the model" for the root's own ops, and the line is left out when unknown.
[[nodiscard]] std::string describe_node(const Node& node);

/// Where a node sits: "in features.0 (torch.nn.modules.conv.Conv2d) at model.py:12: y = ...",
/// "in the model" for the root's own ops; describe_node without the node and the op.
[[nodiscard]] std::string node_location(const Node& node);

/// The numpy dtype name for a torch.export ScalarType code, or nullopt for an unknown code.
[[nodiscard]] std::optional<std::string> scalar_type_name(std::int64_t code);

}  // namespace torch2mlx
