// Tensor creation: ranges, fills, random tensors, and the ops that only exist for
// training or for the tracer (dropout, asserts), which become no-ops at inference.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "call.h"
#include "emit_util.h"

namespace torch2mlx {

namespace {

constexpr LayoutRule kStandard = LayoutRule::Standard;
// *_like ops only read the input's shape: they keep its storage order, no transpose.
constexpr LayoutRule kLike = LayoutRule::Elementwise;

/// The output dtype as "mx.float32": dtype= if given, else what torch recorded.
std::string output_dtype(Call& call) {
  if (const auto dtype = call.dtype("dtype")) return *dtype;
  if (call.out_meta() != nullptr) {
    if (const auto mlx = mlx_dtype(call.out_meta()->dtype)) return *mlx;
  }
  return "mx.float32";
}

bool is_float_dtype(std::string_view mlx) {
  return mlx == "mx.float16" || mlx == "mx.bfloat16" || mlx == "mx.float32" || mlx == "mx.float64";
}

/// True when the argument is a plain integer (not a float, not a symbolic size).
bool literal_int(Call& call, std::string_view name) {
  const Arg* arg = call.node().input(name);
  return arg == nullptr ||
         (arg->kind == ArgKind::Int && (arg->names.empty() || arg->names[0].empty()));
}

// Float ranges are start + step * i: mx.arange accumulates the step and drifts (1e-3 after
// 1000 steps of 0.1), while torch computes each element from its index.
std::string arange(Call& call) {
  const std::string start = call.has("start") ? call.literal("start", "0") : "0";
  const std::string end = call.literal("end", "0");
  const std::string step = call.has("step") ? call.literal("step", "1") : "1";
  const std::string dtype = output_dtype(call);
  if (!is_float_dtype(dtype) || (literal_int(call, "start") && literal_int(call, "step"))) {
    return fmt::format("mx.arange({}, {}, {}, dtype={})", start, end, step, dtype);
  }
  const std::string count = fmt::format("math.ceil(({} - {}) / {})", end, start, step);
  const std::string range =
      fmt::format("{} + {} * mx.arange({}, dtype=mx.float32)", start, step, count);
  return dtype == "mx.float32" ? range : fmt::format("({}).astype({})", range, dtype);
}

// A constant the compiler folded (fold-constants), as a nested list literal in row-major
// order.
std::string literal_array(Call& call) {
  const Arg* values = call.node().input("values");
  const std::vector<std::int64_t> shape = call.ints("shape");
  const std::string dtype = output_dtype(call);
  if (values == nullptr) call.unsupported("a literal array without values");
  const auto element = [&](double value) {
    if (dtype == "mx.bool_") return std::string(value != 0.0 ? "True" : "False");
    if (!is_float_dtype(dtype)) return fmt::format("{}", static_cast<std::int64_t>(value));
    return float_literal(value);
  };
  std::size_t next = 0;
  const auto nested = [&](const auto& self, std::size_t axis) -> std::string {
    if (axis == shape.size())
      return next < values->floats.size() ? element(values->floats[next++]) : "0";
    std::vector<std::string> items;
    for (std::int64_t index = 0; index < shape[axis]; ++index)
      items.push_back(self(self, axis + 1));
    return fmt::format("[{}]", fmt::join(items, ", "));
  };
  return fmt::format("mx.array({}, dtype={})", nested(nested, 0), dtype);
}

std::string linspace(Call& call) {
  return fmt::format("{}({}, {}, {}, {})", call.helper("linspace"), call.literal("start", "0"),
                     call.literal("end", "0"), call.literal("steps", "1"), output_dtype(call));
}

std::string eye(Call& call) {
  const std::string n = call.literal("n", "1");
  return fmt::format("mx.eye({}, {}, dtype={})", n, call.has("m") ? call.literal("m", "1") : n,
                     output_dtype(call));
}

// mx.full keeps a float value float whatever dtype= says; torch truncates it to the dtype.
std::string fill_value(Call& call, std::string_view name, const std::string& dtype) {
  std::string value = call.literal(name, "0");
  const Arg* arg = call.node().input(name);
  if (arg == nullptr || arg->kind != ArgKind::Float || is_float_dtype(dtype)) return value;
  return fmt::format("mx.array({}, dtype={})", value, dtype);
}

std::string full(Call& call) {
  const std::string dtype = output_dtype(call);
  return fmt::format("mx.full({}, {}, dtype={})", call.literal("size", "()"),
                     fill_value(call, "fill_value", dtype), dtype);
}

/// mx.zeros / mx.ones of the size argument, e.g. constant<"mx.zeros">.
template <Text F>
std::string constant(Call& call) {
  return fmt::format("{}({}, dtype={})", F.view(), call.literal("size", "()"), output_dtype(call));
}

std::string full_like(Call& call) {
  const std::string dtype = output_dtype(call);
  return fmt::format("mx.full({}.shape, {}, dtype={})", call.tensor("self"),
                     fill_value(call, "fill_value", dtype), dtype);
}

/// mx.zeros / mx.ones of the input's shape.
template <Text F>
std::string constant_like(Call& call) {
  return fmt::format("{}({}.shape, dtype={})", F.view(), call.tensor("self"), output_dtype(call));
}

std::string scalar_tensor(Call& call) {
  return fmt::format("mx.array({}, dtype={})", call.literal("s", "0"), output_dtype(call));
}

std::string fill(Call& call) {
  const std::string self = call.tensor("self");
  if (call.meta("value") != nullptr) {
    return fmt::format("mx.broadcast_to({}.astype({}.dtype), {}.shape)", call.tensor("value"), self,
                       self);
  }
  const std::string dtype = call.tensor_dtype("self");
  return fmt::format("mx.full({}.shape, {}, dtype={})", self, fill_value(call, "value", dtype),
                     dtype);
}

std::string rand(Call& call) {
  return fmt::format("mx.random.uniform(shape={}, dtype={})", call.literal("size", "()"),
                     output_dtype(call));
}

std::string randn(Call& call) {
  return fmt::format("mx.random.normal(shape={}, dtype={})", call.literal("size", "()"),
                     output_dtype(call));
}

std::string rand_like(Call& call) {
  return fmt::format("mx.random.uniform(shape={}.shape, dtype={})", call.tensor("self"),
                     output_dtype(call));
}

std::string randn_like(Call& call) {
  return fmt::format("mx.random.normal(shape={}.shape, dtype={})", call.tensor("self"),
                     output_dtype(call));
}

// mx.random.randint makes ints only; torch also draws whole numbers into float tensors.
std::string randint_of_shape(Call& call, const std::string& shape) {
  const std::string low = call.has("low") ? call.literal("low", "0") : "0";
  const std::string dtype = output_dtype(call);
  const std::string draw =
      fmt::format("mx.random.randint({}, {}, {}", low, call.literal("high", "1"), shape);
  if (is_float_dtype(dtype)) return fmt::format("{}).astype({})", draw, dtype);
  return fmt::format("{}, dtype={})", draw, dtype);
}

std::string randint(Call& call) { return randint_of_shape(call, call.literal("size", "()")); }

std::string randint_like(Call& call) {
  return randint_of_shape(call, call.tensor("self") + ".shape");
}

// tensor.uniform_(from, to): fresh values of the tensor's shape and dtype.
std::string uniform(Call& call) {
  return fmt::format("mx.random.uniform({}, {}, {}.shape, dtype={})", call.literal("from", "0.0"),
                     call.literal("to", "1.0"), call.tensor("self"), output_dtype(call));
}

std::string bernoulli(Call& call) {
  if (call.has("p")) {
    return fmt::format("mx.random.bernoulli({}, {}.shape).astype({})", call.literal("p", "0.5"),
                       call.tensor("self"), output_dtype(call));
  }
  return fmt::format("mx.random.bernoulli({}).astype({})", call.tensor("self"), output_dtype(call));
}

std::string randperm(Call& call) {
  return fmt::format("mx.random.permutation({}).astype({})", call.literal("n", "1"),
                     output_dtype(call));
}

// Dropout is the identity unless the graph was exported in training mode.
std::string dropout(Call& call) {
  if (!call.flag("train", false)) return call.tensor("input");
  return fmt::format("{}({}, {})", call.helper("dropout"), call.tensor("input"),
                     call.literal("p", "0.5"));
}

// native_dropout's train is optional; None means training, as in ATen. The mask's dtype is
// what torch recorded: bool, but the input's for an empty input.
std::string native_dropout(Call& call) {
  const TensorMeta* mask = call.out_meta(1);
  const std::string mask_dtype =
      mask == nullptr ? "mx.bool_" : mlx_dtype(mask->dtype).value_or("mx.bool_");
  if (!call.flag("train", true)) {
    return fmt::format("({0}, mx.ones({0}.shape, dtype={1}))", call.tensor("input"), mask_dtype);
  }
  return fmt::format("{}({}, {}, {})", call.helper("native_dropout"), call.tensor("input"),
                     call.literal("p", "0.5"), mask_dtype);
}

// Checks the tracer recorded; nothing to compute at inference.
std::string no_op(Call& /*call*/) { return {}; }

std::string item(Call& call) { return fmt::format("{}.item()", call.tensor("self")); }

}  // namespace

std::vector<OpEntry> creation_ops() {
  return {
      {"aten.arange.default", arange, kStandard},
      {"aten.arange.start", arange, kStandard},
      {"aten.arange.start_step", arange, kStandard},
      {"aten.linspace.default", linspace, kStandard},
      {"aten.eye.default", eye, kStandard},
      {"aten.eye.m", eye, kStandard},
      {"aten.full.default", full, kStandard},
      {"mlx.array", literal_array, kStandard},
      {"aten.zeros.default", constant<"mx.zeros">, kStandard},
      {"aten.ones.default", constant<"mx.ones">, kStandard},
      {"aten.empty.memory_format", constant<"mx.zeros">, kStandard},
      {"aten.empty_strided.default", constant<"mx.zeros">, kStandard},
      {"aten.full_like.default", full_like, kLike},
      {"aten.zeros_like.default", constant_like<"mx.zeros">, kLike},
      {"aten.ones_like.default", constant_like<"mx.ones">, kLike},
      {"aten.empty_like.default", constant_like<"mx.zeros">, kLike},
      {"aten.zero.default", constant_like<"mx.zeros">, kLike},
      {"aten.new_zeros.default", constant<"mx.zeros">, kStandard},
      {"aten.new_ones.default", constant<"mx.ones">, kStandard},
      {"aten.new_empty.default", constant<"mx.zeros">, kStandard},
      {"aten.new_empty_strided.default", constant<"mx.zeros">, kStandard},
      {"aten.new_full.default", full, kStandard},
      {"aten.scalar_tensor.default", scalar_tensor, kStandard},
      {"aten.fill.Scalar", fill, kLike},
      {"aten.fill.Tensor", fill, kLike},
      {"aten.rand.default", rand, kStandard},
      {"aten.randn.default", randn, kStandard},
      {"aten.rand_like.default", rand_like, kLike},
      {"aten.randn_like.default", randn_like, kLike},
      {"aten.randint.default", randint, kStandard},
      {"aten.randint.low", randint, kStandard},
      {"aten.randint_like.default", randint_like, kLike},
      {"aten.randint_like.low_dtype", randint_like, kLike},
      {"aten.uniform.default", uniform, kLike},
      {"aten.bernoulli.default", bernoulli, kLike},
      {"aten.bernoulli.p", bernoulli, kLike},
      {"aten.randperm.default", randperm, kStandard},
      {"aten.dropout.default", dropout, kLike},
      {"aten.native_dropout.default", native_dropout, kLike},
      {"aten._assert_scalar.default", no_op, kStandard},
      {"aten._assert_tensor_metadata.default", no_op, kStandard},
      {"aten._assert_async.default", no_op, kStandard},
      {"aten._assert_async.msg", no_op, kStandard},
      {"aten.sym_constrain_range.default", no_op, kStandard},
      {"aten.sym_constrain_range_for_size.default", no_op, kStandard},
      {"aten._local_scalar_dense.default", item, kStandard},
      {"aten.item.default", item, kStandard},
  };
}

std::vector<UnsupportedOp> unsupported_op_table() {
  return {
      {"aten.nonzero.default",
       "its output shape depends on the data, and MLX needs shapes known before evaluation"},
      {"aten.resize_.default", "resizes a tensor's storage in place; MLX arrays are immutable"},
      {"aten.masked_select.default",
       "its output shape depends on the data, and MLX needs shapes known before evaluation"},
      {"aten._unique2.default",
       "its output shape depends on the data, and MLX needs shapes known before evaluation"},
      {"aten.unique_dim.default",
       "its output shape depends on the data, and MLX needs shapes known before evaluation"},
      {"aten.unique_consecutive.default",
       "its output shape depends on the data, and MLX needs shapes known before evaluation"},
      {"aten.repeat_interleave.Tensor",
       "its output length is the sum of the repeats tensor, known only from the data"},
      {"aten.repeat_interleave.self_Tensor",
       "its output length is the sum of the repeats tensor, known only from the data"},
      {"aten._upsample_bilinear2d_aa.default",
       "antialiased interpolation (antialias=True) is not implemented yet"},
      {"aten._upsample_bicubic2d_aa.default",
       "antialiased interpolation (antialias=True) is not implemented yet"},
      {"aten.max_unpool2d.default",
       "needs the indices of max pooling, which the translation does not compute"},
      {"aten.max_unpool3d.default",
       "needs the indices of max pooling, which the translation does not compute"},
      {"aten.grid_sampler_3d.default", "3-d grid sampling is not implemented yet"},
  };
}

}  // namespace torch2mlx
