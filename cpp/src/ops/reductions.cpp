// Reductions (sum, mean, max, var, ...), scans, softmax, sort and top-k. Axis arguments go
// through call.axes(), so these run on channels-last tensors without transposes.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <string_view>

#include "call.h"
#include "emit_util.h"

namespace torch2mlx {

namespace {

constexpr LayoutRule kReduce = LayoutRule::Reduce;
constexpr LayoutRule kAxis = LayoutRule::Axis;
constexpr LayoutRule kStandard = LayoutRule::Standard;

bool is_scalar(Call& call) { return call.rank(first_name(call)) == 0; }

// The reduced axes as an expression. torch's dim=None and dim=[] both mean every axis, and
// a 0-d tensor accepts dim 0 / -1, which MLX spells "no axes at all": None.
py::Expr axis_expr(Call& call, std::string_view name = "dim") {
  if (!call.has(name) || is_scalar(call)) return py::none();
  const auto axes = call.axes(name);
  if (axes.empty()) return py::none();
  return py::ints(axes);
}

py::Expr keepdims(Call& call) { return py::boolean(call.flag("keepdim", false)); }

// The input cast to torch's result dtype: dtype= casts first, and sums, products and scans
// of ints and bools accumulate in int64 (softmax's half_to_float likewise shows up here).
py::Expr promoted_input(Call& call) {
  py::Expr self = call.tensor(first_name(call));
  const TensorMeta* in = call.meta(first_name(call));
  const TensorMeta* out = call.out_meta(0);
  if (in == nullptr || out == nullptr || in->dtype == out->dtype) return self;
  const auto dtype = mlx_dtype_expr(out->dtype);
  return dtype ? self.method("astype", {*dtype}) : self;
}

bool statically_empty(Call& call) {
  const TensorMeta* in = call.meta(first_name(call));
  return in != nullptr && std::any_of(in->shape.begin(), in->shape.end(), [](const Dim& dim) {
           return dim.symbol.empty() && dim.hint == 0;
         });
}

/// The result of reducing no elements.
enum class Empty : std::uint8_t {
  Refused,  // torch refuses the reduction of empty input (max, min)
  Zero,
  One,
  NaN,
  MinusInfinity,
  True,
  False
};

py::Expr identity(Empty empty) {
  switch (empty) {
    case Empty::Zero:
      return py::integer(0);
    case Empty::One:
      return py::integer(1);
    case Empty::NaN:
      return py::number(std::numeric_limits<double>::quiet_NaN());
    case Empty::MinusInfinity:
      return py::number(-std::numeric_limits<double>::infinity());
    case Empty::True:
      return py::boolean(true);
    case Empty::False:
      return py::boolean(false);
    case Empty::Refused:
      break;
  }
  return py::none();
}

// MLX reductions of empty arrays return uninitialised values (or raise, for logsumexp), so a
// statically empty input gives the reduction's identity. Empty::Refused keeps `expression`:
// torch refuses those reductions (max, min) on empty input.
py::Expr unless_empty(Call& call, Empty empty, const py::Expr& expression) {
  if (empty == Empty::Refused || !statically_empty(call)) return expression;
  const TensorMeta* out = call.out_meta(0);
  const auto dtype = out == nullptr ? std::nullopt : mlx_dtype_expr(out->dtype);
  if (!dtype) return expression;
  const py::Expr reduced = py::call("mx.sum", {call.tensor(first_name(call))},
                                    {{"axis", axis_expr(call)}, {"keepdims", keepdims(call)}});
  return py::call("mx.full", {reduced.attr("shape"), identity(empty)}, {{"dtype", *dtype}});
}

/// f(self, axis=dim, keepdims=keepdim), e.g. reduce<"mx.sum", Empty::Zero>, where the second
/// argument is the result of reducing no elements.
template <Text F, Empty E>
py::Expr reduce(Call& call) {
  return unless_empty(call, E,
                      py::call(F.view(), {promoted_input(call)},
                               {{"axis", axis_expr(call)}, {"keepdims", keepdims(call)}}));
}

/// f(self) over every element.
template <Text F, Empty E>
py::Expr reduce_all(Call& call) {
  return unless_empty(call, E, py::call(F.view(), {promoted_input(call)}));
}

// all/any return bool, except for uint8 inputs, where torch returns uint8.
template <Text F, Empty E>
py::Expr logical_reduce(Call& call) {
  py::Expr result = py::call(F.view(), {call.tensor("self")},
                             {{"axis", axis_expr(call)}, {"keepdims", keepdims(call)}});
  const TensorMeta* out = call.out_meta(0);
  if (out != nullptr && out->dtype == "uint8") {
    result = result.method("astype", {py::dotted("mx.uint8")});
  }
  return unless_empty(call, E, result);
}

/// (values, int64 indices) along one axis: max.dim, min.dim. MLX's argmax, like torch's,
/// returns the first of tied elements.
template <Text F, Text Arg>
py::Expr reduce_with_index(Call& call) {
  const py::Expr self = call.tensor("self");
  const py::Expr axis = is_scalar(call) ? py::none() : py::integer(call.axis("dim", 0));
  const py::Expr keep = keepdims(call);
  return py::tuple({py::call(F.view(), {self}, {{"axis", axis}, {"keepdims", keep}}),
                    py::call(Arg.view(), {self}, {{"axis", axis}, {"keepdims", keep}})
                        .method("astype", {py::dotted("mx.int64")})});
}

/// argmax/argmin: over one axis, or over the flattened tensor when dim is None (keepdim then
/// keeps every axis, with size 1).
template <Text F>
py::Expr arg_reduce(Call& call) {
  const py::Expr self = call.tensor("self");
  const py::Expr int64 = py::dotted("mx.int64");
  if (!call.has("dim") || is_scalar(call)) {
    py::Expr flat =
        py::call(F.view(), {self.method("reshape", {py::integer(-1)})}).method("astype", {int64});
    if (!call.flag("keepdim", false)) return flat;
    return flat.method("reshape", {py::ints({1}) * self.attr("ndim")});
  }
  return py::call(F.view(), {self},
                  {{"axis", py::integer(call.axis("dim", 0))}, {"keepdims", keepdims(call)}})
      .method("astype", {int64});
}

// var/std with torch's correction (possibly fractional); the .dim/.default overloads say
// unbiased=True/False instead.
template <bool Root>
py::Expr variance(Call& call) {
  double correction = 1.0;
  if (call.has("correction")) {
    correction = call.number("correction", 1.0);
  } else if (call.has("unbiased")) {
    correction = call.flag("unbiased", true) ? 1.0 : 0.0;
  }
  return unless_empty(
      call, Empty::NaN,
      call.helper("variance")({call.tensor("self"), axis_expr(call), py::number(correction),
                               keepdims(call), py::boolean(Root)}));
}

// var_mean/std_mean: (var or std, mean).
template <bool Root>
py::Expr variance_mean(Call& call) {
  return py::tuple({variance<Root>(call), reduce<"mx.mean", Empty::NaN>(call)});
}

py::Expr vector_norm(Call& call) {
  return unless_empty(
      call, Empty::Zero,
      call.helper("vector_norm")({promoted_input(call), py::number(call.number("ord", 2.0)),
                                  axis_expr(call), keepdims(call)}));
}

// aminmax: (min, max), over one axis or over everything.
py::Expr aminmax(Call& call) {
  return py::tuple(
      {reduce<"mx.min", Empty::Refused>(call), reduce<"mx.max", Empty::Refused>(call)});
}

// count_nonzero: an int64 count, over the given axes or everything (never keepdim).
py::Expr count_nonzero(Call& call) {
  const py::Expr nonzero = py::binary(call.tensor("self"), py::Op::NotEq, py::integer(0));
  return py::call("mx.sum", {nonzero.method("astype", {py::dotted("mx.int64")})},
                  {{"axis", axis_expr(call)}});
}

/// cumsum/cumprod; a 0-d tensor is its own scan.
template <Text F>
py::Expr scan(Call& call) {
  if (is_scalar(call)) return promoted_input(call);
  return py::call(F.view(), {promoted_input(call)}, {{"axis", py::integer(call.axis("dim", 0))}});
}

// softmax of a 0-d tensor is 1 (log_softmax: 0); MLX refuses axis 0 there.
py::Expr softmax(Call& call) {
  const py::Expr self = promoted_input(call);
  if (is_scalar(call)) return py::call("mx.ones_like", {self});
  return py::call("mx.softmax", {self},
                  {{"axis", py::integer(call.axis("dim", -1))}, {"precise", py::boolean(true)}});
}

py::Expr log_softmax(Call& call) {
  const py::Expr self = promoted_input(call);
  if (is_scalar(call)) return py::call("mx.zeros_like", {self});
  return call.helper("log_softmax")({self, py::integer(call.axis("dim", -1))});
}

py::Expr sort(Call& call) {
  return call.helper("sort")({call.tensor("self"), py::integer(call.axis("dim", -1)),
                              py::boolean(call.flag("descending", false))});
}

py::Expr argsort(Call& call) { return sort(call)[py::integer(1)]; }

// sorted=False allows any order; the sorted one is as good as any.
py::Expr topk(Call& call) {
  call.helper("sort");
  return call.helper("topk")({call.tensor("self"), call.literal("k", py::integer(1)),
                              py::integer(call.axis("dim", -1)),
                              py::boolean(call.flag("largest", true))});
}

}  // namespace

std::vector<OpEntry> reduction_ops() {
  return {
      {"aten.sum.dim_IntList", reduce<"mx.sum", Empty::Zero>, kReduce},
      {"aten.sum.default", reduce_all<"mx.sum", Empty::Zero>, kStandard},
      {"aten.mean.dim", reduce<"mx.mean", Empty::NaN>, kReduce},
      {"aten.mean.default", reduce_all<"mx.mean", Empty::NaN>, kStandard},
      {"aten.amax.default", reduce<"mx.max", Empty::Refused>, kReduce},
      {"aten.amin.default", reduce<"mx.min", Empty::Refused>, kReduce},
      {"aten.max.default", reduce_all<"mx.max", Empty::Refused>, kStandard},
      {"aten.min.default", reduce_all<"mx.min", Empty::Refused>, kStandard},
      {"aten.max.dim", reduce_with_index<"mx.max", "mx.argmax">, kReduce},
      {"aten.min.dim", reduce_with_index<"mx.min", "mx.argmin">, kReduce},
      {"aten.argmax.default", arg_reduce<"mx.argmax">, kStandard},
      {"aten.argmin.default", arg_reduce<"mx.argmin">, kStandard},
      {"aten.prod.default", reduce_all<"mx.prod", Empty::One>, kStandard},
      {"aten.prod.dim_int", reduce<"mx.prod", Empty::One>, kReduce},
      {"aten.var.default", variance<false>, kStandard},
      {"aten.var.correction", variance<false>, kReduce},
      {"aten.var.dim", variance<false>, kReduce},
      {"aten.std.default", variance<true>, kStandard},
      {"aten.std.correction", variance<true>, kReduce},
      {"aten.std.dim", variance<true>, kReduce},
      {"aten.var_mean.correction", variance_mean<false>, kReduce},
      {"aten.std_mean.correction", variance_mean<true>, kReduce},
      {"aten.linalg_vector_norm.default", vector_norm, kReduce},
      {"aten.aminmax.default", aminmax, kReduce},
      {"aten.count_nonzero.default", count_nonzero, kReduce},
      {"aten.count_nonzero.dim_IntList", count_nonzero, kReduce},
      {"aten.all.default", logical_reduce<"mx.all", Empty::True>, kStandard},
      {"aten.all.dim", logical_reduce<"mx.all", Empty::True>, kReduce},
      {"aten.all.dims", logical_reduce<"mx.all", Empty::True>, kReduce},
      {"aten.any.default", logical_reduce<"mx.any", Empty::False>, kStandard},
      {"aten.any.dim", logical_reduce<"mx.any", Empty::False>, kReduce},
      {"aten.any.dims", logical_reduce<"mx.any", Empty::False>, kReduce},
      {"aten.logsumexp.default", reduce<"mx.logsumexp", Empty::MinusInfinity>, kReduce},
      {"aten.cumsum.default", scan<"mx.cumsum">, kAxis},
      {"aten.cumprod.default", scan<"mx.cumprod">, kAxis},
      {"aten.softmax.int", softmax, kAxis},
      {"aten._softmax.default", softmax, kAxis},
      {"aten.log_softmax.int", log_softmax, kAxis},
      {"aten._log_softmax.default", log_softmax, kAxis},
      {"aten.sort.default", sort, kAxis},
      {"aten.sort.stable", sort, kAxis},
      {"aten.argsort.default", argsort, kAxis},
      {"aten.argsort.stable", argsort, kAxis},
      {"aten.topk.default", topk, kAxis},
  };
}

}  // namespace torch2mlx
