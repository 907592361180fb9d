// The JSON form of a torch.export ExportedProgram (torch/_export/serde/schema.py), read into
// the graph IR of graph.h. The parts used:
//
//   { "schema_version": {"major": 8, "minor": 20}, "torch_version": "2.13.0",
//     "range_constraints": {"s77": {"min_val": 1, "max_val": 64}},
//     "graph_module": {
//       "graph": { "inputs": [Argument], "outputs": [Argument], "nodes": [Node],
//                  "tensor_values": {name: {"dtype": code, "sizes": [{"as_int": 3} |
//                                    {"as_expr": {"expr_str": "...", "hint": {"as_int": 2}}}]}}},
//       "signature": { "input_specs": [{"parameter": {"arg": {"name"}, "parameter_name"}} |
//                                      {"buffer": ...} | {"tensor_constant": ...} |
//                                      {"user_input": {"arg": Argument}} | ...],
//                      "output_specs": [{"user_output": {"arg": Argument}} | ...] },
//       "module_call_graph": [{"fqn": "", "signature": {"in_spec", "out_spec", ...}}] } }
//
//   Node     = {"name", "target", "inputs": [{"name", "arg": Argument, "kind": 1|2}],
//               "outputs": [Argument], "metadata": {"nn_module_stack", "stack_trace"}}
//   Argument = a one-key object: {"as_tensor": {"name"}}, {"as_int": 3}, {"as_ints": [...]},
//              {"as_sym_int": {"as_name": "s"} | {"as_int": 3}}, {"as_scalar_type": 7}, ...
//
// nn_module_stack is "key,path,type;key,path,type;..." where a path may itself hold commas
// only inside brackets, so the split takes the first and the last comma of each entry.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <iterator>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <utility>

#include "torch2mlx/error.h"
#include "torch2mlx/graph.h"

namespace torch2mlx {

const Arg* Node::input(std::string_view input_name) const {
  for (const NamedArg& named : inputs) {
    if (named.name == input_name) return &named.arg;
  }
  return nullptr;
}

namespace {

using Json = nlohmann::json;

// ScalarType codes of schema.py, as numpy dtype names.
constexpr std::pair<std::int64_t, std::string_view> kScalarTypes[] = {
    {1, "uint8"},
    {2, "int8"},
    {3, "int16"},
    {4, "int32"},
    {5, "int64"},
    {6, "float16"},
    {7, "float32"},
    {8, "float64"},
    {9, "complex32"},
    {10, "complex64"},
    {11, "complex128"},
    {12, "bool"},
    {13, "bfloat16"},
    {28, "uint16"},
    {29, "float8_e4m3fn"},
    {30, "float8_e5m2"},
    {31, "float8_e4m3fnuz"},
    {32, "float8_e5m2fnuz"},
    {33, "float8_e8m0fnu"},
    {34, "uint32"},
    {35, "uint64"},
};

// A string from the file, quoted for an error message and cut to a readable length.
std::string quoted_for_error(std::string_view text) {
  constexpr std::size_t kShown = 60;
  std::string shown(text.substr(0, kShown));
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7F) c = '?';
  }
  return fmt::format("'{}{}'", shown, text.size() > kShown ? "..." : "");
}

bool is_word_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_word_char(char c) { return is_word_start(c) || is_digit(c); }

// The functions a symbolic size may call: sympy's and torch.utils._sympy.functions', as
// torch prints them, in str() form ("Max(1, s0)") and srepr() form ("Mul(Integer(2),
// Symbol('s0', positive=True, integer=True))").
constexpr std::string_view kSizeFunctions[] = {"Abs",
                                               "Add",
                                               "And",
                                               "CeilDiv",
                                               "CeilToInt",
                                               "CleanDiv",
                                               "Eq",
                                               "Equality",
                                               "ExprCondPair",
                                               "Float",
                                               "FloatPow",
                                               "FloatTrueDiv",
                                               "FloorDiv",
                                               "FloorToInt",
                                               "Ge",
                                               "GreaterThan",
                                               "Gt",
                                               "Identity",
                                               "IntTrueDiv",
                                               "Integer",
                                               "IsNonOverlappingAndDenseIndicator",
                                               "LShift",
                                               "Le",
                                               "LessThan",
                                               "Lt",
                                               "Max",
                                               "Min",
                                               "Mod",
                                               "ModularIndexing",
                                               "Mul",
                                               "Ne",
                                               "Not",
                                               "Or",
                                               "Piecewise",
                                               "Pow",
                                               "PowByNatural",
                                               "PythonMod",
                                               "RShift",
                                               "Rational",
                                               "RoundDecimal",
                                               "RoundToInt",
                                               "StrictGreaterThan",
                                               "StrictLessThan",
                                               "Symbol",
                                               "ToFloat",
                                               "TruncToFloat",
                                               "TruncToInt",
                                               "Unequality",
                                               "Where",
                                               "ceiling",
                                               "floor",
                                               "sqrt"};

