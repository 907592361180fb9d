// Elementwise ops: unary math, binary arithmetic and comparisons, activations. All of them
// work on tensors in any storage order (LayoutRule::Elementwise), except glu (an axis) and
// prelu (a channel axis).
//
// Dtypes follow torch, not MLX: operands are cast to torch's result type first (an int
// tensor plus 2.5 is float32, a float16 tensor plus a 0-d float32 tensor stays float16, an
// int tensor divided by an int tensor is float32), so that MLX computes in the same dtype.
#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "call.h"
#include "emit_util.h"

namespace torch2mlx {

namespace {

constexpr LayoutRule kAny = LayoutRule::Elementwise;

// ---------------------------------------------------------------------------------------
// torch's type promotion (c10/core/ScalarType.h and ATen's result_type), on numpy names.

bool is_float(std::string_view dtype) {
  return dtype.starts_with("float") || dtype == "bfloat16" || dtype.starts_with("complex");
}

int bits(std::string_view dtype) {
  if (dtype == "bool") return 1;
  const std::size_t digits = dtype.find_first_of("0123456789");
  return digits == std::string_view::npos ? 0 : std::stoi(std::string(dtype.substr(digits)));
}

std::string promote_types(const std::string& a, const std::string& b) {
  if (a.empty() || a == b) return b.empty() ? a : b;
  if (b.empty() || a == "bool") return b.empty() ? a : b;
  if (b == "bool") return a;
  if (is_float(a) != is_float(b)) return is_float(a) ? a : b;
  if (is_float(a)) {
    if (bits(a) == bits(b)) return "float32";  // float16 with bfloat16
    return bits(a) > bits(b) ? a : b;
  }
  const bool a_unsigned = a.starts_with("u");
  if (a_unsigned == b.starts_with("u")) return bits(a) >= bits(b) ? a : b;
  // A signed and an unsigned int: a signed type wide enough for both.
  const std::string& sign = a_unsigned ? b : a;
  const std::string& unsign = a_unsigned ? a : b;
  if (bits(sign) > bits(unsign)) return sign;
  return fmt::format("int{}", std::min(2 * bits(unsign), 64));
}

// A lower-priority group (0-d tensors, Python scalars) only counts when it brings a higher
// category: int tensor + 2.5 is float32, float16 tensor + 2.5 stays float16.
std::string combine_categories(const std::string& higher, const std::string& lower) {
  if (!higher.empty() && is_float(higher)) return higher;
  if (higher == "bool" || (!lower.empty() && is_float(lower))) return promote_types(higher, lower);
  return higher.empty() ? lower : higher;
}

/// torch's result dtype of the named operands, or "" when a tensor's dtype is unknown.
std::string result_type(const Call& call, const std::vector<std::string>& names) {
  std::string dims;
  std::string zero_dim;
  std::string scalars;
  for (const std::string& name : names) {
    const Arg* arg = call.node().input(name);
    if (arg == nullptr) continue;
    if (arg->kind == ArgKind::Tensor) {
      const TensorMeta* meta = call.meta(name);
      if (meta == nullptr) return {};
      std::string& group = meta->shape.empty() ? zero_dim : dims;
      group = promote_types(group, meta->dtype);
    } else if (arg->kind == ArgKind::Int) {
      scalars = promote_types(scalars, "int64");
    } else if (arg->kind == ArgKind::Float) {
      scalars = promote_types(scalars, "float32");  // torch's default dtype
    } else if (arg->kind == ArgKind::Bool) {
      scalars = promote_types(scalars, "bool");
    }
  }
  return combine_categories(dims, combine_categories(zero_dim, scalars));
}

/// How an op's operands are cast before MLX sees them.
enum class Promote : std::uint8_t {
  None,    // as they are (predicates, logical ops, dtype-preserving unary ops)
  Common,  // to torch's result type
  Float    // to the result type, ints and bools to float32 (true division, exp, sin, ...)
};

using Args = std::vector<py::Expr>;

/// The operands `names`, cast as `promote` says. Python scalars stay scalars (MLX adopts
/// the array's dtype for them), unless no operand is a tensor: then the first is made an
/// array of the result dtype (MLX would make 2 an int32, torch an int64).
Args operands(Call& call, const std::vector<std::string>& names, Promote promote) {
  Args result;
  result.reserve(names.size());
  for (const std::string& name : names) result.push_back(operand(call, name));
  if (promote == Promote::None) return result;
  std::string dtype = result_type(call, names);
  if (dtype.empty()) return result;
  if (promote == Promote::Float && !is_float(dtype)) dtype = "float32";
  const auto mlx = mlx_dtype_expr(dtype);
  if (!mlx) return result;
  bool any_tensor = false;
  for (std::size_t index = 0; index < names.size(); ++index) {
    const TensorMeta* meta = call.meta(names[index]);
    if (meta == nullptr) continue;
    any_tensor = true;
    if (meta->dtype != dtype) result[index] = result[index].method("astype", {*mlx});
  }
  if (!any_tensor && !result.empty()) {
    result[0] = py::call("mx.array", {result[0]}, {{"dtype", *mlx}});
  }
  return result;
}

/// The names of the first `count` inputs, whatever the schema calls them.
std::vector<std::string> leading(const Call& call, std::size_t count) {
  std::vector<std::string> names;
  for (std::size_t index = 0; index < count && index < call.node().inputs.size(); ++index) {
    names.push_back(call.node().inputs[index].name);
  }
  return names;
}

/// The output dtype as `mx.float32`; the first input's when the output's is unknown.
py::Expr out_dtype(Call& call) {
  if (const TensorMeta* out = call.out_meta(); out != nullptr) {
    if (auto mlx = mlx_dtype_expr(out->dtype)) return *mlx;
  }
  return call.tensor_dtype(first_name(call));
}

bool is_float_tensor(Call& call, std::string_view name) {
  const TensorMeta* meta = call.meta(name);
  return meta != nullptr && is_float(meta->dtype);
}

// ---------------------------------------------------------------------------------------
// Table templates over the op's leading operands: a function of MLX called on them, a
// Python operator between them, or a small builder of the expression.

/// The expression an op computes from its (cast) operands.
using Builder = py::Expr (*)(const Args& args);

/// F(first input), e.g. unary<"mx.exp", Promote::Float>.
template <Text F, Promote P = Promote::None>
py::Expr unary(Call& call) {
  return py::call(F.view(), operands(call, leading(call, 1), P));
}

/// An expression of the first input, e.g. unary_of<frac>.
template <Builder F, Promote P = Promote::None>
py::Expr unary_of(Call& call) {
  return F(operands(call, leading(call, 1), P));
}

/// F(first two inputs, tensors or scalars), e.g. binary<"mx.power">.
template <Text F, Promote P = Promote::Common>
py::Expr binary(Call& call) {
  return py::call(F.view(), operands(call, leading(call, 2), P));
}

/// The first two inputs joined by a Python operator, e.g. binary_op<py::Op::Mul>.
template <py::Op Op, Promote P = Promote::Common>
py::Expr binary_op(Call& call) {
  const Args args = operands(call, leading(call, 2), P);
  return py::binary(args[0], Op, args[1]);
}

/// An expression of the first two inputs, e.g. binary_of<hypot, Promote::Float>.
template <Builder F, Promote P = Promote::Common>
py::Expr binary_of(Call& call) {
  return F(operands(call, leading(call, 2), P));
}

/// An expression of the first three inputs and the `value` scale (the fourth): addcmul,
/// addcdiv.
template <Builder F>
py::Expr with_value(Call& call) {
  Args args = operands(call, leading(call, 3), Promote::Common);
  args.push_back(call.literal("value", py::integer(1)));
  return F(args);
}

/// A helper function over the first `N` inputs, e.g. with_helper<"fmod", 2>.
template <Text Name, std::size_t N, Promote P = Promote::Common>
py::Expr with_helper(Call& call) {
  return call.helper(Name.view())(operands(call, leading(call, N), P));
}

// Builders for the table.

py::Expr positive(const Args& args) { return args[0]; }

py::Expr exp2(const Args& args) { return py::call("mx.power", {py::number(2.0), args[0]}); }

py::Expr deg2rad(const Args& args) { return args[0] * (py::dotted("math.pi") / py::integer(180)); }

py::Expr rad2deg(const Args& args) { return args[0] * (py::integer(180) / py::dotted("math.pi")); }

py::Expr erfc(const Args& args) { return py::integer(1) - py::call("mx.erf", {args[0]}); }

py::Expr ndtri(const Args& args) {
  return py::call("math.sqrt", {py::integer(2)}) *
         py::call("mx.erfinv", {py::integer(2) * args[0] - py::integer(1)});
}

py::Expr frac(const Args& args) { return args[0] - py::call("mx.trunc", {args[0]}); }

py::Expr isreal(const Args& args) {
  return py::call("mx.ones", {args[0].attr("shape")}, {{"dtype", py::dotted("mx.bool_")}});
}

py::Expr hardsigmoid(const Args& args) {
  return py::call("mx.clip", {args[0] + py::integer(3), py::integer(0), py::integer(6)}) /
         py::integer(6);
}

py::Expr hypot(const Args& args) {
  return py::call("mx.sqrt", {py::call("mx.square", {args[0]}) + py::call("mx.square", {args[1]})});
}

py::Expr ldexp(const Args& args) {
  return args[0] * py::call("mx.power", {py::number(2.0), args[1]});
}

// self + value * tensor1 * tensor2
py::Expr addcmul(const Args& args) { return args[0] + args[3] * args[1] * args[2]; }

// self + value * (tensor1 / tensor2)
py::Expr addcdiv(const Args& args) { return args[0] + args[3] * (args[1] / args[2]); }

// ---------------------------------------------------------------------------------------
// Arithmetic with extra arguments or dtype-dependent code.

bool is_one(const py::Expr& value) { return value.same(py::integer(1)); }

// add/sub with torch's alpha: self + alpha * other.
template <py::Op Op>
py::Expr with_alpha(Call& call) {
  const Args args = operands(call, leading(call, 2), Promote::Common);
  const py::Expr alpha = call.literal("alpha", py::integer(1));
  if (is_one(alpha)) return py::binary(args[0], Op, args[1]);
  return py::binary(args[0], Op, alpha * args[1]);
}

// rsub: other - alpha * self.
py::Expr rsub(Call& call) {
  const Args args = operands(call, leading(call, 2), Promote::Common);
  const py::Expr alpha = call.literal("alpha", py::integer(1));
  if (is_one(alpha)) return args[1] - args[0];
  return args[1] - alpha * args[0];
}

// Floats need the helper: floor(a / b) is off by one when a / b rounds up to a whole number
// (torch, like Python, gives 1 // 0.1 == 9). Ints floor in mx.floor_divide already.
py::Expr floor_divide(Call& call) {
  const Args args = operands(call, leading(call, 2), Promote::Common);
  if (!is_float(result_type(call, leading(call, 2)))) {
    return py::call("mx.floor_divide", args);
  }
  call.helper("fmod");
  return call.helper("floor_divide")(args);
}

py::Expr divide_mode(Call& call) {
  const std::string mode = call.text("rounding_mode", "");
  if (mode.empty()) return binary_op<py::Op::Div, Promote::Float>(call);
  if (mode == "floor") return floor_divide(call);
  if (mode != "trunc") {
    call.unsupported(fmt::format("rounding_mode '{}' is not one of None, 'trunc', 'floor'", mode));
  }
  const Args args = operands(call, leading(call, 2), Promote::Common);
  if (is_float(result_type(call, leading(call, 2)))) {
    return py::call("mx.trunc", {args[0] / args[1]});
  }
  return call.helper("trunc_divide")(args);
}

py::Expr where(Call& call) {
  const Args args = operands(call, {"self", "other"}, Promote::Common);
  return py::call("mx.where", {call.tensor("condition"), args[0], args[1]});
}

py::Expr clamp(Call& call) {
  std::vector<std::string> names{"self"};
  for (const char* bound : {"min", "max"}) {
    if (call.has(bound)) names.emplace_back(bound);
  }
  const Args args = operands(call, names, Promote::Common);
  py::Expr low = py::none();
  py::Expr high = py::none();
  for (std::size_t index = 1; index < names.size(); ++index) {
    (names[index] == "min" ? low : high) = args[index];
  }
  return py::call("mx.clip", {args[0], low, high});
}

// Rounding an int is the identity in torch; MLX agrees, but round(decimals) would scale.
py::Expr round_decimals(Call& call) {
  py::Expr self = call.tensor("self");
  if (!is_float_tensor(call, "self")) return self;
  return py::call("mx.round", {self, py::integer(call.integer("decimals", 0))});
}

// The sign bit, also of -0.0 and NaN: read through an int view of the same width.
py::Expr signbit(Call& call) {
  const py::Expr self = call.tensor("self");
  const TensorMeta* meta = call.meta("self");
  if (meta == nullptr || !is_float(meta->dtype))
    return py::binary(self, py::Op::Lt, py::integer(0));
  const auto view = mlx_dtype_expr(fmt::format("int{}", bits(meta->dtype)));
  if (!view)
    call.unsupported(fmt::format("signbit of {}: MLX has no integer dtype that wide", meta->dtype));
  return py::binary(py::call("mx.view", {self, *view}), py::Op::Lt, py::integer(0));
}

py::Expr copysign(Call& call) {
  return call.helper("copysign")(operands(call, leading(call, 2), Promote::Float));
}

py::Expr nan_to_num(Call& call) {
  py::Expr self = call.tensor("self");
  if (!is_float_tensor(call, "self")) return self;
  return py::call("mx.nan_to_num", {self, py::number(call.number("nan", 0.0)),
                                    call.literal("posinf"), call.literal("neginf")});
}

py::Expr isclose(Call& call) {
  const Args args = operands(call, leading(call, 2), Promote::Common);
  return py::call("mx.isclose", {args[0], args[1]},
                  {{"rtol", py::number(call.number("rtol", 1e-5))},
                   {"atol", py::number(call.number("atol", 1e-8))},
                   {"equal_nan", py::boolean(call.flag("equal_nan", false))}});
}

py::Expr logit(Call& call) {
  const Args args = operands(call, {"self"}, Promote::Float);
  py::Expr x = args[0];
  if (call.has("eps")) {
    const double eps = call.number("eps", 0.0);
    x = py::call("mx.clip", {x, py::number(eps), py::number(1.0 - eps)});
  }
  return call.helper("logit")({x});
}

py::Expr heaviside(Call& call) {
  const Args args = operands(call, leading(call, 2), Promote::Common);
  return py::call("mx.where", {py::binary(args[0], py::Op::Eq, py::integer(0)), args[1],
                               py::binary(args[0], py::Op::Gt, py::integer(0))})
      .method("astype", {out_dtype(call)});
}

// ---------------------------------------------------------------------------------------
// Activations with parameters.

py::Expr gelu(Call& call) {
  const std::string approximate = call.text("approximate", "none");
  if (approximate == "tanh") return py::call("nn.gelu_approx", {call.tensor("self")});
  if (approximate != "none") call.unsupported(fmt::format("gelu approximate='{}'", approximate));
  return py::call("nn.gelu", {call.tensor("self")});
}

py::Expr hardtanh(Call& call) {
  return py::call("mx.clip", {call.tensor("self"), py::number(call.number("min_val", -1.0)),
                              py::number(call.number("max_val", 1.0))});
}

// nn.leaky_relu is max(x, slope * x), which is wrong for slopes above 1.
py::Expr leaky_relu(Call& call) {
  const py::Expr self = call.tensor("self");
  return py::call("mx.where", {py::binary(self, py::Op::Gt, py::integer(0)), self,
                               self * py::number(call.number("negative_slope", 0.01))});
}

py::Expr elu(Call& call) {
  return call.helper("elu")({call.tensor("self"), py::number(call.number("alpha", 1.0)),
                             py::number(call.number("scale", 1.0)),
                             py::number(call.number("input_scale", 1.0))});
}

py::Expr celu(Call& call) {
  const double alpha = call.number("alpha", 1.0);
  return call.helper("elu")(
      {call.tensor("self"), py::number(alpha), py::number(1.0), py::number(1.0 / alpha)});
}

py::Expr softplus(Call& call) {
  return call.helper("softplus")({call.tensor("self"), py::number(call.number("beta", 1.0)),
                                  py::number(call.number("threshold", 20.0))});
}

py::Expr threshold(Call& call) {
  // x <= threshold, not !(x > threshold): NaN passes through as in torch.
  const py::Expr self = call.tensor("self");
  return py::call("mx.where",
                  {py::binary(self, py::Op::LtE, call.literal("threshold", py::integer(0))),
                   call.literal("value", py::integer(0)), self});
}

py::Expr hardshrink(Call& call) {
  const py::Expr self = call.tensor("self");
  const py::Expr lambd = py::number(call.number("lambd", 0.5));
  const py::Expr inside = py::binary(py::binary(self, py::Op::GtE, -lambd), py::Op::BitAnd,
                                     py::binary(self, py::Op::LtE, lambd));
  return py::call("mx.where", {inside, py::integer(0), self});
}

py::Expr softshrink(Call& call) {
  return call.helper("softshrink")({call.tensor("self"), py::number(call.number("lambd", 0.5))});
}

py::Expr rrelu(Call& call) {
  const double lower = call.number("lower", 1.0 / 8.0);
  const double upper = call.number("upper", 1.0 / 3.0);
  const py::Expr self = call.tensor("self");
  const py::Expr kept = py::binary(self, py::Op::GtE, py::integer(0));
  if (call.flag("training", false)) {
    const py::Expr slope = py::call("mx.random.uniform", {py::number(lower), py::number(upper),
                                                          self.attr("shape"), self.attr("dtype")});
    return py::call("mx.where", {kept, self, self * slope});
  }
  return py::call("mx.where", {kept, self, self * py::number((lower + upper) / 2.0)});
}

py::Expr glu(Call& call) {
  return call.helper("glu")({call.tensor("self"), py::integer(call.axis("dim", -1))});
}

py::Expr prelu(Call& call) {
  return call.helper("prelu")({call.tensor("self"), call.tensor("weight")});
}

}  // namespace

std::vector<OpEntry> elementwise_ops() {
  constexpr Promote kFloat = Promote::Float;
  return {
      // Unary math: ints and bools become float32 where torch's result is float.
      {"aten.abs.default", unary<"mx.abs">, kAny},
      {"aten.neg.default", unary<"mx.negative">, kAny},
      {"aten.positive.default", unary_of<positive>, kAny},
      {"aten.exp.default", unary<"mx.exp", kFloat>, kAny},
      {"aten.exp2.default", unary_of<exp2, kFloat>, kAny},
      {"aten.expm1.default", unary<"mx.expm1", kFloat>, kAny},
      {"aten.log.default", unary<"mx.log", kFloat>, kAny},
      {"aten.log2.default", unary<"mx.log2", kFloat>, kAny},
      {"aten.log10.default", unary<"mx.log10", kFloat>, kAny},
      {"aten.log1p.default", unary<"mx.log1p", kFloat>, kAny},
      {"aten.sqrt.default", unary<"mx.sqrt", kFloat>, kAny},
      {"aten.rsqrt.default", unary<"mx.rsqrt", kFloat>, kAny},
      {"aten.square.default", unary<"mx.square">, kAny},
      {"aten.reciprocal.default", unary<"mx.reciprocal", kFloat>, kAny},
      {"aten.sin.default", unary<"mx.sin", kFloat>, kAny},
      {"aten.cos.default", unary<"mx.cos", kFloat>, kAny},
      {"aten.tan.default", unary<"mx.tan", kFloat>, kAny},
      {"aten.asin.default", unary<"mx.arcsin", kFloat>, kAny},
      {"aten.acos.default", unary<"mx.arccos", kFloat>, kAny},
      {"aten.atan.default", unary<"mx.arctan", kFloat>, kAny},
      {"aten.sinh.default", unary<"mx.sinh", kFloat>, kAny},
      {"aten.cosh.default", unary<"mx.cosh", kFloat>, kAny},
      {"aten.tanh.default", unary<"mx.tanh", kFloat>, kAny},
      {"aten.asinh.default", unary<"mx.arcsinh", kFloat>, kAny},
      {"aten.acosh.default", unary<"mx.arccosh", kFloat>, kAny},
      {"aten.atanh.default", unary<"mx.arctanh", kFloat>, kAny},
      {"aten.sinc.default", with_helper<"sinc", 1, kFloat>, kAny},
      {"aten.deg2rad.default", unary_of<deg2rad, kFloat>, kAny},
      {"aten.rad2deg.default", unary_of<rad2deg, kFloat>, kAny},
      {"aten.erf.default", unary<"mx.erf", kFloat>, kAny},
      {"aten.erfc.default", unary_of<erfc, kFloat>, kAny},
      {"aten.erfinv.default", unary<"mx.erfinv", kFloat>, kAny},
      {"aten.special_ndtri.default", unary_of<ndtri, kFloat>, kAny},
      {"aten.floor.default", unary<"mx.floor">, kAny},
      {"aten.ceil.default", unary<"mx.ceil">, kAny},
      {"aten.trunc.default", unary<"mx.trunc">, kAny},
      {"aten.fix.default", unary<"mx.trunc">, kAny},
      {"aten.frac.default", unary_of<frac>, kAny},
      {"aten.round.default", unary<"mx.round">, kAny},
      {"aten.round.decimals", round_decimals, kAny},
      {"aten.sign.default", unary<"mx.sign">, kAny},
      {"aten.sgn.default", unary<"mx.sign">, kAny},
      {"aten.signbit.default", signbit, kAny},
      {"aten.isnan.default", unary<"mx.isnan">, kAny},
      {"aten.isinf.default", unary<"mx.isinf">, kAny},
      {"aten.isposinf.default", unary<"mx.isposinf">, kAny},
      {"aten.isneginf.default", unary<"mx.isneginf">, kAny},
      {"aten.isfinite.default", unary<"mx.isfinite">, kAny},
      {"aten.isreal.default", unary_of<isreal>, kAny},
      {"aten.nan_to_num.default", nan_to_num, kAny},
      {"aten.logical_not.default", unary<"mx.logical_not">, kAny},
      {"aten.bitwise_not.default", unary<"mx.bitwise_invert">, kAny},
      // Activations.
      {"aten.relu.default", unary<"nn.relu">, kAny},
      {"aten.relu6.default", unary<"nn.relu6">, kAny},
      {"aten.sigmoid.default", unary<"mx.sigmoid", kFloat>, kAny},
      {"aten.special_expit.default", unary<"mx.sigmoid", kFloat>, kAny},
      {"aten.logit.default", logit, kAny},
      {"aten.silu.default", unary<"nn.silu">, kAny},
      {"aten.gelu.default", gelu, kAny},
      {"aten.mish.default", unary<"nn.mish">, kAny},
      {"aten.hardswish.default", unary<"nn.hardswish">, kAny},
      {"aten.hardsigmoid.default", unary_of<hardsigmoid>, kAny},
      {"aten.selu.default", unary<"nn.selu">, kAny},
      {"aten.celu.default", celu, kAny},
      {"aten.log_sigmoid.default", unary<"nn.log_sigmoid">, kAny},
      {"aten.hardtanh.default", hardtanh, kAny},
      {"aten.leaky_relu.default", leaky_relu, kAny},
      {"aten.rrelu.default", rrelu, kAny},
      {"aten.elu.default", elu, kAny},
      {"aten.softplus.default", softplus, kAny},
      {"aten.threshold.default", threshold, kAny},
      {"aten.hardshrink.default", hardshrink, kAny},
      {"aten.softshrink.default", softshrink, kAny},
      {"aten.glu.default", glu, LayoutRule::Axis},
      {"aten.prelu.default", prelu, LayoutRule::Standard},
      // Binary arithmetic.
      {"aten.add.Tensor", with_alpha<py::Op::Add>, kAny},
      {"aten.add.Scalar", with_alpha<py::Op::Add>, kAny},
      {"aten.sub.Tensor", with_alpha<py::Op::Sub>, kAny},
      {"aten.sub.Scalar", with_alpha<py::Op::Sub>, kAny},
      {"aten.rsub.Scalar", rsub, kAny},
      {"aten.rsub.Tensor", rsub, kAny},
      {"aten.mul.Tensor", binary_op<py::Op::Mul>, kAny},
      {"aten.mul.Scalar", binary_op<py::Op::Mul>, kAny},
      {"aten.div.Tensor", binary_op<py::Op::Div, kFloat>, kAny},
      {"aten.div.Scalar", binary_op<py::Op::Div, kFloat>, kAny},
      {"aten.true_divide.Tensor", binary_op<py::Op::Div, kFloat>, kAny},
      {"aten.true_divide.Scalar", binary_op<py::Op::Div, kFloat>, kAny},
      {"aten.div.Tensor_mode", divide_mode, kAny},
      {"aten.div.Scalar_mode", divide_mode, kAny},
      {"aten.floor_divide.default", floor_divide, kAny},
      {"aten.floor_divide.Scalar", floor_divide, kAny},
      {"aten.remainder.Tensor", binary<"mx.remainder">, kAny},
      {"aten.remainder.Scalar", binary<"mx.remainder">, kAny},
      {"aten.remainder.Scalar_Tensor", binary<"mx.remainder">, kAny},
      {"aten.fmod.Tensor", with_helper<"fmod", 2>, kAny},
      {"aten.fmod.Scalar", with_helper<"fmod", 2>, kAny},
      // pow.Tensor is what the in-place pow_.Tensor normalises to; pow.Scalar serves both
      // pow(2, tensor) and the in-place tensor.pow_(2).
      {"aten.pow.Tensor_Tensor", binary<"mx.power">, kAny},
      {"aten.pow.Tensor_Scalar", binary<"mx.power">, kAny},
      {"aten.pow.Tensor", binary<"mx.power">, kAny},
      {"aten.pow.Scalar", binary<"mx.power">, kAny},
      {"aten.atan2.default", binary<"mx.arctan2", kFloat>, kAny},
      {"aten.hypot.default", binary_of<hypot, kFloat>, kAny},
      {"aten.copysign.Tensor", copysign, kAny},
      {"aten.copysign.Scalar", copysign, kAny},
      {"aten.ldexp.Tensor", binary_of<ldexp, kFloat>, kAny},
      {"aten.xlogy.Tensor", with_helper<"xlogy", 2, kFloat>, kAny},
      {"aten.maximum.default", binary<"mx.maximum">, kAny},
      {"aten.minimum.default", binary<"mx.minimum">, kAny},
      {"aten.max.other", binary<"mx.maximum">, kAny},
      {"aten.min.other", binary<"mx.minimum">, kAny},
      {"aten.fmax.default", with_helper<"fmax", 2>, kAny},
      {"aten.fmin.default", with_helper<"fmin", 2>, kAny},
      {"aten.logaddexp.default", binary<"mx.logaddexp", kFloat>, kAny},
      {"aten.logaddexp2.default", with_helper<"logaddexp2", 2, kFloat>, kAny},
      {"aten.lerp.Scalar", with_helper<"lerp", 3>, kAny},
      {"aten.lerp.Tensor", with_helper<"lerp", 3>, kAny},
      {"aten.addcmul.default", with_value<addcmul>, kAny},
      {"aten.addcdiv.default", with_value<addcdiv>, kAny},
      {"aten.clamp.default", clamp, kAny},
      {"aten.clamp.Tensor", clamp, kAny},
      {"aten.clamp_min.default", binary<"mx.maximum">, kAny},
      {"aten.clamp_min.Tensor", binary<"mx.maximum">, kAny},
      {"aten.clamp_max.default", binary<"mx.minimum">, kAny},
      {"aten.clamp_max.Tensor", binary<"mx.minimum">, kAny},
      {"aten.where.self", where, kAny},
      {"aten.where.ScalarSelf", where, kAny},
      {"aten.where.ScalarOther", where, kAny},
      {"aten.where.Scalar", where, kAny},
      {"aten.heaviside.default", heaviside, kAny},
      // Comparisons: computed in the promoted dtype, bool results.
      {"aten.eq.Tensor", binary_op<py::Op::Eq>, kAny},
      {"aten.eq.Scalar", binary_op<py::Op::Eq>, kAny},
      {"aten.ne.Tensor", binary_op<py::Op::NotEq>, kAny},
      {"aten.ne.Scalar", binary_op<py::Op::NotEq>, kAny},
      {"aten.lt.Tensor", binary_op<py::Op::Lt>, kAny},
      {"aten.lt.Scalar", binary_op<py::Op::Lt>, kAny},
      {"aten.le.Tensor", binary_op<py::Op::LtE>, kAny},
      {"aten.le.Scalar", binary_op<py::Op::LtE>, kAny},
      {"aten.gt.Tensor", binary_op<py::Op::Gt>, kAny},
      {"aten.gt.Scalar", binary_op<py::Op::Gt>, kAny},
      {"aten.ge.Tensor", binary_op<py::Op::GtE>, kAny},
      {"aten.ge.Scalar", binary_op<py::Op::GtE>, kAny},
      {"aten.isclose.default", isclose, kAny},
      // Logic and bits (bools too: MLX's bitwise ops accept them).
      {"aten.logical_and.default", binary<"mx.logical_and", Promote::None>, kAny},
      {"aten.logical_or.default", binary<"mx.logical_or", Promote::None>, kAny},
      {"aten.logical_xor.default", binary<"mx.logical_xor", Promote::None>, kAny},
      {"aten.bitwise_and.Tensor", binary<"mx.bitwise_and">, kAny},
      {"aten.bitwise_and.Scalar", binary<"mx.bitwise_and">, kAny},
      {"aten.bitwise_or.Tensor", binary<"mx.bitwise_or">, kAny},
      {"aten.bitwise_or.Scalar", binary<"mx.bitwise_or">, kAny},
      {"aten.bitwise_xor.Tensor", binary<"mx.bitwise_xor">, kAny},
      {"aten.bitwise_xor.Scalar", binary<"mx.bitwise_xor">, kAny},
      {"aten.__and__.Tensor", binary<"mx.bitwise_and">, kAny},
      {"aten.__and__.Scalar", binary<"mx.bitwise_and">, kAny},
      {"aten.__or__.Tensor", binary<"mx.bitwise_or">, kAny},
      {"aten.__or__.Scalar", binary<"mx.bitwise_or">, kAny},
      {"aten.__xor__.Tensor", binary<"mx.bitwise_xor">, kAny},
      {"aten.__xor__.Scalar", binary<"mx.bitwise_xor">, kAny},
      {"aten.bitwise_left_shift.Tensor", binary<"mx.left_shift">, kAny},
      {"aten.bitwise_left_shift.Tensor_Scalar", binary<"mx.left_shift">, kAny},
      {"aten.bitwise_right_shift.Tensor", binary<"mx.right_shift">, kAny},
      {"aten.bitwise_right_shift.Tensor_Scalar", binary<"mx.right_shift">, kAny},
      {"aten.__lshift__.Tensor", binary<"mx.left_shift">, kAny},
      {"aten.__lshift__.Scalar", binary<"mx.left_shift">, kAny},
      {"aten.__rshift__.Tensor", binary<"mx.right_shift">, kAny},
      {"aten.__rshift__.Scalar", binary<"mx.right_shift">, kAny},
  };
}

}  // namespace torch2mlx
