// Tensor creation: ranges, fills, random tensors, and the ops that only exist for
// training or for the tracer (dropout, asserts), which become no-ops at inference.
#include <algorithm>
#include <array>
#include <string_view>

#include "call.h"
#include "emit_util.h"

namespace torch2mlx {

namespace {

constexpr LayoutRule kStandard = LayoutRule::Standard;
// *_like ops only read the input's shape: they keep its storage order, no transpose.
constexpr LayoutRule kLike = LayoutRule::Elementwise;

/// The output dtype as `mx.float32`: dtype= if given, else what torch recorded.
py::Expr output_dtype(Call& call) {
  if (const auto dtype = call.dtype("dtype")) return *dtype;
  if (call.out_meta() != nullptr) {
    if (const auto mlx = mlx_dtype_expr(call.out_meta()->dtype)) return *mlx;
  }
  return py::dotted("mx.float32");
}

/// Whether `dtype` is MLX dtype `mlx` ("mx.float32").
bool is_dtype(const py::Expr& dtype, std::string_view mlx) { return dtype.same(py::dotted(mlx)); }

bool is_float_dtype(const py::Expr& dtype) {
  static constexpr std::array<std::string_view, 4> kFloats{"mx.float16", "mx.bfloat16",
                                                           "mx.float32", "mx.float64"};
  return std::any_of(kFloats.begin(), kFloats.end(),
                     [&](std::string_view mlx) { return is_dtype(dtype, mlx); });
}

/// True when the argument is a plain integer (not a float, not a symbolic size).
bool literal_int(Call& call, std::string_view name) {
  const Arg* arg = call.node().input(name);
  return arg == nullptr ||
         (arg->kind == ArgKind::Int && (arg->names.empty() || arg->names[0].empty()));
}

// Float ranges are start + step * i: mx.arange accumulates the step and drifts (1e-3 after
// 1000 steps of 0.1), while torch computes each element from its index.
py::Expr arange(Call& call) {
  const py::Expr start = call.has("start") ? call.literal("start", py::integer(0)) : py::integer(0);
  const py::Expr end = call.literal("end", py::integer(0));
  const py::Expr step = call.has("step") ? call.literal("step", py::integer(1)) : py::integer(1);
  const py::Expr dtype = output_dtype(call);
  if (!is_float_dtype(dtype) || (literal_int(call, "start") && literal_int(call, "step"))) {
    return py::call("mx.arange", {start, end, step}, {{"dtype", dtype}});
  }
  const py::Expr count = py::call("math.ceil", {(end - start) / step});
  const py::Expr range =
      start + step * py::call("mx.arange", {count}, {{"dtype", py::dotted("mx.float32")}});
  return is_dtype(dtype, "mx.float32") ? range : range.method("astype", {dtype});
}

// A constant the compiler folded (fold-constants), as a nested list literal in row-major
// order.
py::Expr literal_array(Call& call) {
  const Arg* values = call.node().input("values");
  const std::vector<std::int64_t> shape = call.ints("shape");
  const py::Expr dtype = output_dtype(call);
  if (values == nullptr) call.unsupported("a literal array without values");
  const bool boolean = is_dtype(dtype, "mx.bool_");
  const bool floating = is_float_dtype(dtype);
  const auto element = [&](double value) {
    if (boolean) return py::boolean(value != 0.0);
    if (!floating) return py::integer(static_cast<std::int64_t>(value));
    return py::number(value);
  };
  std::size_t next = 0;
  const auto nested = [&](const auto& self, std::size_t axis) -> py::Expr {
    if (axis == shape.size())
      return next < values->floats.size() ? element(values->floats[next++]) : py::integer(0);
    std::vector<py::Expr> items;
    for (std::int64_t index = 0; index < shape[axis]; ++index)
      items.push_back(self(self, axis + 1));
    return py::list(std::move(items));
  };
  return py::call("mx.array", {nested(nested, 0)}, {{"dtype", dtype}});
}

py::Expr linspace(Call& call) {
  return call.helper("linspace")({call.literal("start", py::integer(0)),
                                  call.literal("end", py::integer(0)),
                                  call.literal("steps", py::integer(1)), output_dtype(call)});
}

py::Expr eye(Call& call) {
  const py::Expr n = call.literal("n", py::integer(1));
  return py::call("mx.eye", {n, call.has("m") ? call.literal("m", py::integer(1)) : n},
                  {{"dtype", output_dtype(call)}});
}

// mx.full keeps a float value float whatever dtype= says; torch truncates it to the dtype.
py::Expr fill_value(Call& call, std::string_view name, const py::Expr& dtype) {
  py::Expr value = call.literal(name, py::integer(0));
  const Arg* arg = call.node().input(name);
  if (arg == nullptr || arg->kind != ArgKind::Float || is_float_dtype(dtype)) return value;
  return py::call("mx.array", {value}, {{"dtype", dtype}});
}

py::Expr full(Call& call) {
  const py::Expr dtype = output_dtype(call);
  return py::call("mx.full",
                  {call.literal("size", py::tuple({})), fill_value(call, "fill_value", dtype)},
                  {{"dtype", dtype}});
}

/// mx.zeros / mx.ones of the size argument, e.g. constant<"mx.zeros">.
template <Text F>
py::Expr constant(Call& call) {
  return py::call(F.view(), {call.literal("size", py::tuple({}))}, {{"dtype", output_dtype(call)}});
}

py::Expr full_like(Call& call) {
  const py::Expr dtype = output_dtype(call);
  return py::call("mx.full",
                  {call.tensor("self").attr("shape"), fill_value(call, "fill_value", dtype)},
                  {{"dtype", dtype}});
}

/// mx.zeros / mx.ones of the input's shape.
template <Text F>
py::Expr constant_like(Call& call) {
  return py::call(F.view(), {call.tensor("self").attr("shape")}, {{"dtype", output_dtype(call)}});
}

py::Expr scalar_tensor(Call& call) {
  return py::call("mx.array", {call.literal("s", py::integer(0))}, {{"dtype", output_dtype(call)}});
}

py::Expr fill(Call& call) {
  const py::Expr self = call.tensor("self");
  if (call.meta("value") != nullptr) {
    return py::call("mx.broadcast_to", {call.tensor("value").method("astype", {self.attr("dtype")}),
                                        self.attr("shape")});
  }
  const py::Expr dtype = call.tensor_dtype("self");
  return py::call("mx.full", {self.attr("shape"), fill_value(call, "value", dtype)},
                  {{"dtype", dtype}});
}

py::Expr rand(Call& call) {
  return py::call("mx.random.uniform", {},
                  {{"shape", call.literal("size", py::tuple({}))}, {"dtype", output_dtype(call)}});
}

py::Expr randn(Call& call) {
  return py::call("mx.random.normal", {},
                  {{"shape", call.literal("size", py::tuple({}))}, {"dtype", output_dtype(call)}});
}

py::Expr rand_like(Call& call) {
  return py::call("mx.random.uniform", {},
                  {{"shape", call.tensor("self").attr("shape")}, {"dtype", output_dtype(call)}});
}

py::Expr randn_like(Call& call) {
  return py::call("mx.random.normal", {},
                  {{"shape", call.tensor("self").attr("shape")}, {"dtype", output_dtype(call)}});
}

// mx.random.randint makes ints only; torch also draws whole numbers into float tensors.
py::Expr randint_of_shape(Call& call, const py::Expr& shape) {
  const py::Expr low = call.has("low") ? call.literal("low", py::integer(0)) : py::integer(0);
  const py::Expr dtype = output_dtype(call);
  const py::Expr high = call.literal("high", py::integer(1));
  if (is_float_dtype(dtype)) {
    return py::call("mx.random.randint", {low, high, shape}).method("astype", {dtype});
  }
  return py::call("mx.random.randint", {low, high, shape}, {{"dtype", dtype}});
}

py::Expr randint(Call& call) { return randint_of_shape(call, call.literal("size", py::tuple({}))); }

py::Expr randint_like(Call& call) {
  return randint_of_shape(call, call.tensor("self").attr("shape"));
}

// tensor.uniform_(from, to): fresh values of the tensor's shape and dtype.
py::Expr uniform(Call& call) {
  return py::call("mx.random.uniform",
                  {call.literal("from", py::number(0.0)), call.literal("to", py::number(1.0)),
                   call.tensor("self").attr("shape")},
                  {{"dtype", output_dtype(call)}});
}

py::Expr bernoulli(Call& call) {
  if (call.has("p")) {
    return py::call("mx.random.bernoulli",
                    {call.literal("p", py::number(0.5)), call.tensor("self").attr("shape")})
        .method("astype", {output_dtype(call)});
  }
  return py::call("mx.random.bernoulli", {call.tensor("self")})
      .method("astype", {output_dtype(call)});
}

py::Expr randperm(Call& call) {
  return py::call("mx.random.permutation", {call.literal("n", py::integer(1))})
      .method("astype", {output_dtype(call)});
}

// Dropout is the identity unless the graph was exported in training mode.
py::Expr dropout(Call& call) {
  if (!call.flag("train", false)) return call.tensor("input");
  return call.helper("dropout")({call.tensor("input"), call.literal("p", py::number(0.5))});
}

// native_dropout's train is optional; None means training, as in ATen. The mask's dtype is
// what torch recorded: bool, but the input's for an empty input.
py::Expr native_dropout(Call& call) {
  const TensorMeta* mask = call.out_meta(1);
  const py::Expr mask_dtype = mask == nullptr
                                  ? py::dotted("mx.bool_")
                                  : mlx_dtype_expr(mask->dtype).value_or(py::dotted("mx.bool_"));
  if (!call.flag("train", true)) {
    const py::Expr input = call.tensor("input");
    return py::tuple({input, py::call("mx.ones", {input.attr("shape")}, {{"dtype", mask_dtype}})});
  }
  return call.helper("native_dropout")(
      {call.tensor("input"), call.literal("p", py::number(0.5)), mask_dtype});
}

// Checks the tracer recorded; nothing to compute at inference.
py::Expr no_op(Call& /*call*/) { return py::nothing(); }

py::Expr item(Call& call) { return call.tensor("self").method("item"); }

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
