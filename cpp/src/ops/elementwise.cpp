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

/// The operands `names`, cast as `promote` says. Python scalars stay scalars (MLX adopts
/// the array's dtype for them), unless no operand is a tensor: then the first is made an
/// array of the result dtype (MLX would make 2 an int32, torch an int64).
std::vector<std::string> operands(Call& call, const std::vector<std::string>& names,
                                  Promote promote) {
  std::vector<std::string> result;
  result.reserve(names.size());
  for (const std::string& name : names) result.push_back(operand(call, name));
  if (promote == Promote::None) return result;
  std::string dtype = result_type(call, names);
  if (dtype.empty()) return result;
  if (promote == Promote::Float && !is_float(dtype)) dtype = "float32";
  const auto mlx = mlx_dtype(dtype);
  if (!mlx) return result;
  bool any_tensor = false;
  for (std::size_t index = 0; index < names.size(); ++index) {
    const TensorMeta* meta = call.meta(names[index]);
    if (meta == nullptr) continue;
    any_tensor = true;
    if (meta->dtype != dtype) result[index] = fmt::format("{}.astype({})", result[index], *mlx);
  }
  if (!any_tensor && !result.empty()) {
    result[0] = fmt::format("mx.array({}, dtype={})", result[0], *mlx);
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

/// The output dtype as "mx.float32"; the first input's when the output's is unknown.
std::string out_dtype(Call& call) {
  if (const TensorMeta* out = call.out_meta(); out != nullptr) {
    if (const auto mlx = mlx_dtype(out->dtype)) return *mlx;
  }
  return call.tensor_dtype(first_name(call));
}

bool is_float_tensor(Call& call, std::string_view name) {
  const TensorMeta* meta = call.meta(name);
  return meta != nullptr && is_float(meta->dtype);
}

// ---------------------------------------------------------------------------------------
// Table templates: a Python pattern over the op's leading operands ({0}, {1}, ...).

/// Pattern over the first input, e.g. unary<"mx.exp({0})", Promote::Float>.
template <Text Pattern, Promote P = Promote::None>
std::string unary(Call& call) {
  const auto args = operands(call, leading(call, 1), P);
  return fmt::format(fmt::runtime(Pattern.view()), args[0]);
}

/// Pattern over the first two inputs (tensors or scalars), e.g. binary<"{0} * {1}">.
template <Text Pattern, Promote P = Promote::Common>
std::string binary(Call& call) {
  const auto args = operands(call, leading(call, 2), P);
  return fmt::format(fmt::runtime(Pattern.view()), args[0], args[1]);
}

/// Pattern over the first three inputs and the `value` scale ({3}): addcmul, addcdiv.
template <Text Pattern>
std::string with_value(Call& call) {
  const auto args = operands(call, leading(call, 3), Promote::Common);
  return fmt::format(fmt::runtime(Pattern.view()), args[0], args[1], args[2],
                     call.literal("value", "1"));
}

/// A helper function over the first `N` inputs, e.g. with_helper<"fmod", 2>.
template <Text Name, std::size_t N, Promote P = Promote::Common>
std::string with_helper(Call& call) {
  const auto args = operands(call, leading(call, N), P);
  return fmt::format("{}({})", call.helper(Name.view()), fmt::join(args, ", "));
}

// ---------------------------------------------------------------------------------------
// Arithmetic with extra arguments or dtype-dependent code.

// add/sub with torch's alpha: self + alpha * other.
template <Text Op>
std::string with_alpha(Call& call) {
  const auto args = operands(call, leading(call, 2), Promote::Common);
  const std::string alpha = call.literal("alpha", "1");
  if (alpha == "1") return fmt::format("{} {} {}", args[0], Op.view(), args[1]);
  return fmt::format("{} {} {} * {}", args[0], Op.view(), alpha, args[1]);
}

// rsub: other - alpha * self.
std::string rsub(Call& call) {
  const auto args = operands(call, leading(call, 2), Promote::Common);
  const std::string alpha = call.literal("alpha", "1");
  if (alpha == "1") return fmt::format("{} - {}", args[1], args[0]);
  return fmt::format("{} - {} * {}", args[1], alpha, args[0]);
}

// Floats need the helper: floor(a / b) is off by one when a / b rounds up to a whole number
// (torch, like Python, gives 1 // 0.1 == 9). Ints floor in mx.floor_divide already.
std::string floor_divide(Call& call) {
  const auto args = operands(call, leading(call, 2), Promote::Common);
  if (!is_float(result_type(call, leading(call, 2)))) {
    return fmt::format("mx.floor_divide({}, {})", args[0], args[1]);
  }
  call.helper("fmod");
  return fmt::format("{}({}, {})", call.helper("floor_divide"), args[0], args[1]);
}

std::string divide_mode(Call& call) {
  const std::string mode = call.text("rounding_mode", "");
  if (mode.empty()) return binary<"{0} / {1}", Promote::Float>(call);
  if (mode == "floor") return floor_divide(call);
  if (mode != "trunc") {
    call.unsupported(fmt::format("rounding_mode '{}' is not one of None, 'trunc', 'floor'", mode));
  }
  const auto args = operands(call, leading(call, 2), Promote::Common);
  if (is_float(result_type(call, leading(call, 2)))) {
    return fmt::format("mx.trunc({} / {})", args[0], args[1]);
  }
  return fmt::format("{}({}, {})", call.helper("trunc_divide"), args[0], args[1]);
}

std::string where(Call& call) {
  const auto args = operands(call, {"self", "other"}, Promote::Common);
  return fmt::format("mx.where({}, {}, {})", call.tensor("condition"), args[0], args[1]);
}

std::string clamp(Call& call) {
  std::vector<std::string> names{"self"};
  for (const char* bound : {"min", "max"}) {
    if (call.has(bound)) names.emplace_back(bound);
  }
  const auto args = operands(call, names, Promote::Common);
  std::string low = "None";
  std::string high = "None";
  for (std::size_t index = 1; index < names.size(); ++index) {
    (names[index] == "min" ? low : high) = args[index];
  }
  return fmt::format("mx.clip({}, {}, {})", args[0], low, high);
}

// Rounding an int is the identity in torch; MLX agrees, but round(decimals) would scale.
std::string round_decimals(Call& call) {
  std::string self = call.tensor("self");
  if (!is_float_tensor(call, "self")) return self;
  return fmt::format("mx.round({}, {})", self, call.integer("decimals", 0));
}

// The sign bit, also of -0.0 and NaN: read through an int view of the same width.
std::string signbit(Call& call) {
  const std::string self = call.tensor("self");
  const TensorMeta* meta = call.meta("self");
  if (meta == nullptr || !is_float(meta->dtype)) return fmt::format("{} < 0", self);
  return fmt::format("mx.view({}, mx.int{}) < 0", self, bits(meta->dtype));
}

std::string copysign(Call& call) {
  const auto args = operands(call, leading(call, 2), Promote::Float);
  return fmt::format("{}({}, {})", call.helper("copysign"), args[0], args[1]);
}

std::string nan_to_num(Call& call) {
  std::string self = call.tensor("self");
  if (!is_float_tensor(call, "self")) return self;
  return fmt::format("mx.nan_to_num({}, {}, {}, {})", self, float_literal(call.number("nan", 0.0)),
                     call.literal("posinf", "None"), call.literal("neginf", "None"));
}

std::string isclose(Call& call) {
  const auto args = operands(call, leading(call, 2), Promote::Common);
  return fmt::format("mx.isclose({}, {}, rtol={}, atol={}, equal_nan={})", args[0], args[1],
                     float_literal(call.number("rtol", 1e-5)),
                     float_literal(call.number("atol", 1e-8)),
                     call.flag("equal_nan", false) ? "True" : "False");
}

std::string logit(Call& call) {
  const auto args = operands(call, {"self"}, Promote::Float);
  std::string x = args[0];
  if (call.has("eps")) {
    const double eps = call.number("eps", 0.0);
    x = fmt::format("mx.clip({}, {}, {})", x, float_literal(eps), float_literal(1.0 - eps));
  }
  return fmt::format("{}({})", call.helper("logit"), x);
}

std::string heaviside(Call& call) {
  const auto args = operands(call, leading(call, 2), Promote::Common);
  return fmt::format("mx.where({0} == 0, {1}, {0} > 0).astype({2})", args[0], args[1],
                     out_dtype(call));
}

// ---------------------------------------------------------------------------------------
// Activations with parameters.

std::string gelu(Call& call) {
  const std::string approximate = call.text("approximate", "none");
  if (approximate == "tanh") return fmt::format("nn.gelu_approx({})", call.tensor("self"));
  if (approximate != "none") call.unsupported(fmt::format("gelu approximate='{}'", approximate));
  return fmt::format("nn.gelu({})", call.tensor("self"));
}

std::string hardtanh(Call& call) {
  return fmt::format("mx.clip({}, {}, {})", call.tensor("self"),
                     float_literal(call.number("min_val", -1.0)),
                     float_literal(call.number("max_val", 1.0)));
}

// nn.leaky_relu is max(x, slope * x), which is wrong for slopes above 1.
std::string leaky_relu(Call& call) {
  return fmt::format("mx.where({0} > 0, {0}, {0} * {1})", call.tensor("self"),
                     float_literal(call.number("negative_slope", 0.01)));
}

std::string elu(Call& call) {
  return fmt::format("{}({}, {}, {}, {})", call.helper("elu"), call.tensor("self"),
                     float_literal(call.number("alpha", 1.0)),
                     float_literal(call.number("scale", 1.0)),
                     float_literal(call.number("input_scale", 1.0)));
}

std::string celu(Call& call) {
  const double alpha = call.number("alpha", 1.0);
  return fmt::format("{}({}, {}, 1.0, {})", call.helper("elu"), call.tensor("self"),
                     float_literal(alpha), float_literal(1.0 / alpha));
}

std::string softplus(Call& call) {
  return fmt::format("{}({}, {}, {})", call.helper("softplus"), call.tensor("self"),
                     float_literal(call.number("beta", 1.0)),
                     float_literal(call.number("threshold", 20.0)));
}

std::string threshold(Call& call) {
  // x <= threshold, not !(x > threshold): NaN passes through as in torch.
  return fmt::format("mx.where({0} <= {1}, {2}, {0})", call.tensor("self"),
                     call.literal("threshold", "0"), call.literal("value", "0"));
}

std::string hardshrink(Call& call) {
  return fmt::format("mx.where(({0} >= -{1}) & ({0} <= {1}), 0, {0})", call.tensor("self"),
                     float_literal(call.number("lambd", 0.5)));
}

std::string softshrink(Call& call) {
  return fmt::format("{}({}, {})", call.helper("softshrink"), call.tensor("self"),
                     float_literal(call.number("lambd", 0.5)));
}

std::string rrelu(Call& call) {
  const double lower = call.number("lower", 1.0 / 8.0);
  const double upper = call.number("upper", 1.0 / 3.0);
  const std::string self = call.tensor("self");
  if (call.flag("training", false)) {
    return fmt::format(
        "mx.where({0} >= 0, {0}, {0} * mx.random.uniform({1}, {2}, {0}.shape, "
        "{0}.dtype))",
        self, float_literal(lower), float_literal(upper));
  }
  return fmt::format("mx.where({0} >= 0, {0}, {0} * {1})", self,
                     float_literal((lower + upper) / 2.0));
}

std::string glu(Call& call) {
  return fmt::format("{}({}, {})", call.helper("glu"), call.tensor("self"), call.axis("dim", -1));
}

std::string prelu(Call& call) {
  return fmt::format("{}({}, {})", call.helper("prelu"), call.tensor("self"),
                     call.tensor("weight"));
}

}  // namespace

std::vector<OpEntry> elementwise_ops() {
  constexpr Promote kFloat = Promote::Float;
  return {
      // Unary math: ints and bools become float32 where torch's result is float.
      {"aten.abs.default", unary<"mx.abs({0})">, kAny},
      {"aten.neg.default", unary<"mx.negative({0})">, kAny},
      {"aten.positive.default", unary<"{0}">, kAny},
      {"aten.exp.default", unary<"mx.exp({0})", kFloat>, kAny},
      {"aten.exp2.default", unary<"mx.power(2.0, {0})", kFloat>, kAny},
      {"aten.expm1.default", unary<"mx.expm1({0})", kFloat>, kAny},
      {"aten.log.default", unary<"mx.log({0})", kFloat>, kAny},
      {"aten.log2.default", unary<"mx.log2({0})", kFloat>, kAny},
      {"aten.log10.default", unary<"mx.log10({0})", kFloat>, kAny},
      {"aten.log1p.default", unary<"mx.log1p({0})", kFloat>, kAny},
      {"aten.sqrt.default", unary<"mx.sqrt({0})", kFloat>, kAny},
      {"aten.rsqrt.default", unary<"mx.rsqrt({0})", kFloat>, kAny},
      {"aten.square.default", unary<"mx.square({0})">, kAny},
      {"aten.reciprocal.default", unary<"mx.reciprocal({0})", kFloat>, kAny},
      {"aten.sin.default", unary<"mx.sin({0})", kFloat>, kAny},
      {"aten.cos.default", unary<"mx.cos({0})", kFloat>, kAny},
      {"aten.tan.default", unary<"mx.tan({0})", kFloat>, kAny},
      {"aten.asin.default", unary<"mx.arcsin({0})", kFloat>, kAny},
      {"aten.acos.default", unary<"mx.arccos({0})", kFloat>, kAny},
      {"aten.atan.default", unary<"mx.arctan({0})", kFloat>, kAny},
      {"aten.sinh.default", unary<"mx.sinh({0})", kFloat>, kAny},
      {"aten.cosh.default", unary<"mx.cosh({0})", kFloat>, kAny},
      {"aten.tanh.default", unary<"mx.tanh({0})", kFloat>, kAny},
      {"aten.asinh.default", unary<"mx.arcsinh({0})", kFloat>, kAny},
      {"aten.acosh.default", unary<"mx.arccosh({0})", kFloat>, kAny},
      {"aten.atanh.default", unary<"mx.arctanh({0})", kFloat>, kAny},
      {"aten.sinc.default", with_helper<"sinc", 1, kFloat>, kAny},
      {"aten.deg2rad.default", unary<"{0} * (math.pi / 180)", kFloat>, kAny},
      {"aten.rad2deg.default", unary<"{0} * (180 / math.pi)", kFloat>, kAny},
      {"aten.erf.default", unary<"mx.erf({0})", kFloat>, kAny},
      {"aten.erfc.default", unary<"1 - mx.erf({0})", kFloat>, kAny},
      {"aten.erfinv.default", unary<"mx.erfinv({0})", kFloat>, kAny},
      {"aten.special_ndtri.default", unary<"math.sqrt(2) * mx.erfinv(2 * {0} - 1)", kFloat>, kAny},
      {"aten.floor.default", unary<"mx.floor({0})">, kAny},
      {"aten.ceil.default", unary<"mx.ceil({0})">, kAny},
      {"aten.trunc.default", unary<"mx.trunc({0})">, kAny},
      {"aten.fix.default", unary<"mx.trunc({0})">, kAny},
      {"aten.frac.default", unary<"{0} - mx.trunc({0})">, kAny},
      {"aten.round.default", unary<"mx.round({0})">, kAny},
      {"aten.round.decimals", round_decimals, kAny},
      {"aten.sign.default", unary<"mx.sign({0})">, kAny},
      {"aten.sgn.default", unary<"mx.sign({0})">, kAny},
      {"aten.signbit.default", signbit, kAny},
      {"aten.isnan.default", unary<"mx.isnan({0})">, kAny},
      {"aten.isinf.default", unary<"mx.isinf({0})">, kAny},
      {"aten.isposinf.default", unary<"mx.isposinf({0})">, kAny},
      {"aten.isneginf.default", unary<"mx.isneginf({0})">, kAny},
      {"aten.isfinite.default", unary<"mx.isfinite({0})">, kAny},
      {"aten.isreal.default", unary<"mx.ones({0}.shape, dtype=mx.bool_)">, kAny},
      {"aten.nan_to_num.default", nan_to_num, kAny},
      {"aten.logical_not.default", unary<"mx.logical_not({0})">, kAny},
      {"aten.bitwise_not.default", unary<"mx.bitwise_invert({0})">, kAny},
      // Activations.
      {"aten.relu.default", unary<"nn.relu({0})">, kAny},
      {"aten.relu6.default", unary<"nn.relu6({0})">, kAny},
      {"aten.sigmoid.default", unary<"mx.sigmoid({0})", kFloat>, kAny},
      {"aten.special_expit.default", unary<"mx.sigmoid({0})", kFloat>, kAny},
      {"aten.logit.default", logit, kAny},
      {"aten.silu.default", unary<"nn.silu({0})">, kAny},
      {"aten.gelu.default", gelu, kAny},
      {"aten.mish.default", unary<"nn.mish({0})">, kAny},
      {"aten.hardswish.default", unary<"nn.hardswish({0})">, kAny},
      {"aten.hardsigmoid.default", unary<"mx.clip({0} + 3, 0, 6) / 6">, kAny},
      {"aten.selu.default", unary<"nn.selu({0})">, kAny},
      {"aten.celu.default", celu, kAny},
      {"aten.log_sigmoid.default", unary<"nn.log_sigmoid({0})">, kAny},
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
      {"aten.add.Tensor", with_alpha<"+">, kAny},
      {"aten.add.Scalar", with_alpha<"+">, kAny},
      {"aten.sub.Tensor", with_alpha<"-">, kAny},
      {"aten.sub.Scalar", with_alpha<"-">, kAny},
      {"aten.rsub.Scalar", rsub, kAny},
      {"aten.rsub.Tensor", rsub, kAny},
      {"aten.mul.Tensor", binary<"{0} * {1}">, kAny},
      {"aten.mul.Scalar", binary<"{0} * {1}">, kAny},
      {"aten.div.Tensor", binary<"{0} / {1}", kFloat>, kAny},
      {"aten.div.Scalar", binary<"{0} / {1}", kFloat>, kAny},
      {"aten.true_divide.Tensor", binary<"{0} / {1}", kFloat>, kAny},
      {"aten.true_divide.Scalar", binary<"{0} / {1}", kFloat>, kAny},
      {"aten.div.Tensor_mode", divide_mode, kAny},
      {"aten.div.Scalar_mode", divide_mode, kAny},
      {"aten.floor_divide.default", floor_divide, kAny},
      {"aten.floor_divide.Scalar", floor_divide, kAny},
      {"aten.remainder.Tensor", binary<"mx.remainder({0}, {1})">, kAny},
      {"aten.remainder.Scalar", binary<"mx.remainder({0}, {1})">, kAny},
      {"aten.remainder.Scalar_Tensor", binary<"mx.remainder({0}, {1})">, kAny},
      {"aten.fmod.Tensor", with_helper<"fmod", 2>, kAny},
      {"aten.fmod.Scalar", with_helper<"fmod", 2>, kAny},
      // pow.Tensor is what the in-place pow_.Tensor normalises to; pow.Scalar serves both
      // pow(2, tensor) and the in-place tensor.pow_(2).
      {"aten.pow.Tensor_Tensor", binary<"mx.power({0}, {1})">, kAny},
      {"aten.pow.Tensor_Scalar", binary<"mx.power({0}, {1})">, kAny},
      {"aten.pow.Tensor", binary<"mx.power({0}, {1})">, kAny},
      {"aten.pow.Scalar", binary<"mx.power({0}, {1})">, kAny},
      {"aten.atan2.default", binary<"mx.arctan2({0}, {1})", kFloat>, kAny},
      {"aten.hypot.default", binary<"mx.sqrt(mx.square({0}) + mx.square({1}))", kFloat>, kAny},
      {"aten.copysign.Tensor", copysign, kAny},
      {"aten.copysign.Scalar", copysign, kAny},
      {"aten.ldexp.Tensor", binary<"{0} * mx.power(2.0, {1})", kFloat>, kAny},
      {"aten.xlogy.Tensor", with_helper<"xlogy", 2, kFloat>, kAny},
      {"aten.maximum.default", binary<"mx.maximum({0}, {1})">, kAny},
      {"aten.minimum.default", binary<"mx.minimum({0}, {1})">, kAny},
      {"aten.max.other", binary<"mx.maximum({0}, {1})">, kAny},
      {"aten.min.other", binary<"mx.minimum({0}, {1})">, kAny},
      {"aten.fmax.default", with_helper<"fmax", 2>, kAny},
      {"aten.fmin.default", with_helper<"fmin", 2>, kAny},
      {"aten.logaddexp.default", binary<"mx.logaddexp({0}, {1})", kFloat>, kAny},
      {"aten.logaddexp2.default", with_helper<"logaddexp2", 2, kFloat>, kAny},
      {"aten.lerp.Scalar", with_helper<"lerp", 3>, kAny},
      {"aten.lerp.Tensor", with_helper<"lerp", 3>, kAny},
      {"aten.addcmul.default", with_value<"{0} + {3} * {1} * {2}">, kAny},
      {"aten.addcdiv.default", with_value<"{0} + {3} * ({1} / {2})">, kAny},
      {"aten.clamp.default", clamp, kAny},
      {"aten.clamp.Tensor", clamp, kAny},
      {"aten.clamp_min.default", binary<"mx.maximum({0}, {1})">, kAny},
      {"aten.clamp_min.Tensor", binary<"mx.maximum({0}, {1})">, kAny},
      {"aten.clamp_max.default", binary<"mx.minimum({0}, {1})">, kAny},
      {"aten.clamp_max.Tensor", binary<"mx.minimum({0}, {1})">, kAny},
      {"aten.where.self", where, kAny},
      {"aten.where.ScalarSelf", where, kAny},
      {"aten.where.ScalarOther", where, kAny},
      {"aten.where.Scalar", where, kAny},
      {"aten.heaviside.default", heaviside, kAny},
      // Comparisons: computed in the promoted dtype, bool results.
      {"aten.eq.Tensor", binary<"{0} == {1}">, kAny},
      {"aten.eq.Scalar", binary<"{0} == {1}">, kAny},
      {"aten.ne.Tensor", binary<"{0} != {1}">, kAny},
      {"aten.ne.Scalar", binary<"{0} != {1}">, kAny},
      {"aten.lt.Tensor", binary<"{0} < {1}">, kAny},
      {"aten.lt.Scalar", binary<"{0} < {1}">, kAny},
      {"aten.le.Tensor", binary<"{0} <= {1}">, kAny},
      {"aten.le.Scalar", binary<"{0} <= {1}">, kAny},
      {"aten.gt.Tensor", binary<"{0} > {1}">, kAny},
      {"aten.gt.Scalar", binary<"{0} > {1}">, kAny},
      {"aten.ge.Tensor", binary<"{0} >= {1}">, kAny},
      {"aten.ge.Scalar", binary<"{0} >= {1}">, kAny},
      {"aten.isclose.default", isclose, kAny},
      // Logic and bits (bools too: MLX's bitwise ops accept them).
      {"aten.logical_and.default", binary<"mx.logical_and({0}, {1})", Promote::None>, kAny},
      {"aten.logical_or.default", binary<"mx.logical_or({0}, {1})", Promote::None>, kAny},
      {"aten.logical_xor.default", binary<"mx.logical_xor({0}, {1})", Promote::None>, kAny},
      {"aten.bitwise_and.Tensor", binary<"mx.bitwise_and({0}, {1})">, kAny},
      {"aten.bitwise_and.Scalar", binary<"mx.bitwise_and({0}, {1})">, kAny},
      {"aten.bitwise_or.Tensor", binary<"mx.bitwise_or({0}, {1})">, kAny},
      {"aten.bitwise_or.Scalar", binary<"mx.bitwise_or({0}, {1})">, kAny},
      {"aten.bitwise_xor.Tensor", binary<"mx.bitwise_xor({0}, {1})">, kAny},
      {"aten.bitwise_xor.Scalar", binary<"mx.bitwise_xor({0}, {1})">, kAny},
      {"aten.__and__.Tensor", binary<"mx.bitwise_and({0}, {1})">, kAny},
      {"aten.__and__.Scalar", binary<"mx.bitwise_and({0}, {1})">, kAny},
      {"aten.__or__.Tensor", binary<"mx.bitwise_or({0}, {1})">, kAny},
      {"aten.__or__.Scalar", binary<"mx.bitwise_or({0}, {1})">, kAny},
      {"aten.__xor__.Tensor", binary<"mx.bitwise_xor({0}, {1})">, kAny},
      {"aten.__xor__.Scalar", binary<"mx.bitwise_xor({0}, {1})">, kAny},
      {"aten.bitwise_left_shift.Tensor", binary<"mx.left_shift({0}, {1})">, kAny},
      {"aten.bitwise_left_shift.Tensor_Scalar", binary<"mx.left_shift({0}, {1})">, kAny},
      {"aten.bitwise_right_shift.Tensor", binary<"mx.right_shift({0}, {1})">, kAny},
      {"aten.bitwise_right_shift.Tensor_Scalar", binary<"mx.right_shift({0}, {1})">, kAny},
      {"aten.__lshift__.Tensor", binary<"mx.left_shift({0}, {1})">, kAny},
      {"aten.__lshift__.Scalar", binary<"mx.left_shift({0}, {1})">, kAny},
      {"aten.__rshift__.Tensor", binary<"mx.right_shift({0}, {1})">, kAny},
      {"aten.__rshift__.Scalar", binary<"mx.right_shift({0}, {1})">, kAny},
  };
}

}  // namespace torch2mlx