// The keyword arguments srepr() writes (assumptions of a Symbol, a Float's precision).
constexpr std::string_view kSizeKeywords[] = {"commutative", "finite",      "integer",
                                              "negative",    "nonnegative", "nonpositive",
                                              "positive",    "precision",   "real"};

template <std::size_t N>
bool listed(const std::string_view (&table)[N], std::string_view word) {
  return std::find(std::begin(table), std::end(table), word) != std::end(table);
}

// Longer expressions and deeper nesting than any real graph has are refused before sympy
// (or our own reading) could spend its time on them.
constexpr std::size_t kMaxExpressionBytes = 4096;
constexpr int kMaxExpressionDepth = 64;

}  // namespace

std::string expression_problem(std::string_view text) {
  if (text.size() > kMaxExpressionBytes)
    return fmt::format("longer than the {} bytes a size expression may take", kMaxExpressionBytes);
  int depth = 0;
  for (std::size_t at = 0; at < text.size();) {
    const char c = text[at];
    if (is_word_start(c)) {
      std::size_t end = at;
      while (end < text.size() && is_word_char(text[end])) ++end;
      const std::string_view word = text.substr(at, end - at);
      if (word.starts_with("_")) return fmt::format("whose name '{}' starts with '_'", word);
      std::size_t next = end;
      while (next < text.size() && text[next] == ' ') ++next;
      const bool called = next < text.size() && text[next] == '(';
      if (called && !word.starts_with("OpaqueUnaryFn_") && !listed(kSizeFunctions, word)) {
        return fmt::format("which calls '{}', not a sympy function torch writes", word);
      }
      const bool keyword = next < text.size() && text[next] == '=' &&
                           (next + 1 >= text.size() || text[next + 1] != '=');
      if (keyword && (depth == 0 || !listed(kSizeKeywords, word)))
        return fmt::format("which assigns '{}'", word);
      at = keyword ? next + 1 : end;
    } else if (is_digit(c)) {
      while (at < text.size() && (is_digit(text[at]) || text[at] == '.')) ++at;
      if (at < text.size() && (text[at] == 'e' || text[at] == 'E')) {
        ++at;
        if (at < text.size() && (text[at] == '+' || text[at] == '-')) ++at;
        while (at < text.size() && is_digit(text[at])) ++at;
      }
      if (at < text.size() && is_word_start(text[at])) return "where a number runs into a name";
    } else if (c == '\'') {
      // A quoted symbol name or number (srepr's Symbol('s0'), Float('0.5', precision=53)):
      // letters, digits and the marks of a number only, so it cannot close early.
      const std::size_t end = text.find('\'', at + 1);
      if (end == std::string_view::npos) return "whose quote does not close";
      const std::string_view quoted = text.substr(at + 1, end - at - 1);
      if (!std::all_of(quoted.begin(), quoted.end(),
                       [](char q) { return is_word_char(q) || q == '.' || q == '-' || q == '+'; }))
        return "which quotes something that is neither a name nor a number";
      at = end + 1;
    } else if (c == '(') {
      if (++depth > kMaxExpressionDepth)
        return fmt::format("nested deeper than {}", kMaxExpressionDepth);
      ++at;
    } else if (c == ')') {
      if (--depth < 0) return "whose parentheses do not match";
      ++at;
    } else if (c == '=' || c == '!') {
      // Only as part of ==, !=, <=, >=: never an assignment or a keyword argument.
      if (at + 1 >= text.size() || text[at + 1] != '=') return "which assigns";
      at += 2;
    } else if (std::string_view(" +-*/%<>,&|~").find(c) != std::string_view::npos) {
      if ((c == '<' || c == '>') && at + 1 < text.size() && text[at + 1] == '=') ++at;
      ++at;
    } else {
      return fmt::format(
          "which holds '{}', a character no size expression has",
          static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7F
              ? std::string("?")
              : std::string(1, c));
    }
  }
  if (depth != 0) return "whose parentheses do not match";
  return "";
}

