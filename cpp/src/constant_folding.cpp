// Constant folding: nodes whose every input is known when model.py is generated (literal
// arguments, small constants that export lifted out of forward, fills and ranges of static
// size, sizes that are static) are evaluated here, so that model.py does not compute at
// run time what is known before. What can be folded is two tables: scalar ops on sizes and
// elementwise ops on tensors, each with its folding function. A folded value that a
// run-time node reads is written as one creation op (a fill, or a short literal array);
// the nodes that computed it are then dead, and the dead-code pass removes them. A constant
// that an op's identity (`x & True`, `x + 0`, `x * 1` with a constant tensor) leaves the
// other operand unchanged is dropped. Half-precision values are not folded: their rounding
// would have to be emulated op by op.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pass_util.h"
#include "torch2mlx/passes.h"
#include "torch2mlx/tensor.h"

namespace torch2mlx {
namespace {

using pass_util::DefUse;
using pass_util::literal_int;
using pass_util::literal_number;
using pass_util::meta_of;
using pass_util::tensor_input;

// Values evaluated per constant at most: folding is for masks, positions and small tables,
// not for computing weights.
constexpr std::int64_t kMaxElements = 4096;
// Values written into model.py as a literal array at most; a longer non-uniform constant is
// left to be computed at run time.
constexpr std::int64_t kMaxLiteral = 16;

// A value known before run time, element by element in row-major order. Doubles hold every
// value of the dtypes folded exactly (integers up to 2**53, float32, bool as 0/1).
struct Constant {
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::vector<double> values;

