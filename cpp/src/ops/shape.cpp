// Shape and view ops: reshape, permute, squeeze, concatenation, splitting, slicing, casts.
// MLX arrays are immutable values, so torch's views and copies become the same expression.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <limits>

#include "call.h"
#include "emit_util.h"
#include "torch2mlx/python_text.h"

namespace torch2mlx {

namespace {

constexpr LayoutRule kStandard = LayoutRule::Standard;
constexpr LayoutRule kAxis = LayoutRule::Axis;

std::string identity(Call& call) { return call.tensor(first_name(call)); }

std::string reshape(Call& call) {
  const std::string size =
      call.has("size") ? call.literal("size", "()") : call.literal("shape", "()");
  return fmt::format("mx.reshape({}, {})", call.tensor("self"), size);
}

// Normalises torch's negative dims against `rank`.
std::int64_t wrap(std::int64_t axis, std::int64_t rank) { return axis < 0 ? axis + rank : axis; }

std::string permute(Call& call) {
  std::vector<std::int64_t> dims = call.ints("dims");
  const int rank = call.rank("self");
  for (std::int64_t& dim : dims) dim = wrap(dim, rank);
  return fmt::format("mx.transpose({}, {})", call.tensor("self"), int_tuple(dims));
}

std::string transpose(Call& call) {
  const int rank = call.rank("self");
  const std::int64_t dim0 = wrap(call.integer("dim0", 0), std::max(rank, 1));
  const std::int64_t dim1 = wrap(call.integer("dim1", 1), std::max(rank, 1));
  if (rank < 2 || dim0 == dim1) return call.tensor("self");  // torch allows 0-d and 1-d
  return fmt::format("mx.swapaxes({}, {}, {})", call.tensor("self"), dim0, dim1);
}

std::string matrix_transpose(Call& call) {
  return call.rank("self") < 2 ? call.tensor("self") : fmt::format("{}.T", call.tensor("self"));
}

std::string unsqueeze(Call& call) {
  return fmt::format("mx.expand_dims({}, {})", call.tensor("self"),
                     wrap(call.integer("dim", 0), call.rank("self") + 1));
}

std::string squeeze(Call& call) {
  std::string self = call.tensor("self");
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
  return fmt::format("mx.squeeze({}, {})", self, int_tuple(ones));
}

std::string flatten(Call& call) {
  const int rank = std::max(call.rank("self"), 1);
  const std::int64_t start = wrap(call.integer("start_dim", 0), rank);
  const std::int64_t end = wrap(call.integer("end_dim", -1), rank);
  if (call.rank("self") == 0) return fmt::format("mx.reshape({}, (1,))", call.tensor("self"));
  return fmt::format("mx.flatten({}, {}, {})", call.tensor("self"), start, end);
}

std::string unflatten(Call& call) {
  return fmt::format("mx.unflatten({}, {}, {})", call.tensor("self"),
                     wrap(call.integer("dim", 0), call.rank("self")), call.literal("sizes", "()"));
}

std::string expand(Call& call) {
  return fmt::format("{}({}, {})", call.helper("expand"), call.tensor("self"),
                     call.literal("size", "()"));
}

std::string cat(Call& call) {
  return fmt::format("mx.concatenate([{}], axis={})", fmt::join(call.tensors("tensors"), ", "),
                     call.axis("dim", 0));
}

std::string stack(Call& call) {
  const auto tensors = call.tensors("tensors");
  const auto* first = call.meta("tensors");
  const int rank = first == nullptr ? 0 : static_cast<int>(first->shape.size());
  return fmt::format("mx.stack([{}], axis={})", fmt::join(tensors, ", "),
                     wrap(call.integer("dim", 0), rank + 1));
}

std::string split(Call& call) {
  return fmt::format("{}({}, {}, axis={})", call.helper("split"), call.tensor("self"),
                     call.literal(call.has("split_size") ? "split_size" : "split_sizes", "1"),
                     call.axis("dim", 0));
}

std::string chunk(Call& call) {
  call.helper("split");
  return fmt::format("{}({}, {}, axis={})", call.helper("chunk"), call.tensor("self"),
                     call.literal("chunks", "1"), call.axis("dim", 0));
}

// Indexing rather than mx.take, which refuses arrays with no elements.
std::string unbind(Call& call) {
  const std::int64_t axis = call.axis("dim", 0);
  const std::string self = call.tensor("self");
  std::string prefix;
  for (std::int64_t skip = 0; skip < axis; ++skip) prefix += ":, ";
  return fmt::format("[{}[{}i] for i in range({}.shape[{}])]", self, prefix, self, axis);
}

// x[:, :, start:end:step] on storage axis `axis`; INT64_MAX ends mean "to the end".
std::string slice_text(Call& call, std::int64_t axis, const std::string& start,
                       const std::string& end, const std::string& step) {
  std::string index;
  for (std::int64_t skip = 0; skip < axis; ++skip) index += ":, ";
  index += fmt::format("{}:{}", start, end);
  if (!step.empty() && step != "1") index += ":" + step;
  return fmt::format("{}[{}]", call.tensor(first_name(call)), index);
}

// A slice bound: "" for None; constants clamped to +-2^31 (MLX wants 32-bit slice indices,
// and Python slicing clamps to the axis length anyway).
std::string bound(Call& call, std::string_view name) {
  if (!call.has(name)) return "";
  std::string text = call.literal(name, "");
  std::int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) return text;  // symbolic
  constexpr std::int64_t kLimit = std::numeric_limits<std::int32_t>::max();
  if (value >= kLimit) return "";
  return fmt::format("{}", std::max(value, -kLimit));
}

std::string slice(Call& call) {
  const std::string start = bound(call, "start");
  const std::string end = bound(call, "end");
  const std::string step = call.literal("step", "1");
  if ((start.empty() || start == "0") && end.empty() && step == "1") return call.tensor("self");
  return slice_text(call, call.axis("dim", 0), start == "0" ? "" : start, end, step);
}

// narrow's start may be negative (counted from the end), unlike a slice's end start+length.
std::string narrow(Call& call) {
  std::string start = call.literal("start", "0");
  const std::int64_t axis = call.axis("dim", 0);
  if (start.starts_with('-')) {
    start = fmt::format("{}.shape[{}] - {}", call.tensor("self"), axis, start.substr(1));
  }
  return slice_text(call, axis, start, fmt::format("{} + {}", start, call.literal("length", "0")),
                    "1");
}

std::string select(Call& call) {
  std::string index;
  const std::int64_t axis = wrap(call.integer("dim", 0), call.rank("self"));
  for (std::int64_t skip = 0; skip < axis; ++skip) index += ":, ";
  return fmt::format("{}[{}{}]", call.tensor("self"), index, call.literal("index", "0"));
}

std::string to_copy(Call& call) {
  const auto dtype = call.dtype("dtype");
  const std::string self = call.tensor(first_name(call));
  return dtype ? fmt::format("{}.astype({})", self, *dtype) : self;
}

std::string type_as(Call& call) {
  return fmt::format("{}.astype({}.dtype)", call.tensor("self"), call.tensor("other"));
}

std::string repeat(Call& call) {
  return fmt::format("mx.tile({}, {})", call.tensor("self"), call.literal("repeats", "()"));
}

std::string repeat_interleave(Call& call) {
  if (!call.has("dim")) {
    return fmt::format("mx.repeat({}.reshape(-1), {})", call.tensor("self"),
                       call.literal("repeats", "1"));
  }
  return fmt::format("mx.repeat({}, {}, axis={})", call.tensor("self"),
                     call.literal("repeats", "1"), call.axis("dim", 0));
}

std::string flip(Call& call) {
  return fmt::format("{}({}, {})", call.helper("flip"), call.tensor("self"),
                     int_tuple(call.axes("dims")));
}

std::string roll(Call& call) {
  if (!call.has("dims") || call.ints("dims").empty()) {  // roll the flattened tensor
    const auto shifts = call.ints("shifts");
    return fmt::format("mx.roll({}, {})", call.tensor("self"), shifts.empty() ? 0 : shifts[0]);
  }
  return fmt::format("mx.roll({}, {}, axis={})", call.tensor("self"), call.literal("shifts", "0"),
                     int_tuple(call.axes("dims")));
}

std::string tril(Call& call) {
  return fmt::format("mx.tril({}, {})", call.tensor("self"), call.literal("diagonal", "0"));
}

std::string triu(Call& call) {
  return fmt::format("mx.triu({}, {})", call.tensor("self"), call.literal("diagonal", "0"));
}

std::string diagonal(Call& call) {
  const int rank = call.rank("self");
  return fmt::format("mx.diagonal({}, {}, {}, {})", call.tensor("self"), call.integer("offset", 0),
                     wrap(call.integer("dim1", 0), rank), wrap(call.integer("dim2", 1), rank));
}

std::string constant_pad(Call& call) {
  const std::string value = call.has("value") ? call.literal("value", "0") : "0";
  return fmt::format("{}({}, {}, {})", call.helper("pad_constant"), call.tensor("self"),
                     call.literal("pad", "()"), value);
}

// aten.pad, what F.pad and nn.ReflectionPad*/ReplicationPad*/CircularPad* export as.
std::string pad(Call& call) {
  const std::string mode = call.text("mode", "constant");
  if (mode == "constant") return constant_pad(call);
  if (mode != "reflect" && mode != "replicate" && mode != "circular") {
    call.unsupported(fmt::format("pad mode '{}'", mode));
  }
  return fmt::format("{}({}, {}, {})", call.helper("pad_mode"), call.tensor("self"),
                     call.literal("pad", "()"), python_string(mode));
}

// MLX's as_strided reads the row-contiguous data, which is what torch's storage is for any
// tensor an exported graph computes.
std::string as_strided(Call& call) {
  return fmt::format("mx.as_strided({}, {}, {}, {})", call.tensor("self"),
                     call.literal("size", "()"), call.literal("stride", "()"),
                     call.has("storage_offset") ? call.literal("storage_offset", "0") : "0");
}

// The result keeps self's dtype: the fill value is converted (1.5 fills an int tensor with 1).
std::string masked_fill(Call& call) {
  const std::string self = call.tensor("self");
  const TensorMeta* info = call.meta("self");
  const bool floating =
      info != nullptr && (info->dtype.starts_with("float") || info->dtype == "bfloat16");
  std::string value = operand(call, "value");
  if (call.meta("value") != nullptr) {
    value = fmt::format("{}.astype({}.dtype)", value, self);
  } else if (!floating) {
    value = fmt::format("mx.array({}, dtype={}.dtype)", value, self);
  }
  return fmt::format("mx.where({}, {}, {})", call.tensor("mask"), value, self);
}

// unfold: windows of `size` every `step` along dim, the window as a new last axis.
std::string unfold(Call& call) {
  const int rank = call.rank("self");
  if (rank == 0) return fmt::format("{}.reshape((1,))", call.tensor("self"));
  return fmt::format("{}({}, {}, {}, {})", call.helper("unfold"), call.tensor("self"),
                     wrap(call.integer("dimension", 0), rank), call.literal("size", "1"),
                     call.literal("step", "1"));
}

std::string view_dtype(Call& call) {
  return fmt::format("mx.view({}, {})", call.tensor("self"), call.literal("dtype", "None"));
}

// torch.diff: prepend/append join the input along the axis before differencing.
std::string diff(Call& call) {
  const std::int64_t axis = call.axis("dim", -1);
  std::string input = call.tensor("self");
  if (call.has("prepend") || call.has("append")) {
    std::vector<std::string> parts;
    if (call.has("prepend")) parts.push_back(call.tensor("prepend"));
    parts.push_back(input);
    if (call.has("append")) parts.push_back(call.tensor("append"));
    input = fmt::format("mx.concatenate([{}], axis={})", fmt::join(parts, ", "), axis);
  }
  return fmt::format("mx.diff({}, n={}, axis={})", input, call.integer("n", 1), axis);
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
