// Shape and view ops: reshape, permute, squeeze, concatenation, splitting, slicing, casts.
// MLX arrays are immutable values, so torch's views and copies become the same expression.
#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <optional>

#include "call.h"
#include "emit_util.h"

namespace torch2mlx {

namespace {

constexpr LayoutRule kStandard = LayoutRule::Standard;
constexpr LayoutRule kAxis = LayoutRule::Axis;

py::Expr identity(Call& call) { return call.tensor(first_name(call)); }

py::Expr reshape(Call& call) {
  const py::Expr size =
      call.has("size") ? call.literal("size", py::tuple({})) : call.literal("shape", py::tuple({}));
  return py::call("mx.reshape", {call.tensor("self"), size});
}

// Normalises torch's negative dims against `rank`.
std::int64_t wrap(std::int64_t axis, std::int64_t rank) { return axis < 0 ? axis + rank : axis; }

py::Expr permute(Call& call) {
  std::vector<std::int64_t> dims = call.ints("dims");
  const int rank = call.rank("self");
  for (std::int64_t& dim : dims) dim = wrap(dim, rank);
  return py::call("mx.transpose", {call.tensor("self"), py::ints(dims)});
}

py::Expr transpose(Call& call) {
  const int rank = call.rank("self");
  const std::int64_t dim0 = wrap(call.integer("dim0", 0), std::max(rank, 1));
  const std::int64_t dim1 = wrap(call.integer("dim1", 1), std::max(rank, 1));
  if (rank < 2 || dim0 == dim1) return call.tensor("self");  // torch allows 0-d and 1-d
  return py::call("mx.swapaxes", {call.tensor("self"), py::integer(dim0), py::integer(dim1)});
}

py::Expr matrix_transpose(Call& call) {
  return call.rank("self") < 2 ? call.tensor("self") : call.tensor("self").attr("T");
}

py::Expr unsqueeze(Call& call) {
  return py::call(
      "mx.expand_dims",
      {call.tensor("self"), py::integer(wrap(call.integer("dim", 0), call.rank("self") + 1))});
}

py::Expr squeeze(Call& call) {
  py::Expr self = call.tensor("self");
  const TensorMeta* info = call.meta("self");
  std::vector<std::int64_t> dims;
  if (call.has("dim")) {
    dims = call.ints("dim");
  } else {
    if (info == nullptr) call.unsupported("the input shape is unknown");
    for (std::size_t axis = 0; axis < info->shape.size(); ++axis) {
      if (info->shape[axis].symbol.empty() && info->shape[axis].hint == 1) {
        dims.push_back(static_cast<std::int64_t>(axis));
      }
    }
  }
  // torch ignores dims whose size is not 1; mx.squeeze refuses them.
  std::vector<std::int64_t> ones;
  const int rank = call.rank("self");
  for (const std::int64_t dim : dims) {
    const std::int64_t axis = wrap(dim, std::max(rank, 1));
    if (rank == 0 || info == nullptr) continue;
    const Dim& size = info->shape[static_cast<std::size_t>(axis)];
    if (size.symbol.empty() && size.hint == 1) ones.push_back(axis);
  }
  if (ones.empty()) return self;
  return py::call("mx.squeeze", {self, py::ints(ones)});
}

py::Expr flatten(Call& call) {
  const int rank = std::max(call.rank("self"), 1);
  const std::int64_t start = wrap(call.integer("start_dim", 0), rank);
  const std::int64_t end = wrap(call.integer("end_dim", -1), rank);
  if (call.rank("self") == 0) return py::call("mx.reshape", {call.tensor("self"), py::ints({1})});
  return py::call("mx.flatten", {call.tensor("self"), py::integer(start), py::integer(end)});
}

py::Expr unflatten(Call& call) {
  return py::call("mx.unflatten", {call.tensor("self"),
                                   py::integer(wrap(call.integer("dim", 0), call.rank("self"))),
                                   call.literal("sizes", py::tuple({}))});
}

py::Expr expand(Call& call) {
  return call.helper("expand")({call.tensor("self"), call.literal("size", py::tuple({}))});
}

py::Expr cat(Call& call) {
  return py::call("mx.concatenate", {py::list(call.tensors("tensors"))},
                  {{"axis", py::integer(call.axis("dim", 0))}});
}

py::Expr stack(Call& call) {
  auto tensors = call.tensors("tensors");
  const auto* first = call.meta("tensors");
  const int rank = first == nullptr ? 0 : static_cast<int>(first->shape.size());
  return py::call("mx.stack", {py::list(std::move(tensors))},
                  {{"axis", py::integer(wrap(call.integer("dim", 0), rank + 1))}});
}

py::Expr split(Call& call) {
  return call.helper("split")(
      {call.tensor("self"),
       call.literal(call.has("split_size") ? "split_size" : "split_sizes", py::integer(1))},
      {{"axis", py::integer(call.axis("dim", 0))}});
}

py::Expr chunk(Call& call) {
  call.helper("split");
  return call.helper("chunk")({call.tensor("self"), call.literal("chunks", py::integer(1))},
                              {{"axis", py::integer(call.axis("dim", 0))}});
}

// `x[:, :, index]`: `index` on storage axis `axis`, every axis before it whole.
py::Expr index_on_axis(const py::Expr& tensor, std::int64_t axis, const py::Expr& index) {
  if (axis == 0) return tensor[index];
  std::vector<py::Expr> items(static_cast<std::size_t>(axis),
                              py::slice(std::nullopt, std::nullopt));
  items.push_back(index);
  return tensor[py::tuple(std::move(items))];
}

// One indexing per output (rather than mx.take, which refuses arrays with no elements); the
// graph fixes how many there are.
py::Expr unbind(Call& call) {
  const std::int64_t axis = call.axis("dim", 0);
  const py::Expr self = call.tensor("self");
  const auto& outputs = call.node().outputs;
  std::int64_t count = 0;
  if (outputs.size() == 1 && outputs[0].kind == ArgKind::TensorList) {
    count = static_cast<std::int64_t>(outputs[0].names.size());
  } else {
    const TensorMeta* info = call.meta("self");
    const int rank = call.rank("self");
    const Dim& size =
        info->shape.at(static_cast<std::size_t>(wrap(call.integer("dim", 0), std::max(rank, 1))));
    if (!size.symbol.empty()) call.unsupported("unbind along an axis of symbolic size");
    count = size.hint;
  }
  std::vector<py::Expr> items;
  for (std::int64_t index = 0; index < count; ++index)
    items.push_back(index_on_axis(self, axis, py::integer(index)));
  return py::list(std::move(items));
}

// x[:, :, start:end:step] on storage axis `axis`; a missing bound is left out, and so is a
// step of 1.
py::Expr slice_on_axis(Call& call, std::int64_t axis, const std::optional<py::Expr>& start,
                       const std::optional<py::Expr>& end, const py::Expr& step) {
  const bool unit_step = step.kind() == py::Expr::Kind::Int && step.integer() == 1;
  return index_on_axis(call.tensor(first_name(call)), axis,
                       py::slice(start, end, unit_step ? std::nullopt : std::optional(step)));
}

bool is_zero(const std::optional<py::Expr>& value) {
  return value && value->kind() == py::Expr::Kind::Int && value->integer() == 0;
}

// A slice bound: nullopt for None; constants clamped to +-2^31 (MLX wants 32-bit slice
// indices, and Python slicing clamps to the axis length anyway).
std::optional<py::Expr> bound(Call& call, std::string_view name) {
  if (!call.has(name)) return std::nullopt;
  py::Expr value = call.literal(name);
  if (value.kind() != py::Expr::Kind::Int) return value;  // symbolic
  constexpr std::int64_t kLimit = std::numeric_limits<std::int32_t>::max();
  if (value.integer() >= kLimit) return std::nullopt;
  return py::integer(std::max(value.integer(), -kLimit));
}

py::Expr slice(Call& call) {
  const std::optional<py::Expr> start = bound(call, "start");
  const std::optional<py::Expr> end = bound(call, "end");
  const py::Expr step = call.literal("step", py::integer(1));
  const bool unit_step = step.kind() == py::Expr::Kind::Int && step.integer() == 1;
  if ((!start || is_zero(start)) && !end && unit_step) return call.tensor("self");
  return slice_on_axis(call, call.axis("dim", 0), is_zero(start) ? std::nullopt : start, end, step);
}

// narrow's start may be negative (counted from the end), unlike a slice's end start+length.
py::Expr narrow(Call& call) {
  py::Expr start = call.literal("start", py::integer(0));
  const std::int64_t axis = call.axis("dim", 0);
  const py::Expr size = call.tensor("self").attr("shape")[py::integer(axis)];
  if (start.kind() == py::Expr::Kind::Int && start.integer() < 0) {
    start = size - py::integer(-start.integer());
  } else if (start.kind() == py::Expr::Kind::Unary && start.unary_op() == py::UnaryOp::Neg) {
    start = size - start.parts()[0];  // a negated symbolic size
  }
  return slice_on_axis(call, axis, start, start + call.literal("length", py::integer(0)),
                       py::integer(1));
}

py::Expr select(Call& call) {
  const std::int64_t axis = wrap(call.integer("dim", 0), call.rank("self"));
  return index_on_axis(call.tensor("self"), axis, call.literal("index", py::integer(0)));
}

py::Expr to_copy(Call& call) {
  const auto dtype = call.dtype("dtype");
  const py::Expr self = call.tensor(first_name(call));
  return dtype ? self.method("astype", {*dtype}) : self;
}

py::Expr type_as(Call& call) {
  return call.tensor("self").method("astype", {call.tensor("other").attr("dtype")});
}

py::Expr repeat(Call& call) {
  return py::call("mx.tile", {call.tensor("self"), call.literal("repeats", py::tuple({}))});
}

py::Expr repeat_interleave(Call& call) {
  if (!call.has("dim")) {
    return py::call("mx.repeat", {call.tensor("self").method("reshape", {py::integer(-1)}),
                                  call.literal("repeats", py::integer(1))});
  }
  return py::call("mx.repeat", {call.tensor("self"), call.literal("repeats", py::integer(1))},
                  {{"axis", py::integer(call.axis("dim", 0))}});
}

py::Expr flip(Call& call) {
  return call.helper("flip")({call.tensor("self"), py::ints(call.axes("dims"))});
}

py::Expr roll(Call& call) {
  if (!call.has("dims") || call.ints("dims").empty()) {  // roll the flattened tensor
    const auto shifts = call.ints("shifts");
    return py::call("mx.roll", {call.tensor("self"), py::integer(shifts.empty() ? 0 : shifts[0])});
  }
  return py::call("mx.roll", {call.tensor("self"), call.literal("shifts", py::integer(0))},
                  {{"axis", py::ints(call.axes("dims"))}});
}

py::Expr tril(Call& call) {
  return py::call("mx.tril", {call.tensor("self"), call.literal("diagonal", py::integer(0))});
}

py::Expr triu(Call& call) {
  return py::call("mx.triu", {call.tensor("self"), call.literal("diagonal", py::integer(0))});
}

py::Expr diagonal(Call& call) {
  const int rank = call.rank("self");
  return py::call("mx.diagonal", {call.tensor("self"), py::integer(call.integer("offset", 0)),
                                  py::integer(wrap(call.integer("dim1", 0), rank)),
                                  py::integer(wrap(call.integer("dim2", 1), rank))});
}

py::Expr constant_pad(Call& call) {
  const py::Expr value = call.has("value") ? call.literal("value", py::integer(0)) : py::integer(0);
  return call.helper("pad_constant")(
      {call.tensor("self"), call.literal("pad", py::tuple({})), value});
}

// aten.pad, what F.pad and nn.ReflectionPad*/ReplicationPad*/CircularPad* export as.
py::Expr pad(Call& call) {
  const std::string mode = call.text("mode", "constant");
  if (mode == "constant") return constant_pad(call);
  if (mode != "reflect" && mode != "replicate" && mode != "circular") {
    call.unsupported(fmt::format("pad mode '{}'", mode));
  }
  return call.helper("pad_mode")(
      {call.tensor("self"), call.literal("pad", py::tuple({})), py::string(mode)});
}

// MLX's as_strided reads the row-contiguous data, which is what torch's storage is for any
// tensor an exported graph computes.
py::Expr as_strided(Call& call) {
  return py::call("mx.as_strided",
                  {call.tensor("self"), call.literal("size", py::tuple({})),
                   call.literal("stride", py::tuple({})),
                   call.has("storage_offset") ? call.literal("storage_offset", py::integer(0))
                                              : py::integer(0)});
}

// The result keeps self's dtype: the fill value is converted (1.5 fills an int tensor with 1).
py::Expr masked_fill(Call& call) {
  const py::Expr self = call.tensor("self");
  const TensorMeta* info = call.meta("self");
  const bool floating =
      info != nullptr && (info->dtype.starts_with("float") || info->dtype == "bfloat16");
  py::Expr value = operand(call, "value");
  if (call.meta("value") != nullptr) {
    value = value.method("astype", {self.attr("dtype")});
  } else if (!floating) {
    value = py::call("mx.array", {value}, {{"dtype", self.attr("dtype")}});
  }
  return py::call("mx.where", {call.tensor("mask"), value, self});
}

// unfold: windows of `size` every `step` along dim, the window as a new last axis.
py::Expr unfold(Call& call) {
  const int rank = call.rank("self");
  if (rank == 0) return call.tensor("self").method("reshape", {py::ints({1})});
  return call.helper("unfold")(
      {call.tensor("self"), py::integer(wrap(call.integer("dimension", 0), rank)),
       call.literal("size", py::integer(1)), call.literal("step", py::integer(1))});
}

py::Expr view_dtype(Call& call) {
  return py::call("mx.view", {call.tensor("self"), call.literal("dtype", py::none())});
}

// torch.diff: prepend/append join the input along the axis before differencing.
py::Expr diff(Call& call) {
  const std::int64_t axis = call.axis("dim", -1);
  py::Expr input = call.tensor("self");
  if (call.has("prepend") || call.has("append")) {
    std::vector<py::Expr> parts;
    if (call.has("prepend")) parts.push_back(call.tensor("prepend"));
    parts.push_back(input);
    if (call.has("append")) parts.push_back(call.tensor("append"));
    input = py::call("mx.concatenate", {py::list(std::move(parts))}, {{"axis", py::integer(axis)}});
  }
  return py::call("mx.diff", {input},
                  {{"n", py::integer(call.integer("n", 1))}, {"axis", py::integer(axis)}});
}

}  // namespace

std::vector<OpEntry> shape_ops() {
  return {
      {"aten.view.default", reshape, kStandard},
      {"aten.view_copy.default", reshape, kStandard},
      {"aten._unsafe_view.default", reshape, kStandard},
      {"aten.reshape.default", reshape, kStandard},
      {"aten.permute.default", permute, LayoutRule::Relabel},
      {"aten.permute_copy.default", permute, LayoutRule::Relabel},
      {"aten.transpose.int", transpose, LayoutRule::Relabel},
      {"aten.transpose_copy.int", transpose, LayoutRule::Relabel},
      {"aten.t.default", matrix_transpose, LayoutRule::Relabel},
      {"aten.unsqueeze.default", unsqueeze, kStandard},
      {"aten.unsqueeze_copy.default", unsqueeze, kStandard},
      {"aten.squeeze.default", squeeze, kStandard},
      {"aten.squeeze.dim", squeeze, kStandard},
      {"aten.squeeze.dims", squeeze, kStandard},
      {"aten.squeeze_copy.default", squeeze, kStandard},
      {"aten.squeeze_copy.dim", squeeze, kStandard},
      {"aten.squeeze_copy.dims", squeeze, kStandard},
      {"aten.flatten.using_ints", flatten, kStandard},
      {"aten.unflatten.int", unflatten, kStandard},
      {"aten.expand.default", expand, kStandard},
      {"aten.expand_copy.default", expand, kStandard},
      {"aten.cat.default", cat, kAxis},
      {"aten.concat.default", cat, kAxis},
      {"aten.stack.default", stack, kStandard},
      {"aten.split.Tensor", split, kAxis},
      {"aten.split_copy.Tensor", split, kAxis},
      {"aten.split_with_sizes.default", split, kAxis},
      {"aten.split_with_sizes_copy.default", split, kAxis},
      {"aten.chunk.default", chunk, kAxis},
      {"aten.unbind.int", unbind, kStandard},
      {"aten.slice.Tensor", slice, kAxis},
      {"aten.slice_copy.Tensor", slice, kAxis},
      {"aten.narrow.default", narrow, kAxis},
      {"aten.select.int", select, kStandard},
      {"aten.select_copy.int", select, kStandard},
      {"aten.alias.default", identity, LayoutRule::Elementwise},
      {"aten.alias_copy.default", identity, LayoutRule::Elementwise},
      {"aten.clone.default", identity, LayoutRule::Elementwise},
      {"aten.contiguous.default", identity, LayoutRule::Elementwise},
      {"aten.detach.default", identity, LayoutRule::Elementwise},
      {"aten.lift_fresh_copy.default", identity, LayoutRule::Elementwise},
      {"aten._to_copy.default", to_copy, LayoutRule::Elementwise},
      {"aten.to.dtype", to_copy, LayoutRule::Elementwise},
      {"aten.to.device", to_copy, LayoutRule::Elementwise},
      {"aten.diff.default", diff, LayoutRule::Axis},
      {"aten.to.dtype_layout", to_copy, LayoutRule::Elementwise},
      {"aten.type_as.default", type_as, LayoutRule::Elementwise},
      {"aten.repeat.default", repeat, kStandard},
      {"aten.repeat_interleave.self_int", repeat_interleave, kStandard},
      {"aten.flip.default", flip, kAxis},
      {"aten.roll.default", roll, kAxis},
      {"aten.tril.default", tril, kStandard},
      {"aten.triu.default", triu, kStandard},
      {"aten.diagonal.default", diagonal, kStandard},
      {"aten.constant_pad_nd.default", constant_pad, kStandard},
      {"aten.pad.default", pad, kStandard},
      {"aten.view.dtype", view_dtype, kStandard},
      {"aten.unfold.default", unfold, kStandard},
      {"aten.as_strided.default", as_strided, kStandard},
      {"aten.masked_fill.Scalar", masked_fill, LayoutRule::Elementwise},
      {"aten.masked_fill.Tensor", masked_fill, LayoutRule::Elementwise},
  };
}

}  // namespace torch2mlx
