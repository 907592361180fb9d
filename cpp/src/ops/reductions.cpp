// Reductions (sum, mean, max, var, ...), scans, softmax, sort and top-k. Axis arguments go
// through call.axes(), so these run on channels-last tensors without transposes.
#include <fmt/format.h>

#include <algorithm>

#include "call.h"
#include "emit_util.h"

namespace torch2mlx {

namespace {

constexpr LayoutRule kReduce = LayoutRule::Reduce;
constexpr LayoutRule kAxis = LayoutRule::Axis;
constexpr LayoutRule kStandard = LayoutRule::Standard;

std::string py_bool(bool value) { return value ? "True" : "False"; }

bool is_scalar(Call& call) { return call.rank(first_name(call)) == 0; }

// The reduced axes as a Python literal. torch's dim=None and dim=[] both mean every axis,
// and a 0-d tensor accepts dim 0 / -1, which MLX spells "no axes at all": None.
std::string axis_text(Call& call, std::string_view name = "dim") {
  if (!call.has(name) || is_scalar(call)) return "None";
  const auto axes = call.axes(name);
  if (axes.empty()) return "None";
  return int_tuple(axes);
}

std::string keepdims(Call& call) { return py_bool(call.flag("keepdim", false)); }

// The input cast to torch's result dtype: dtype= casts first, and sums, products and scans
// of ints and bools accumulate in int64 (softmax's half_to_float likewise shows up here).
std::string promoted_input(Call& call) {
  std::string self = call.tensor(first_name(call));
  const TensorMeta* in = call.meta(first_name(call));
  const TensorMeta* out = call.out_meta(0);
  if (in == nullptr || out == nullptr || in->dtype == out->dtype) return self;
  const auto dtype = mlx_dtype(out->dtype);
  return dtype ? fmt::format("{}.astype({})", self, *dtype) : self;
}

bool statically_empty(Call& call) {
  const TensorMeta* in = call.meta(first_name(call));
  return in != nullptr && std::any_of(in->shape.begin(), in->shape.end(), [](const Dim& dim) {
           return dim.symbol.empty() && dim.hint == 0;
         });
}

// MLX reductions of empty arrays return uninitialised values (or raise, for logsumexp), so a
// statically empty input gives the reduction's identity. An empty identity keeps
// `expression`: torch refuses those reductions (max, min) on empty input.
std::string unless_empty(Call& call, std::string_view identity, const std::string& expression) {
  if (identity.empty() || !statically_empty(call)) return expression;
  const TensorMeta* out = call.out_meta(0);
  const auto dtype = out == nullptr ? std::nullopt : mlx_dtype(out->dtype);
  if (!dtype) return expression;
  return fmt::format("mx.full(mx.sum({}, axis={}, keepdims={}).shape, {}, dtype={})",
                     call.tensor(first_name(call)), axis_text(call), keepdims(call), identity,
                     *dtype);
}

/// f(self, axis=dim, keepdims=keepdim), e.g. reduce<"mx.sum", "0">, where the second
/// argument is the result of reducing no elements.
template <Text F, Text Empty>
std::string reduce(Call& call) {
  return unless_empty(call, Empty.view(),
                      fmt::format("{}({}, axis={}, keepdims={})", F.view(), promoted_input(call),
                                  axis_text(call), keepdims(call)));
}

/// f(self) over every element.
template <Text F, Text Empty>
std::string reduce_all(Call& call) {
  return unless_empty(call, Empty.view(), fmt::format("{}({})", F.view(), promoted_input(call)));
}

// all/any return bool, except for uint8 inputs, where torch returns uint8.
template <Text F, Text Empty>
std::string logical_reduce(Call& call) {
  std::string result = fmt::format("{}({}, axis={}, keepdims={})", F.view(), call.tensor("self"),
                                   axis_text(call), keepdims(call));
  const TensorMeta* out = call.out_meta(0);
  if (out != nullptr && out->dtype == "uint8") result += ".astype(mx.uint8)";
  return unless_empty(call, Empty.view(), result);
}

/// (values, int64 indices) along one axis: max.dim, min.dim. MLX's argmax, like torch's,
/// returns the first of tied elements.
template <Text F, Text Arg>
std::string reduce_with_index(Call& call) {
  const std::string self = call.tensor("self");
  const std::string axis = is_scalar(call) ? "None" : fmt::format("{}", call.axis("dim", 0));
  const std::string keep = keepdims(call);
  return fmt::format(
      "({}({}, axis={}, keepdims={}), {}({}, axis={}, keepdims={}).astype(mx.int64))", F.view(),
      self, axis, keep, Arg.view(), self, axis, keep);
}

/// argmax/argmin: over one axis, or over the flattened tensor when dim is None (keepdim then
/// keeps every axis, with size 1).
template <Text F>
std::string arg_reduce(Call& call) {
  const std::string self = call.tensor("self");
  if (!call.has("dim") || is_scalar(call)) {
    std::string flat = fmt::format("{}({}.reshape(-1)).astype(mx.int64)", F.view(), self);
    if (!call.flag("keepdim", false)) return flat;
    return fmt::format("{}.reshape((1,) * {}.ndim)", flat, self);
  }
  return fmt::format("{}({}, axis={}, keepdims={}).astype(mx.int64)", F.view(), self,
                     call.axis("dim", 0), keepdims(call));
}

// var/std with torch's correction (possibly fractional); the .dim/.default overloads say
// unbiased=True/False instead.
template <bool Root>
std::string variance(Call& call) {
  double correction = 1.0;
  if (call.has("correction")) {
    correction = call.number("correction", 1.0);
  } else if (call.has("unbiased")) {
    correction = call.flag("unbiased", true) ? 1.0 : 0.0;
  }
  return unless_empty(
      call, "float(\"nan\")",
      fmt::format("{}({}, {}, {}, {}, {})", call.helper("variance"), call.tensor("self"),
                  axis_text(call), float_literal(correction), keepdims(call), py_bool(Root)));
}

// var_mean/std_mean: (var or std, mean).
template <bool Root>
std::string variance_mean(Call& call) {
  return fmt::format("({}, {})", variance<Root>(call), reduce<"mx.mean", "float(\"nan\")">(call));
}

std::string vector_norm(Call& call) {
  return unless_empty(
      call, "0",
      fmt::format("{}({}, {}, {}, {})", call.helper("vector_norm"), promoted_input(call),
                  float_literal(call.number("ord", 2.0)), axis_text(call), keepdims(call)));
}

// aminmax: (min, max), over one axis or over everything.
std::string aminmax(Call& call) {
  return fmt::format("({}, {})", reduce<"mx.min", "">(call), reduce<"mx.max", "">(call));
}

// count_nonzero: an int64 count, over the given axes or everything (never keepdim).
std::string count_nonzero(Call& call) {
  return fmt::format("mx.sum(({} != 0).astype(mx.int64), axis={})", call.tensor("self"),
                     axis_text(call));
}

/// cumsum/cumprod; a 0-d tensor is its own scan.
template <Text F>
std::string scan(Call& call) {
  if (is_scalar(call)) return promoted_input(call);
  return fmt::format("{}({}, axis={})", F.view(), promoted_input(call), call.axis("dim", 0));
}

// softmax of a 0-d tensor is 1 (log_softmax: 0); MLX refuses axis 0 there.
std::string softmax(Call& call) {
  const std::string self = promoted_input(call);
  if (is_scalar(call)) return fmt::format("mx.ones_like({})", self);
  return fmt::format("mx.softmax({}, axis={}, precise=True)", self, call.axis("dim", -1));
}

std::string log_softmax(Call& call) {
  const std::string self = promoted_input(call);
  if (is_scalar(call)) return fmt::format("mx.zeros_like({})", self);
  return fmt::format("{}({}, {})", call.helper("log_softmax"), self, call.axis("dim", -1));
}

std::string sort(Call& call) {
  return fmt::format("{}({}, {}, {})", call.helper("sort"), call.tensor("self"),
                     call.axis("dim", -1), py_bool(call.flag("descending", false)));
}

std::string argsort(Call& call) { return sort(call) + "[1]"; }

// sorted=False allows any order; the sorted one is as good as any.
std::string topk(Call& call) {
  call.helper("sort");
  return fmt::format("{}({}, {}, {}, {})", call.helper("topk"), call.tensor("self"),
                     call.literal("k", "1"), call.axis("dim", -1),
                     py_bool(call.flag("largest", true)));
}

}  // namespace

std::vector<OpEntry> reduction_ops() {
  return {
      {"aten.sum.dim_IntList", reduce<"mx.sum", "0">, kReduce},
      {"aten.sum.default", reduce_all<"mx.sum", "0">, kStandard},
      {"aten.mean.dim", reduce<"mx.mean", "float(\"nan\")">, kReduce},
      {"aten.mean.default", reduce_all<"mx.mean", "float(\"nan\")">, kStandard},
      {"aten.amax.default", reduce<"mx.max", "">, kReduce},
      {"aten.amin.default", reduce<"mx.min", "">, kReduce},
      {"aten.max.default", reduce_all<"mx.max", "">, kStandard},
      {"aten.min.default", reduce_all<"mx.min", "">, kStandard},
      {"aten.max.dim", reduce_with_index<"mx.max", "mx.argmax">, kReduce},
      {"aten.min.dim", reduce_with_index<"mx.min", "mx.argmin">, kReduce},
      {"aten.argmax.default", arg_reduce<"mx.argmax">, kStandard},
      {"aten.argmin.default", arg_reduce<"mx.argmin">, kStandard},
      {"aten.prod.default", reduce_all<"mx.prod", "1">, kStandard},
      {"aten.prod.dim_int", reduce<"mx.prod", "1">, kReduce},
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
      {"aten.all.default", logical_reduce<"mx.all", "True">, kStandard},
      {"aten.all.dim", logical_reduce<"mx.all", "True">, kReduce},
      {"aten.all.dims", logical_reduce<"mx.all", "True">, kReduce},
      {"aten.any.default", logical_reduce<"mx.any", "False">, kStandard},
      {"aten.any.dim", logical_reduce<"mx.any", "False">, kReduce},
      {"aten.any.dims", logical_reduce<"mx.any", "False">, kReduce},
      {"aten.logsumexp.default", reduce<"mx.logsumexp", "float(\"-inf\")">, kReduce},
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