bool is_value_name(std::string_view text) {
  return !text.empty() && is_word_start(text[0]) &&
         std::all_of(text.begin(), text.end(), is_word_char);
}

namespace {

// Reads JSON for one file and reports errors against it.
struct Reader {
  std::string_view file;
  // Where the node being read sits in the model (", in conv (Conv2d) at m.py:12: ..."), so
  // that an error in its arguments points at the user's line; empty between nodes.
  mutable std::string location;

  [[noreturn]] void bad(std::string_view what) const {
    fail("graph",
         fmt::format("{}: {}{}; re-export the model with torch.export.save", file, what, location));
  }

  const Json& field(const Json& object, const char* key, std::string_view where) const {
    if (!object.is_object() || !object.contains(key))
      bad(fmt::format("{} has no '{}'", where, key));
    return object.at(key);
  }

  std::string string(const Json& value, std::string_view where) const {
    if (!value.is_string()) bad(fmt::format("{} is not a string", where));
    return value.get<std::string>();
  }

  std::int64_t integer(const Json& value, std::string_view where) const {
    if (!value.is_number_integer()) bad(fmt::format("{} is not an integer", where));
    return value.get<std::int64_t>();
  }

  // A float; torch writes the non-finite ones as the strings "Infinity", "-Infinity", "NaN".
  double number(const Json& value, std::string_view where) const {
    if (value.is_number()) return value.get<double>();
    if (value.is_string()) {
      const std::string text = value.get<std::string>();
      if (text == "Infinity") return std::numeric_limits<double>::infinity();
      if (text == "-Infinity") return -std::numeric_limits<double>::infinity();
      if (text == "NaN") return std::numeric_limits<double>::quiet_NaN();
    }
    bad(fmt::format("{} is not a number", where));
  }

  // {"as_int": 3} or {"as_name": "sym_size_int"}.
  void sym_element(const Json& value, Arg& arg, std::string_view where) const {
    if (value.is_object() && value.contains("as_int")) {
      arg.ints.push_back(integer(value.at("as_int"), where));
      arg.names.emplace_back();
    } else if (value.is_object() && value.contains("as_name")) {
      arg.ints.push_back(0);
      arg.names.push_back(value_name(value.at("as_name"), where));
    } else {
      bad(fmt::format("{} is neither a literal nor a symbol", where));
    }
  }

  void tensor_name(const Json& value, Arg& arg, std::string_view where) const {
    arg.names.push_back(value_name(field(value, "name", where), where));
  }

  // The name of a graph value. torch.fx names every value with an identifier; anything else
  // is a crafted file, and names reach generated code.
  std::string value_name(const Json& value, std::string_view where) const {
    std::string name = string(value, where);
    if (!is_value_name(name)) {
      bad(
          fmt::format("{} names a value {}, which is not an identifier as torch.fx writes "
                      "them",
                      where, quoted_for_error(name)));
    }
    return name;
  }

  // A symbolic size as torch writes it (sympy's str of an expression over the shape
  // symbols). torch's own loader hands these strings to sympy.sympify, which evaluates them
  // as Python: only symbols, numbers, operators and calls of the sympy functions torch
  // uses may pass, never a quote, an attribute, a subscript or another call.
  void check_expression(const std::string& text, std::string_view where) const {
    if (const std::string problem = expression_problem(text); !problem.empty()) {
      bad(fmt::format("{} has the size expression {}, {}", where, quoted_for_error(text), problem));
    }
  }