  [[nodiscard]] bool uniform() const {
    return !values.empty() && std::all_of(values.begin(), values.end(),
                                          [&](double value) { return value == values[0]; });
  }
};

constexpr std::string_view kIntegerDtypes[] = {"int8", "int16", "int32", "int64", "uint8"};

bool is_integer(std::string_view dtype) {
  return std::find(std::begin(kIntegerDtypes), std::end(kIntegerDtypes), dtype) !=
         std::end(kIntegerDtypes);
}

bool foldable_dtype(std::string_view dtype) {
  return dtype == "bool" || dtype == "float32" || dtype == "float64" || is_integer(dtype);
}

// A value as the dtype stores it: float32 rounded, integers truncated toward zero as
// torch casts, bools 0 or 1; nullopt when it does not fit (an integer overflow).
std::optional<double> stored_as(std::string_view dtype, double value) {
  if (dtype == "bool") return value != 0.0 ? 1.0 : 0.0;
  if (dtype == "float32") return static_cast<double>(static_cast<float>(value));
  if (dtype == "float64") return value;
  if (!std::isfinite(value) || std::abs(value) > 9007199254740992.0) return std::nullopt;
  const double truncated = std::trunc(value);
  if (dtype == "uint8")
    return truncated >= 0 && truncated < 256 ? std::optional(truncated) : std::nullopt;
  const int bits = dtype == "int8" ? 8 : dtype == "int16" ? 16 : dtype == "int32" ? 32 : 64;
  const double limit = std::ldexp(1.0, bits - 1);
  return truncated >= -limit && truncated < limit ? std::optional(truncated) : std::nullopt;
}

// The static shape of a value, or nullopt when a dim is symbolic or it is too large.
std::optional<std::vector<std::int64_t>> static_shape(const ExportedProgram& program,
                                                      const std::string& value) {
  const TensorMeta* meta = meta_of(program, value);
  if (meta == nullptr || !foldable_dtype(meta->dtype)) return std::nullopt;
  std::vector<std::int64_t> shape;
  std::int64_t count = 1;
  for (const Dim& dim : meta->shape) {
    if (!dim.symbol.empty() || dim.hint < 0) return std::nullopt;
    shape.push_back(dim.hint);
    count *= dim.hint;
    if (count > kMaxElements) return std::nullopt;
  }
  return shape;
}

std::int64_t element_count(const std::vector<std::int64_t>& shape) {
  std::int64_t count = 1;
  for (const std::int64_t size : shape) count *= size;
  return count;
}

std::string output_of(const Node& node) {
  return node.outputs.size() == 1 && node.outputs[0].kind == ArgKind::Tensor &&
                 !node.outputs[0].names.empty()
             ? node.outputs[0].names[0]
             : std::string();
}

// What folding knows: constant tensors and scalar sizes, by value name.
struct Known {
  std::map<std::string, Constant> tensors;
  std::map<std::string, std::int64_t> sizes;
};

// A tensor operand: a known tensor, or a literal number as a 0-d constant.
std::optional<Constant> operand(const Known& known, const Node& node, std::string_view name) {
  const Arg* arg = node.input(name);
  if (arg == nullptr) return std::nullopt;
  if (arg->kind == ArgKind::Tensor) {
    const auto found = arg->names.empty() ? known.tensors.end() : known.tensors.find(arg->names[0]);
    return found == known.tensors.end() ? std::nullopt : std::optional(found->second);
  }
  const auto number = literal_number(node, name);
  if (!number) return std::nullopt;
  const std::string dtype = arg->kind == ArgKind::Float  ? "float64"
                            : arg->kind == ArgKind::Bool ? "bool"
                                                         : "int64";
  return Constant{dtype, {}, {*number}};
}

// Elementwise over operands broadcast to `shape`, numpy's rule: trailing dims align, a dim
// of 1 repeats.
std::vector<double> broadcast_apply(const std::vector<const Constant*>& inputs,
                                    const std::vector<std::int64_t>& shape,
                                    const std::function<double(const std::vector<double>&)>& f) {
  const std::int64_t count = element_count(shape);
  std::vector<double> out(static_cast<std::size_t>(count));
  std::vector<double> arguments(inputs.size());
  for (std::int64_t flat = 0; flat < count; ++flat) {
    for (std::size_t input = 0; input < inputs.size(); ++input) {
      const auto& in_shape = inputs[input]->shape;
      std::int64_t remainder = flat;
      std::int64_t index = 0;
      std::int64_t stride = 1;
      for (std::size_t axis = shape.size(); axis-- > 0;) {
        const std::int64_t coordinate = remainder % shape[axis];
        remainder /= shape[axis];
        const std::size_t offset = shape.size() - axis;
        if (offset > in_shape.size()) continue;
        const std::int64_t size = in_shape[in_shape.size() - offset];
        index += (size == 1 ? 0 : coordinate) * stride;
        stride *= size;
      }
      arguments[input] = inputs[input]->values[static_cast<std::size_t>(index)];
    }
    out[static_cast<std::size_t>(flat)] = f(arguments);
  }
  return out;
}

// --- The tables.

using Unary = double (*)(double);
using Binary = double (*)(double, double);

struct UnaryFold {
  std::string_view target;
  Unary apply;
};

struct BinaryFold {
  std::string_view target;
  Binary apply;
};

double identity(double value) { return value; }

constexpr UnaryFold kUnaryFolds[] = {
    {"aten.neg.default", [](double x) { return -x; }},
    {"aten.abs.default", [](double x) { return std::abs(x); }},
    {"aten.sqrt.default", [](double x) { return std::sqrt(x); }},
    {"aten.rsqrt.default", [](double x) { return 1.0 / std::sqrt(x); }},
    {"aten.reciprocal.default", [](double x) { return 1.0 / x; }},
    {"aten.exp.default", [](double x) { return std::exp(x); }},
    {"aten.log.default", [](double x) { return std::log(x); }},
    {"aten.sin.default", [](double x) { return std::sin(x); }},
    {"aten.cos.default", [](double x) { return std::cos(x); }},
    {"aten.logical_not.default", [](double x) { return x == 0.0 ? 1.0 : 0.0; }},
    // Values unchanged, in the output's dtype and shape (casts, views, copies).
    {"aten._to_copy.default", identity},
    {"aten.to.dtype", identity},
    {"aten.to.dtype_layout", identity},
    {"aten.clone.default", identity},
    {"aten.alias.default", identity},
    {"aten.detach.default", identity},
    {"aten.detach_.default", identity},
    {"aten.lift_fresh_copy.default", identity},
    {"aten.unsqueeze.default", identity},
    {"aten.squeeze.dim", identity},
    {"aten.squeeze.dims", identity},
    {"aten.view.default", identity},
    {"aten.reshape.default", identity},
    {"aten._unsafe_view.default", identity},
    {"aten.flatten.using_ints", identity},
    // Broadcast to the output's shape: broadcast_apply repeats the input.
    {"aten.expand.default", identity},
};

double compare(bool holds) { return holds ? 1.0 : 0.0; }

constexpr BinaryFold kBinaryFolds[] = {
    {"aten.add.Tensor", [](double a, double b) { return a + b; }},
    {"aten.sub.Tensor", [](double a, double b) { return a - b; }},
    {"aten.mul.Tensor", [](double a, double b) { return a * b; }},
    {"aten.div.Tensor", [](double a, double b) { return a / b; }},
    {"aten.pow.Tensor_Scalar", [](double a, double b) { return std::pow(a, b); }},
    {"aten.pow.Tensor_Tensor", [](double a, double b) { return std::pow(a, b); }},
    {"aten.maximum.default", [](double a, double b) { return std::max(a, b); }},
    {"aten.minimum.default", [](double a, double b) { return std::min(a, b); }},
    {"aten.eq.Tensor", [](double a, double b) { return compare(a == b); }},
    {"aten.eq.Scalar", [](double a, double b) { return compare(a == b); }},
    {"aten.ne.Tensor", [](double a, double b) { return compare(a != b); }},
    {"aten.ne.Scalar", [](double a, double b) { return compare(a != b); }},
    {"aten.lt.Tensor", [](double a, double b) { return compare(a < b); }},
    {"aten.lt.Scalar", [](double a, double b) { return compare(a < b); }},
    {"aten.le.Tensor", [](double a, double b) { return compare(a <= b); }},
    {"aten.le.Scalar", [](double a, double b) { return compare(a <= b); }},
    {"aten.gt.Tensor", [](double a, double b) { return compare(a > b); }},
    {"aten.gt.Scalar", [](double a, double b) { return compare(a > b); }},
    {"aten.ge.Tensor", [](double a, double b) { return compare(a >= b); }},
    {"aten.ge.Scalar", [](double a, double b) { return compare(a >= b); }},
    {"aten.logical_and.default", [](double a, double b) { return compare(a != 0 && b != 0); }},
    {"aten.logical_or.default", [](double a, double b) { return compare(a != 0 || b != 0); }},
};

// Bitwise ops fold on bools only, where they are logical ones.
constexpr BinaryFold kBoolFolds[] = {
    {"aten.bitwise_and.Tensor", [](double a, double b) { return compare(a != 0 && b != 0); }},
    {"aten.bitwise_or.Tensor", [](double a, double b) { return compare(a != 0 || b != 0); }},
    {"aten.__and__.Tensor", [](double a, double b) { return compare(a != 0 && b != 0); }},
    {"aten.__or__.Tensor", [](double a, double b) { return compare(a != 0 || b != 0); }},
};

// Scalar ops on sizes (the Python ints of symbolic shapes), Python's semantics.
struct SizeFold {
  std::string_view target;
  std::optional<std::int64_t> (*apply)(std::int64_t, std::int64_t);
};

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
  const std::int64_t quotient = a / b;
  return (a % b != 0 && ((a < 0) != (b < 0))) ? quotient - 1 : quotient;
}

constexpr SizeFold kSizeFolds[] = {
    {"_operator.add", [](std::int64_t a, std::int64_t b) { return std::optional(a + b); }},
    {"_operator.sub", [](std::int64_t a, std::int64_t b) { return std::optional(a - b); }},
    {"_operator.mul", [](std::int64_t a, std::int64_t b) { return std::optional(a * b); }},
    {"_operator.floordiv",
     [](std::int64_t a, std::int64_t b) {
       return b == 0 ? std::nullopt : std::optional(floor_div(a, b));
     }},
    {"_operator.mod",
     [](std::int64_t a, std::int64_t b) {
       return b == 0 ? std::nullopt : std::optional(a - b * floor_div(a, b));
     }},
};

// Creation ops whose arguments are all literal: their values from the output's shape.
std::optional<double> fill_of(const Node& node) {
  const std::string& target = node.target;
  if (target == "aten.zeros.default" || target == "aten.new_zeros.default" ||
      target == "aten.zeros_like.default") {
    return 0.0;
  }
  if (target == "aten.ones.default" || target == "aten.new_ones.default" ||
      target == "aten.ones_like.default") {
    return 1.0;
  }
  if (target == "aten.full.default" || target == "aten.new_full.default" ||
      target == "aten.full_like.default") {
    return literal_number(node, "fill_value");
  }
  if (target == "aten.scalar_tensor.default") return literal_number(node, "s");
  return std::nullopt;
}

bool is_creation(const Node& node) {
  return node.target.starts_with("aten.arange.") || fill_of(node).has_value();
}

std::optional<Constant> created(const Node& node, const std::vector<std::int64_t>& shape,
                                const std::string& dtype) {
  if (const auto fill = fill_of(node)) {
    const auto value = stored_as(dtype, *fill);
    if (!value) return std::nullopt;
    return Constant{dtype, shape,
                    std::vector<double>(static_cast<std::size_t>(element_count(shape)), *value)};
  }
  if (!node.target.starts_with("aten.arange.") || shape.size() != 1) return std::nullopt;
  // torch computes each element as start + i * step (in double for the range).
  const auto start =
      node.input("start") == nullptr ? std::optional(0.0) : literal_number(node, "start");
  const auto step =
      node.input("step") == nullptr ? std::optional(1.0) : literal_number(node, "step");
  if (!start || !step || !literal_number(node, "end")) return std::nullopt;
  Constant result{dtype, shape, {}};
  for (std::int64_t index = 0; index < shape[0]; ++index) {
    const auto value = stored_as(dtype, *start + static_cast<double>(index) * *step);
    if (!value) return std::nullopt;
    result.values.push_back(*value);
  }
  return result;
}

// A constant export lifted out of forward (`torch.tensor([...])` in a model's code).
std::optional<Constant> lifted(const ExportedProgram& program, const InputSpec& input) {
  if (input.kind != InputKind::Constant) return std::nullopt;
  const auto shape = static_shape(program, input.name);
  const auto weight =
      std::find_if(program.weights.begin(), program.weights.end(),
                   [&](const NamedTensor& named) { return named.name == input.target; });
  if (!shape || weight == program.weights.end() || weight->tensor.storage == nullptr) {
    return std::nullopt;
  }
  const Tensor& tensor = weight->tensor;
  std::vector<std::byte> bytes(tensor.nbytes());
  copy_contiguous(tensor, bytes.data());
  Constant result{std::string(dtype_name(tensor.dtype)), *shape, {}};
  const auto read = [&]<typename T>(T /*tag*/) {
    for (std::size_t offset = 0; offset + sizeof(T) <= bytes.size(); offset += sizeof(T)) {
      T value;
      std::memcpy(&value, bytes.data() + offset, sizeof(T));
      result.values.push_back(static_cast<double>(value));
    }
  };
  switch (tensor.dtype) {
    case DType::F32:
      read(float{});
      break;
    case DType::F64:
      read(double{});
      break;
    case DType::I64:
      read(std::int64_t{});
      break;
    case DType::I32:
      read(std::int32_t{});
      break;
    case DType::Bool:
      read(std::uint8_t{});
      break;
    default:
      return std::nullopt;
  }
  if (result.values.size() != static_cast<std::size_t>(element_count(*shape)) ||
      meta_of(program, input.name)->dtype != result.dtype) {
    return std::nullopt;
  }
  return result;
}

// The value `node` computes when every input is known, else nullopt.
std::optional<Constant> evaluate(const ExportedProgram& program, const Known& known,
                                 const Node& node) {
  const std::string out = output_of(node);
  const auto shape = out.empty() ? std::nullopt : static_shape(program, out);
  if (!shape) return std::nullopt;
  const std::string& dtype = meta_of(program, out)->dtype;
  if (is_creation(node)) return created(node, *shape, dtype);
  const auto finish = [&](std::vector<double> values) -> std::optional<Constant> {
    for (double& value : values) {
      const auto stored = stored_as(dtype, value);
      if (!stored) return std::nullopt;
      value = *stored;
    }
    return Constant{dtype, *shape, std::move(values)};
  };
  for (const UnaryFold& fold : kUnaryFolds) {
    if (node.target != fold.target) continue;
    const auto self = operand(known, node, "self");
    if (!self) return std::nullopt;
    const bool reshapes =
        element_count(self->shape) == element_count(*shape) && fold.target != "aten.expand.default";
    if (reshapes) {
      std::vector<double> values = self->values;
      std::transform(values.begin(), values.end(), values.begin(), fold.apply);
      return finish(std::move(values));
    }
    return finish(broadcast_apply({&*self}, *shape, [&](const std::vector<double>& arguments) {
      return fold.apply(arguments[0]);
    }));
  }
  const auto binary = [&](const BinaryFold& fold) -> std::optional<Constant> {
    const std::string_view second = node.input("exponent") != nullptr ? "exponent" : "other";
    auto self = operand(known, node, "self");
    auto other = operand(known, node, second);
    if (!self || !other || node.input("rounding_mode") != nullptr ||
        (node.input("alpha") != nullptr && literal_number(node, "alpha") != 1.0)) {
      return std::nullopt;
    }
    // A Python number meets a float32 tensor as a float32, in torch as in MLX.
    if (node.input(second)->kind != ArgKind::Tensor && self->dtype == "float32") {
      for (double& value : other->values) value = *stored_as("float32", value);
    }
    return finish(
        broadcast_apply({&*self, &*other}, *shape, [&](const std::vector<double>& arguments) {
          return fold.apply(arguments[0], arguments[1]);
        }));
  };
  for (const BinaryFold& fold : kBinaryFolds) {
    if (node.target == fold.target) return binary(fold);
  }
  for (const BinaryFold& fold : kBoolFolds) {
    if (node.target == fold.target && dtype == "bool") return binary(fold);
  }
  return std::nullopt;
}

// --- Sizes.

// A size argument's value when it is a literal or a known size.
std::optional<std::int64_t> size_operand(const Known& known, const Arg& arg) {
  if (arg.kind != ArgKind::Int || arg.names.size() > 1) return std::nullopt;
  if (!arg.names.empty() && !arg.names[0].empty()) {
    const auto found = known.sizes.find(arg.names[0]);
    return found == known.sizes.end() ? std::nullopt : std::optional(found->second);
  }
  return arg.ints.size() == 1 ? std::optional(arg.ints[0]) : std::nullopt;
}

// The name of the size a node defines (its one symbolic int output), or "".
std::string size_output(const Node& node) {
  return node.outputs.size() == 1 && node.outputs[0].kind == ArgKind::Int &&
                 node.outputs[0].names.size() == 1
             ? node.outputs[0].names[0]
             : std::string();
}

std::optional<std::int64_t> evaluate_size(const ExportedProgram& program, const Known& known,
                                          const Node& node) {
  if (node.target == "aten.sym_size.int") {
    const TensorMeta* meta = meta_of(program, tensor_input(node, "self"));
    const auto dim = literal_int(node, "dim");
    if (meta == nullptr || !dim) return std::nullopt;
    const auto rank = static_cast<std::int64_t>(meta->shape.size());
    const std::int64_t axis = *dim < 0 ? *dim + rank : *dim;
    if (axis < 0 || axis >= rank || !meta->shape[static_cast<std::size_t>(axis)].symbol.empty()) {
      return std::nullopt;
    }
    return meta->shape[static_cast<std::size_t>(axis)].hint;
  }
  for (const SizeFold& fold : kSizeFolds) {
    if (node.target != fold.target || node.inputs.size() != 2) continue;
    const auto a = size_operand(known, node.inputs[0].arg);
    const auto b = size_operand(known, node.inputs[1].arg);
    if (a && b) return fold.apply(*a, *b);
  }
  return std::nullopt;
}

// Every later argument that reads a known size reads its value instead.
void substitute_sizes(ExportedProgram& program, const Known& known) {
  for (Node& node : program.nodes) {
    for (NamedArg& input : node.inputs) {
      Arg& arg = input.arg;
      if (arg.kind != ArgKind::Int && arg.kind != ArgKind::IntList) continue;
      arg.ints.resize(arg.names.size() > arg.ints.size() ? arg.names.size() : arg.ints.size());
      for (std::size_t index = 0; index < arg.names.size(); ++index) {
        const auto found = known.sizes.find(arg.names[index]);
        if (found == known.sizes.end()) continue;
        arg.names[index].clear();
        arg.ints[index] = found->second;
      }
    }
  }
}

// --- Writing folded values back.

Arg number_arg(const std::string& dtype, double value) {
  if (dtype == "bool") return Arg{ArgKind::Bool, {}, {value != 0.0 ? 1 : 0}, {}, {}};
  if (is_integer(dtype)) return Arg{ArgKind::Int, {}, {static_cast<std::int64_t>(value)}, {}, {}};
  return Arg{ArgKind::Float, {}, {}, {value}, {}};
}

// The creation node that gives `constant` in place of `node`: a fill when every value is
// the same, a literal array when it is short; nullopt when it would be neither.
std::optional<Node> creation_node(const Node& node, const Constant& constant) {
  Node result;
  result.name = node.name;
  result.outputs = node.outputs;
  result.module_stack = node.module_stack;
  result.stack_trace = node.stack_trace;
  const Arg size{
      ArgKind::IntList, std::vector<std::string>(constant.shape.size()), constant.shape, {}, {}};
  if (constant.uniform()) {
    result.target = "aten.full.default";
    result.inputs = {{"size", size},
                     {"fill_value", number_arg(constant.dtype, constant.values[0])}};
    return result;
  }
  if (element_count(constant.shape) > kMaxLiteral) return std::nullopt;
  result.target = "mlx.array";
  result.inputs = {{"values", Arg{ArgKind::FloatList, {}, {}, constant.values, {}}},
                   {"shape", size}};
  return result;
}

// Binary ops one of whose operands leaves the other unchanged when it is this constant.
struct Identity {
  std::string_view target;
  double value;
  bool either_side;  // commutative: the constant may be self or other
};

constexpr Identity kIdentities[] = {
    {"aten.add.Tensor", 0.0, true},
    {"aten.sub.Tensor", 0.0, false},
    {"aten.mul.Tensor", 1.0, true},
    {"aten.div.Tensor", 1.0, false},
    {"aten.logical_and.default", 1.0, true},
    {"aten.logical_or.default", 0.0, true},
    // Bitwise ones on bools only (checked below): logical there, not on integers.
    {"aten.bitwise_and.Tensor", 1.0, true},
    {"aten.__and__.Tensor", 1.0, true},
    {"aten.bitwise_or.Tensor", 0.0, true},
    {"aten.__or__.Tensor", 0.0, true},
};

// The operand `node` passes through unchanged, or "".
std::string passed_through(const ExportedProgram& program, const Known& known, const Node& node) {
  const Identity* rule = nullptr;
  for (const Identity& identity : kIdentities) {
    if (node.target == identity.target) rule = &identity;
  }
  if (rule == nullptr || (node.input("alpha") != nullptr && literal_number(node, "alpha") != 1.0)) {
    return "";
  }
  const std::string self = tensor_input(node, "self");
  const std::string other = tensor_input(node, "other");
  const TensorMeta* out = meta_of(program, output_of(node));
  const bool bitwise =
      rule->target.starts_with("aten.bitwise") || rule->target.starts_with("aten.__");
  for (const auto& [constant, kept] : {std::make_pair(other, self), std::make_pair(self, other)}) {
    if (constant.empty() || kept.empty() || (constant == self && !rule->either_side)) continue;
    const auto found = known.tensors.find(constant);
    const TensorMeta* kept_meta = meta_of(program, kept);
    // The output must be the kept operand as it is: no broadcast, no promotion; and
    // bitwise ops are logical ones only on bools.
    if (found == known.tensors.end() || !found->second.uniform() ||
        found->second.values[0] != rule->value || kept_meta == nullptr || out == nullptr ||
        kept_meta->dtype != out->dtype || !pass_util::same_dims(kept_meta->shape, out->shape) ||
        (bitwise && out->dtype != "bool")) {
      continue;
    }
    return kept;
  }
  return "";
}

}  // namespace

