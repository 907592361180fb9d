// Indexing, gathers and scatters. MLX arrays are immutable: a scatter returns a new array,
// which is what torch's functional overloads (the only ones torch.export leaves) mean.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "call.h"
#include "emit_util.h"
#include "torch2mlx/python_text.h"

namespace torch2mlx {

namespace {

constexpr LayoutRule kStandard = LayoutRule::Standard;

std::string py_bool(bool value) { return value ? "True" : "False"; }

// A boolean mask index selects a data-dependent number of elements: torch.export gives the
// result an unbacked size ("u0"), which no static MLX graph can compute.
void refuse_data_dependent(Call& call) {
  const TensorMeta* out = call.out_meta(0);
  if (out == nullptr) return;
  // Unbacked symbols are "u" and a number; backed ones are "s" and a number.
  const bool unbacked = std::any_of(out->shape.begin(), out->shape.end(), [](const Dim& dim) {
    const std::string& text = dim.symbol;
    for (std::size_t at = text.find('u'); at != std::string::npos; at = text.find('u', at + 1)) {
      const bool starts = at == 0 || std::isalpha(static_cast<unsigned char>(text[at - 1])) == 0;
      if (starts && at + 1 < text.size() &&
          std::isdigit(static_cast<unsigned char>(text[at + 1])) != 0) {
        return true;
      }
    }
    return false;
  });
  if (unbacked) {
    call.unsupported("boolean-mask indexing has a data-dependent output shape");
  }
}

std::string index(Call& call) {
  refuse_data_dependent(call);
  call.helper("index_key");
  return fmt::format("{}({}, [{}])", call.helper("index"), call.tensor("self"),
                     fmt::join(call.tensors("indices"), ", "));
}

std::string index_put(Call& call) {
  call.helper("index_key");
  call.helper("masked_scatter");
  return fmt::format("{}({}, [{}], {}, {})", call.helper("index_put"), call.tensor("self"),
                     fmt::join(call.tensors("indices"), ", "), call.tensor("values"),
                     py_bool(call.flag("accumulate", false)));
}

// A 0-d index keeps the axis (with size 1), unlike mx.take's.
std::string index_select(Call& call) {
  if (call.rank("self") == 0) return call.tensor("self");
  return fmt::format("mx.take({}, {}.reshape(-1), axis={})", call.tensor("self"),
                     call.tensor("index"), call.axis("dim", 0));
}

std::string gather(Call& call) {
  return fmt::format("{}({}, {}, {})", call.helper("gather"), call.tensor("self"),
                     call.axis("dim", 0), call.tensor("index"));
}

// scatter's reduce names ('add', 'multiply') and scatter_reduce's ('sum', 'prod', 'mean',
// 'amax', 'amin') all go to one helper; no reduce means replace.
std::string scatter(Call& call) {
  const std::string source = call.has("src") ? call.tensor("src") : operand(call, "value");
  return fmt::format("{}({}, {}, {}, {}, {}, {})", call.helper("scatter"), call.tensor("self"),
                     call.axis("dim", 0), call.tensor("index"), source,
                     python_string(call.text("reduce", "none")),
                     py_bool(call.flag("include_self", true)));
}

std::string scatter_add(Call& call) {
  return fmt::format("{}({}, {}, {}, {}, \"sum\", True)", call.helper("scatter"),
                     call.tensor("self"), call.axis("dim", 0), call.tensor("index"),
                     call.tensor("src"));
}

// index_add: self[..., index[i], ...] += alpha * source[..., i, ...] along dim.
std::string index_add(Call& call) {
  const std::string alpha = call.literal("alpha", "1");
  const std::string source =
      alpha == "1" ? call.tensor("source") : fmt::format("{} * {}", call.tensor("source"), alpha);
  return fmt::format("{}.at[(slice(None),) * {} + ({}.reshape(-1),)].add({})", call.tensor("self"),
                     call.axis("dim", 0), call.tensor("index"), source);
}

std::string slice_scatter(Call& call) {
  const auto bound = [&](std::string_view name) {
    const std::string text = call.has(name) ? call.literal(name, "None") : "None";
    return text == "9223372036854775807" ? std::string("None") : text;  // INT64_MAX: the end
  };
  return fmt::format("{}({}, {}, {}, {}, {}, {})", call.helper("slice_scatter"),
                     call.tensor("self"), call.tensor("src"), call.axis("dim", 0), bound("start"),
                     bound("end"), call.literal("step", "1"));
}

std::string select_scatter(Call& call) {
  return fmt::format("{}({}, {}, {}, {})", call.helper("select_scatter"), call.tensor("self"),
                     call.tensor("src"), call.axis("dim", 0), call.literal("index", "0"));
}

std::string masked_scatter(Call& call) {
  return fmt::format("{}({}, {}, {})", call.helper("masked_scatter"), call.tensor("self"),
                     call.tensor("mask"), call.tensor("source"));
}

std::string copy(Call& call) {
  return fmt::format("mx.broadcast_to({}, {}.shape).astype({}.dtype)", call.tensor("src"),
                     call.tensor("self"), call.tensor("self"));
}

}  // namespace

std::vector<OpEntry> indexing_ops() {
  return {
      {"aten.index.Tensor", index, kStandard},
      {"aten.index_put.default", index_put, kStandard},
      {"aten.index_select.default", index_select, LayoutRule::Axis},
      {"aten.index_add.default", index_add, LayoutRule::Axis},
      {"aten.gather.default", gather, kStandard},
      {"aten.scatter.src", scatter, kStandard},
      {"aten.scatter.value", scatter, kStandard},
      {"aten.scatter.reduce", scatter, kStandard},
      {"aten.scatter.value_reduce", scatter, kStandard},
      {"aten.scatter_add.default", scatter_add, kStandard},
      {"aten.scatter_reduce.two", scatter, kStandard},
      {"aten.slice_scatter.default", slice_scatter, kStandard},
      {"aten.select_scatter.default", select_scatter, kStandard},
      {"aten.masked_scatter.default", masked_scatter, kStandard},
      {"aten.copy.default", copy, kStandard},
  };
}

std::vector<Helper> indexing_helpers() {
  // clang-format off
  return {
{"index_key", R"(def index_key(x, indices):
    # torch's index list as an MLX key: None is a whole axis, negative indices wrap.
    key = []
    for axis, i in enumerate(indices):
        if i is None:
            key.append(slice(None))
        elif i.dtype == mx.bool_:
            raise NotImplementedError("boolean-mask indexing has a data-dependent shape")
        else:
            key.append(mx.where(i < 0, i + x.shape[axis], i))
    return tuple(key)
)"},
{"index", R"(def index(x, indices):
    # Advanced indexing as numpy does it (and torch): separated index tensors move the
    # indexed axes to the front.
    return x[index_key(x, indices)]
)"},
{"index_put", R"(def index_put(x, indices, values, accumulate):
    values = values.astype(x.dtype)
    if len(indices) == 1 and indices[0] is not None and indices[0].dtype == mx.bool_:
        # x[mask] = values: the masked rows take values' rows in row-major order, or one
        # broadcast row; the result's shape is static even if the count is not.
        mask = indices[0]
        rest = x.shape[mask.ndim :]
        full = mx.broadcast_to(mask.reshape(mask.shape + (1,) * len(rest)), x.shape)
        if values.ndim > len(rest) and values.shape[0] != 1:
            rows = mx.broadcast_to(values, values.shape[:1] + rest)
            picked = masked_scatter(mx.zeros_like(x), full, rows)
        else:
            picked = mx.broadcast_to(values, x.shape)
        return mx.where(full, x + picked if accumulate else picked, x)
    key = index_key(x, indices)
    if accumulate:
        return x.at[key].add(values)
    y = mx.array(x)  # a new handle: item assignment must not change x
    y[key] = values
    return y
)"},
{"gather", R"(def gather(x, axis, index):
    # torch.gather's index may be smaller than x along the other axes.
    if x.ndim == 0:
        return x
    x = x[tuple(slice(None) if d == axis else slice(0, n) for d, n in enumerate(index.shape))]
    return mx.take_along_axis(x, mx.where(index < 0, index + x.shape[axis], index), axis=axis)
)"},
{"scatter", R"(def scatter(x, axis, index, src, reduce, include_self):
    # torch's scatter family: src[i][j] goes to x[index[i][j]][j] (axis 0), over index's
    # shape only. reduce: 'none' replaces; sum/prod/mean/amax/amin (or add/multiply) combine.
    if x.ndim == 0:
        return scatter(
            x.reshape(1),
            0,
            index.reshape(1),
            src.reshape(1) if isinstance(src, mx.array) else src,
            reduce,
            include_self,
        ).reshape(())
    if isinstance(src, mx.array):
        src = src[tuple(slice(0, n) for n in index.shape)].astype(x.dtype)
    else:
        src = mx.full(index.shape, src, dtype=x.dtype)
    index = mx.where(index < 0, index + x.shape[axis], index)
    key = tuple(
        index
        if d == axis
        else mx.arange(n).reshape([-1 if e == d else 1 for e in range(index.ndim)])
        for d, n in enumerate(index.shape)
    )
    reduce = {"add": "sum", "multiply": "prod"}.get(reduce, reduce)
    if reduce in ("none", "amax", "amin"):
        y = mx.array(x)
        if reduce == "none" or not include_self:
            y[key] = src  # any of the scattered values seeds the max/min
        if reduce == "none":
            return y
        return y.at[key].maximum(src) if reduce == "amax" else y.at[key].minimum(src)
    count = mx.zeros(x.shape, dtype=mx.int32).at[key].add(1)
    if not include_self:
        x = mx.where(count > 0, mx.array(1 if reduce == "prod" else 0, dtype=x.dtype), x)
    if reduce == "prod":
        return x.at[key].multiply(src)
    total = x.at[key].add(src)
    if reduce == "sum":
        return total
    count = mx.maximum(count + (1 if include_self else 0), 1).astype(x.dtype)
    if mx.issubdtype(x.dtype, mx.floating):
        return total / count
    return mx.floor_divide(total, count)
)"},
{"slice_scatter", R"(def slice_scatter(x, src, axis, start, end, step):
    n = x.shape[axis]
    clamp = lambda v: None if v is None else max(-n, min(v, n))  # MLX wants 32-bit bounds
    key = [slice(None)] * x.ndim
    key[axis] = slice(clamp(start), clamp(end), step)
    y = mx.array(x)  # a new handle: item assignment must not change x
    y[tuple(key)] = src.astype(x.dtype)
    return y
)"},
{"select_scatter", R"(def select_scatter(x, src, axis, index):
    key = [slice(None)] * x.ndim
    key[axis] = index
    y = mx.array(x)  # a new handle: item assignment must not change x
    y[tuple(key)] = src.astype(x.dtype)
    return y
)"},
{"masked_scatter", R"(def masked_scatter(x, mask, source):
    # The True positions of mask (broadcast with x) take source's elements in row-major order:
    # a running count of the mask says which one.
    x, mask = mx.broadcast_arrays(x, mask)
    if source.size == 0:
        return x
    flat = mask.reshape(-1)
    position = mx.maximum(mx.cumsum(flat.astype(mx.int32)) - 1, 0)
    picked = mx.take(source.reshape(-1), position).astype(x.dtype)
    return mx.where(flat, picked, x.reshape(-1)).reshape(x.shape)
)"},
  };
  // clang-format on
}

}  // namespace torch2mlx