  Arg argument(const Json& value, std::string_view where) const {
    if (!value.is_object() || value.size() != 1) bad(fmt::format("{} is not an argument", where));
    // value.begin(), not items().begin(): the items() proxy is a temporary.
    const auto entry = value.begin();
    const std::string& kind = entry.key();
    const Json& body = entry.value();
    Arg arg;
    if (kind == "as_none") {
      arg.kind = ArgKind::None;
    } else if (kind == "as_tensor") {
      arg.kind = ArgKind::Tensor;
      tensor_name(body, arg, where);
    } else if (kind == "as_tensors") {
      arg.kind = ArgKind::TensorList;
      if (!body.is_array()) bad(fmt::format("{} is not a list", where));
      for (const Json& item : body) tensor_name(item, arg, where);
    } else if (kind == "as_optional_tensors") {
      arg.kind = ArgKind::TensorList;
      if (!body.is_array()) bad(fmt::format("{} is not a list", where));
      for (const Json& item : body) {
        if (item.contains("as_tensor")) {
          tensor_name(item.at("as_tensor"), arg, where);
        } else {
          arg.names.emplace_back();
        }
      }
    } else if (kind == "as_optional_tensor") {
      if (body.contains("as_tensor")) {
        arg.kind = ArgKind::Tensor;
        tensor_name(body.at("as_tensor"), arg, where);
      }
    } else if (kind == "as_int") {
      arg.kind = ArgKind::Int;
      arg.ints.push_back(integer(body, where));
      arg.names.emplace_back();
    } else if (kind == "as_sym_int") {
      arg.kind = ArgKind::Int;
      sym_element(body, arg, where);
    } else if (kind == "as_ints" || kind == "as_sym_ints") {
      arg.kind = ArgKind::IntList;
      if (!body.is_array()) bad(fmt::format("{} is not a list", where));
      for (const Json& item : body) {
        if (kind == "as_ints") {
          arg.ints.push_back(integer(item, where));
          arg.names.emplace_back();
        } else {
          sym_element(item, arg, where);
        }
      }
    } else if (kind == "as_float") {
      arg.kind = ArgKind::Float;
      arg.floats.push_back(number(body, where));
    } else if (kind == "as_sym_float") {
      arg.kind = ArgKind::Float;
      if (body.contains("as_float")) {
        arg.floats.push_back(number(body.at("as_float"), where));
        arg.names.emplace_back();
      } else {
        arg.floats.push_back(0.0);
        arg.names.push_back(value_name(field(body, "as_name", where), where));
      }
    } else if (kind == "as_floats") {
      arg.kind = ArgKind::FloatList;
      if (!body.is_array()) bad(fmt::format("{} is not a list", where));
      for (const Json& item : body) arg.floats.push_back(number(item, where));
    } else if (kind == "as_bool") {
      arg.kind = ArgKind::Bool;
      if (!body.is_boolean()) bad(fmt::format("{} is not a bool", where));
      arg.ints.push_back(body.get<bool>() ? 1 : 0);
      arg.names.emplace_back();
    } else if (kind == "as_sym_bool") {
      arg.kind = ArgKind::Bool;
      if (body.contains("as_bool")) {
        arg.ints.push_back(body.at("as_bool").get<bool>() ? 1 : 0);
        arg.names.emplace_back();
      } else {
        arg.ints.push_back(0);
        arg.names.push_back(value_name(field(body, "as_name", where), where));
      }
    } else if (kind == "as_bools") {
      arg.kind = ArgKind::BoolList;
      if (!body.is_array()) bad(fmt::format("{} is not a list", where));
      for (const Json& item : body) {
        if (!item.is_boolean()) bad(fmt::format("{} holds a non-bool", where));
        arg.ints.push_back(item.get<bool>() ? 1 : 0);
      }
    } else if (kind == "as_string") {
      arg.kind = ArgKind::String;
      arg.strings.push_back(string(body, where));
    } else if (kind == "as_strings") {
      arg.kind = ArgKind::StringList;
      if (!body.is_array()) bad(fmt::format("{} is not a list", where));
      for (const Json& item : body) arg.strings.push_back(string(item, where));
    } else if (kind == "as_scalar_type") {
      arg.kind = ArgKind::ScalarType;
      const std::int64_t code = integer(body, where);
      const auto name = scalar_type_name(code);
      if (!name) bad(fmt::format("{} has unknown scalar type code {}", where, code));
      arg.strings.push_back(*name);
    } else if (kind == "as_memory_format") {
      arg.kind = ArgKind::MemoryFormat;
      arg.ints.push_back(integer(body, where));
    } else if (kind == "as_layout") {
      arg.kind = ArgKind::Layout;
      arg.ints.push_back(integer(body, where));
    } else if (kind == "as_device") {
      arg.kind = ArgKind::Device;
      arg.strings.push_back(string(field(body, "type", where), where));
    } else {
      // Subgraphs (torch.cond, map), custom objects, operators, complex scalars: kept as a
      // marker so the analyzer and the code generator can name the node that uses them.
      arg.kind = ArgKind::Unsupported;
      arg.strings.emplace_back(kind);
    }
    return arg;
  }