std::size_t fold_constants(ExportedProgram& program) {
  Known known;
  for (const InputSpec& input : program.inputs) {
    if (auto constant = lifted(program, input))
      known.tensors.emplace(input.name, std::move(*constant));
  }
  std::vector<bool> folded(program.nodes.size(), false);
  for (std::size_t index = 0; index < program.nodes.size(); ++index) {
    const Node& node = program.nodes[index];
    if (const std::string size = size_output(node); !size.empty()) {
      if (const auto value = evaluate_size(program, known, node)) {
        known.sizes.emplace(size, *value);
        folded[index] = true;
      }
      continue;
    }
    if (auto constant = evaluate(program, known, node)) {
      known.tensors.emplace(output_of(node), std::move(*constant));
      folded[index] = true;
    }
  }
  std::size_t changed = 0;
  if (!known.sizes.empty()) {
    substitute_sizes(program, known);
    changed += known.sizes.size();
  }
  // A folded value is written where a node computed at run time (or the graph's output)
  // reads it: the frontier. Values only other folded values read become dead.
  const DefUse graph(program);
  std::vector<std::pair<std::size_t, Node>> creations;
  for (std::size_t index = 0; index < program.nodes.size(); ++index) {
    const Node& node = program.nodes[index];
    if (!folded[index] || is_creation(node) || !size_output(node).empty()) continue;
    const std::string out = output_of(node);
    auto replacement = creation_node(node, known.tensors.at(out));
    if (!replacement) continue;
    bool frontier = graph.is_graph_output(out);
    for (const Node* reader : graph.readers(out)) {
      const auto reader_index = static_cast<std::size_t>(reader - program.nodes.data());
      if (!folded[reader_index]) frontier = true;
    }
    if (frontier) creations.emplace_back(index, std::move(*replacement));
  }
  std::vector<std::pair<std::size_t, std::string>> identities;
  for (std::size_t index = 0; index < program.nodes.size(); ++index) {
    if (folded[index]) continue;
    if (const std::string kept = passed_through(program, known, program.nodes[index]);
        !kept.empty()) {
      identities.emplace_back(index, kept);
    }
  }
  for (auto& [index, node] : creations) program.nodes[index] = std::move(node);
  std::vector<bool> remove(program.nodes.size(), false);
  for (const auto& [index, kept] : identities) {
    pass_util::replace_uses(program, index, output_of(program.nodes[index]), kept);
    remove[index] = true;
  }
  return changed + creations.size() + pass_util::remove_nodes(program, remove);
}

}  // namespace torch2mlx