  std::vector<ModuleFrame> module_stack(const std::string& text) const {
    std::vector<ModuleFrame> frames;
    std::size_t start = 0;
    while (start < text.size()) {
      // Entries are separated by ';' outside brackets (a path like "layers[0]" has none, but
      // a type name never holds ';').
      std::size_t end = text.find(';', start);
      if (end == std::string::npos) end = text.size();
      const std::string entry = text.substr(start, end - start);
      start = end + 1;
      const std::size_t first = entry.find(',');
      const std::size_t last = entry.rfind(',');
      if (first == std::string::npos || first == last) {
        bad(fmt::format("nn_module_stack entry '{}' is not 'key,path,type'", entry));
      }
      ModuleFrame frame{entry.substr(0, first), entry.substr(first + 1, last - first - 1),
                        entry.substr(last + 1)};
      // The root module has an empty path (the generated class stands for it); export marks
      // nodes it made up itself with a placeholder entry.
      if (!frame.path.empty() && !frame.key.starts_with("_empty_nn_module_stack")) {
        frames.push_back(std::move(frame));
      }
    }
    return frames;
  }

  Node node(const Json& value, std::size_t index) const {
    const std::string where = fmt::format("node {}", index);
    Node result;
    result.target = string(field(value, "target", where), where);
    constexpr std::string_view kPrefix = "torch.ops.";
    if (result.target.starts_with(kPrefix)) result.target.erase(0, kPrefix.size());
    if (value.contains("name") && value.at("name").is_string()) {
      result.name = value_name(value.at("name"), where);
    } else {
      result.name = fmt::format("node_{}", index);
    }
    // The metadata first: an error in the arguments below then names the module and line.
    if (value.contains("metadata") && value.at("metadata").is_object()) {
      const Json& metadata = value.at("metadata");
      if (metadata.contains("nn_module_stack") && metadata.at("nn_module_stack").is_string()) {
        result.module_stack = module_stack(metadata.at("nn_module_stack").get<std::string>());
      }
      if (metadata.contains("stack_trace") && metadata.at("stack_trace").is_string()) {
        result.stack_trace = metadata.at("stack_trace").get<std::string>();
      }
    }
    if (!result.module_stack.empty() || !user_source_line(result.stack_trace).empty()) {
      location = ", " + node_location(result);
    }
    const std::string here = fmt::format("node '{}' ({})", result.name, result.target);
    const Json& inputs = field(value, "inputs", here);
    if (!inputs.is_array()) bad(fmt::format("{} inputs are not a list", here));
    for (const Json& input : inputs) {
      NamedArg named;
      named.name = string(field(input, "name", here), here);
      named.arg =
          argument(field(input, "arg", here), fmt::format("{} input '{}'", here, named.name));
      named.keyword = input.contains("kind") && input.at("kind").is_number_integer() &&
                      input.at("kind").get<int>() == 2;
      result.inputs.push_back(std::move(named));
    }
    const Json& outputs = field(value, "outputs", here);
    if (!outputs.is_array()) bad(fmt::format("{} outputs are not a list", here));
    for (const Json& output : outputs) result.outputs.push_back(argument(output, here + " output"));
    location.clear();
    return result;
  }

  TensorMeta tensor_meta(const std::string& name, const Json& value) const {
    const std::string where = fmt::format("tensor '{}'", name);
    TensorMeta meta;
    const std::int64_t code = integer(field(value, "dtype", where), where);
    const auto dtype = scalar_type_name(code);
    if (!dtype) bad(fmt::format("{} has unknown scalar type code {}", where, code));
    meta.dtype = *dtype;
    const Json& sizes = field(value, "sizes", where);
    if (!sizes.is_array()) bad(where + " sizes are not a list");
    for (const Json& size : sizes) {
      Dim dim;
      if (size.contains("as_int")) {
        dim.hint = integer(size.at("as_int"), where);
      } else if (size.contains("as_expr")) {
        const Json& expr = size.at("as_expr");
        dim.symbol = string(field(expr, "expr_str", where), where);
        check_expression(dim.symbol, where);
        // sympy's repr of a plain symbol: Symbol('s77', positive=True, integer=True).
        if (dim.symbol.starts_with("Symbol('")) {
          dim.symbol = dim.symbol.substr(8, dim.symbol.find('\'', 8) - 8);
        }
        if (expr.contains("hint") && expr.at("hint").is_object() &&
            expr.at("hint").contains("as_int")) {
          dim.hint = integer(expr.at("hint").at("as_int"), where);
        }
      } else {
        bad(where + " has a size that is neither an int nor an expression");
      }
      meta.shape.push_back(std::move(dim));
    }
    return meta;
  }

  // One entry of signature.input_specs.
  InputSpec input_spec(const Json& value, std::size_t index) const {
    const std::string where = fmt::format("input spec {}", index);
    if (!value.is_object() || value.size() != 1) bad(where + " is not a one-key object");
    // value.begin(), not items().begin(): the items() proxy is a temporary.
    const auto entry = value.begin();
    const std::string& kind = entry.key();
    const Json& body = entry.value();
    InputSpec spec;
    if (kind == "constant_input") {
      spec.kind = InputKind::UserInput;
      spec.constant = true;
      spec.name = value_name(field(body, "name", where), where);
      spec.value = argument(field(body, "value", where), where);
      return spec;
    }
    if (kind == "user_input") {
      spec.kind = InputKind::UserInput;
      spec.value = argument(field(body, "arg", where), where);
      if (!spec.value.names.empty()) spec.name = spec.value.names[0];
      return spec;
    }
    static const std::pair<const char*, std::pair<InputKind, const char*>> kKinds[] = {
        {"parameter", {InputKind::Parameter, "parameter_name"}},
        {"buffer", {InputKind::Buffer, "buffer_name"}},
        {"tensor_constant", {InputKind::Constant, "tensor_constant_name"}},
        {"custom_obj", {InputKind::CustomObject, "custom_obj_name"}},
        {"token", {InputKind::Token, nullptr}},
    };
    for (const auto& [key, info] : kKinds) {
      if (kind != key) continue;
      spec.kind = info.first;
      if (body.contains("arg") && body.at("arg").contains("name")) {
        spec.name = value_name(body.at("arg").at("name"), where);
      } else if (body.contains("name")) {
        spec.name = value_name(body.at("name"), where);
      }
      spec.value.kind = ArgKind::Tensor;
      spec.value.names.push_back(spec.name);
      if (info.second != nullptr) spec.target = string(field(body, info.second, where), where);
      if (body.contains("persistent") && body.at("persistent").is_boolean()) {
        spec.persistent = body.at("persistent").get<bool>();
      }
      return spec;
    }
    bad(fmt::format("{} has unknown kind '{}'", where, kind));
  }

  OutputSpec output_spec(const Json& value, std::size_t index) const {
    const std::string where = fmt::format("output spec {}", index);
    if (!value.is_object() || value.size() != 1) bad(where + " is not a one-key object");
    // value.begin(), not items().begin(): the items() proxy is a temporary.
    const auto entry = value.begin();
    const std::string& kind = entry.key();
    const Json& body = entry.value();
    static const std::pair<const char*, std::pair<OutputKind, const char*>> kKinds[] = {
        {"user_output", {OutputKind::UserOutput, nullptr}},
        {"buffer_mutation", {OutputKind::BufferMutation, "buffer_name"}},
        {"user_input_mutation", {OutputKind::UserInputMutation, "user_input_name"}},
        {"parameter_mutation", {OutputKind::ParameterMutation, "parameter_name"}},
        {"token", {OutputKind::Token, nullptr}},
    };
    OutputSpec spec;
    spec.kind = OutputKind::Other;
    for (const auto& [key, info] : kKinds) {
      if (kind == key) {
        spec.kind = info.first;
        if (info.second != nullptr) spec.target = string(field(body, info.second, where), where);
      }
    }
    const Json& arg = field(body, "arg", where);
    if (arg.is_object() && arg.size() == 1 && arg.begin().key().starts_with("as_")) {
      spec.value = argument(arg, where);
    } else if (arg.contains("name")) {
      spec.value.kind = ArgKind::Tensor;
      spec.value.names.push_back(value_name(arg.at("name"), where));
    }
    return spec;
  }
};

// Every "expr_str" anywhere in the document (tensor sizes, symbolic int, float and bool
// values, whatever a newer schema adds): torch's loader evaluates each with sympy, so one
// that is not a plain size expression is refused even where this reader does not use it.
// The walk keeps its own stack: no recursion, however deep the file nests.
void check_every_expression(const Json& root, const Reader& reader) {
  constexpr std::size_t kMaxDepth = 512;
  std::vector<std::pair<const Json*, std::size_t>> pending{{&root, 0}};
  while (!pending.empty()) {
    const auto [value, depth] = pending.back();
    pending.pop_back();
    if (depth > kMaxDepth) reader.bad(fmt::format("the JSON nests deeper than {}", kMaxDepth));
    if (value->is_object()) {
      for (auto item = value->begin(); item != value->end(); ++item) {
        if (item.key() == "expr_str") {
          if (!item.value().is_string()) reader.bad("an expr_str is not a string");
          reader.check_expression(item.value().get<std::string>(), "a symbolic value");
        } else if (item.value().is_structured()) {
          pending.emplace_back(&item.value(), depth + 1);
        }
      }
    } else if (value->is_array()) {
      for (const Json& item : *value) {
        if (item.is_structured()) pending.emplace_back(&item, depth + 1);
      }
    }
  }
}

// Every value a node reads must be a graph input or the output of an earlier node: this
// rejects references to missing tensors and, since nodes are in order, cycles.
void check_defined_before_use(const ExportedProgram& program, const Reader& reader) {
  std::set<std::string> defined;
  for (const InputSpec& input : program.inputs) {
    if (!input.name.empty()) defined.insert(input.name);
  }
  const auto define = [&](const Arg& arg) {
    for (const std::string& name : arg.names) {
      if (!name.empty()) defined.insert(name);
    }
  };
  const auto check = [&](const Arg& arg, std::string_view where) {
    for (const std::string& name : arg.names) {
      if (!name.empty() && !defined.contains(name)) {
        reader.bad(
            fmt::format("{} reads '{}', which no input or earlier node defines (a "
                        "missing tensor or a cycle)",
                        where, name));
      }
    }
  };
  for (const Node& node : program.nodes) {
    for (const NamedArg& input : node.inputs) {
      check(input.arg, fmt::format("node '{}' ({})", node.name, node.target));
    }
    for (const Arg& output : node.outputs) {
      for (const std::string& name : output.names) {
        if (!name.empty() && defined.contains(name)) {
          reader.bad(fmt::format("node '{}' redefines value '{}'", node.name, name));
        }
      }
      define(output);
    }
  }
  for (const OutputSpec& output : program.outputs) check(output.value, "the graph output");
}

bool forwards_all_arguments(std::string_view code) {
  return code.find("*args, **kwargs)") != std::string_view::npos;
}

}  // namespace

SourceFrame user_frame(const std::string& trace) {
  SourceFrame result;
  SourceFrame pending;
  std::istringstream lines(trace);
  std::string line;
  while (std::getline(lines, line)) {
    const std::size_t file = line.find("File \"");
    if (file != std::string::npos) {
      const std::size_t end = line.find('"', file + 6);
      const std::string path = line.substr(file + 6, end - file - 6);
      const std::size_t number = line.find("line ", end);
      const std::size_t comma = line.find(',', number);
      pending = {};
      if (path.find("/torch/") != std::string::npos || number == std::string::npos) continue;
      const std::string digits = line.substr(number + 5, comma - number - 5);
      std::int64_t value = 0;
      if (std::from_chars(digits.data(), digits.data() + digits.size(), value).ec != std::errc{}) {
        continue;
      }
      pending.file = path;
      pending.line = value;
    } else if (!pending.file.empty()) {
      const std::size_t code = line.find_first_not_of(' ');
      // A frame that passes everything on (`return func(*args, **kwargs)`: a decorator
      // or hub-kernel wrapper) says nothing about the model: the frame that called it does.
      if (code != std::string::npos && !forwards_all_arguments(line)) {
        result = pending;
        result.code = line.substr(code);
      }
      pending = {};
    }
  }
  return result;
}

std::string user_source_line(const std::string& trace) {
  const SourceFrame frame = user_frame(trace);
  if (frame.file.empty()) return "";
  const std::size_t slash = frame.file.rfind('/');
  return fmt::format("{}:{}: {}", frame.file.substr(slash == std::string::npos ? 0 : slash + 1),
                     frame.line, frame.code);
}

std::string node_location(const Node& node) {
  const std::string where =
      node.module_stack.empty()
          ? std::string("the model")
          : fmt::format("{} ({})", node.module_stack.back().path, node.module_stack.back().type);
  const std::string line = user_source_line(node.stack_trace);
  return fmt::format("in {}{}", where, line.empty() ? "" : " at " + line);
}

std::string describe_node(const Node& node) {
  return fmt::format("node '{}' ({}) {}", node.name, node.target, node_location(node));
}

std::optional<std::string> scalar_type_name(std::int64_t code) {
  for (const auto& [known, name] : kScalarTypes) {
    if (known == code) return std::string(name);
  }
  return std::nullopt;
}

ExportedProgram parse_exported_program(std::string_view json, std::string_view name) {
  const Reader reader{name, {}};
  Json root;
  try {
    root = Json::parse(json);
  } catch (const Json::exception& error) {
    reader.bad(fmt::format("not valid JSON ({})", error.what()));
  }
  check_every_expression(root, reader);
  ExportedProgram program;
  program.source_json = std::string(json);
  if (root.contains("schema_version") && root.at("schema_version").is_object()) {
    const Json& version = root.at("schema_version");
    program.schema_version = {
        static_cast<int>(reader.integer(reader.field(version, "major", "schema_version"), "major")),
        static_cast<int>(
            reader.integer(reader.field(version, "minor", "schema_version"), "minor"))};
  }
  const auto [major, minor] = program.schema_version;
  if (major < kSupportedSchemaMajor.first || major > kSupportedSchemaMajor.second) {
    fail("graph", fmt::format("{}: schema version {}.{} is not supported; this reader supports "
                              "major versions {} to {} (torch 2.1 to 2.13): export the model "
                              "again with a torch in that range",
                              name, major, minor, kSupportedSchemaMajor.first,
                              kSupportedSchemaMajor.second));
  }
  if (root.contains("torch_version") && root.at("torch_version").is_string()) {
    program.torch_version = root.at("torch_version").get<std::string>();
  }
  if (root.contains("range_constraints") && root.at("range_constraints").is_object()) {
    for (const auto& [symbol, range] : root.at("range_constraints").items()) {
      reader.check_expression(symbol, "range_constraints");
      SymbolRange bounds;
      if (range.contains("min_val") && range.at("min_val").is_number_integer()) {
        bounds.min = range.at("min_val").get<std::int64_t>();
      }
      if (range.contains("max_val") && range.at("max_val").is_number_integer()) {
        bounds.max = range.at("max_val").get<std::int64_t>();
      }
      program.ranges.emplace(symbol, bounds);
    }
  }
  const Json& module = reader.field(root, "graph_module", "the program");
  const Json& graph = reader.field(module, "graph", "graph_module");
  const Json& nodes = reader.field(graph, "nodes", "graph");
  if (!nodes.is_array()) reader.bad("graph.nodes is not a list");
  program.nodes.reserve(nodes.size());
  for (std::size_t index = 0; index < nodes.size(); ++index) {
    program.nodes.push_back(reader.node(nodes[index], index));
  }
  if (graph.contains("tensor_values") && graph.at("tensor_values").is_object()) {
    for (const auto& [value, meta] : graph.at("tensor_values").items()) {
      if (!is_value_name(value)) {
        reader.bad(
            fmt::format("tensor_values names a value {}, which is not an identifier as "
                        "torch.fx writes them",
                        quoted_for_error(value)));
      }
      program.tensors.emplace(value, reader.tensor_meta(value, meta));
    }
  }
  const Json& signature = reader.field(module, "signature", "graph_module");
  const Json& input_specs = reader.field(signature, "input_specs", "signature");
  const Json& output_specs = reader.field(signature, "output_specs", "signature");
  if (!input_specs.is_array() || !output_specs.is_array())
    reader.bad("signature specs are not lists");
  for (std::size_t index = 0; index < input_specs.size(); ++index) {
    program.inputs.push_back(reader.input_spec(input_specs[index], index));
  }
  for (std::size_t index = 0; index < output_specs.size(); ++index) {
    program.outputs.push_back(reader.output_spec(output_specs[index], index));
  }
  if (module.contains("module_call_graph") && module.at("module_call_graph").is_array()) {
    for (const Json& entry : module.at("module_call_graph")) {
      if (entry.contains("fqn") && entry.at("fqn").is_string() &&
          entry.at("fqn").get<std::string>().empty() && entry.contains("signature") &&
          entry.at("signature").is_object()) {
        const Json& call = entry.at("signature");
        if (call.contains("in_spec") && call.at("in_spec").is_string()) {
          program.in_spec = call.at("in_spec").get<std::string>();
        }
        if (call.contains("out_spec") && call.at("out_spec").is_string()) {
          program.out_spec = call.at("out_spec").get<std::string>();
        }
      }
    }
  }
  check_defined_before_use(program, reader);
  return program;
}

}  // namespace torch2mlx
