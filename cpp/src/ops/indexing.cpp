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

}  // namespace torch2mlx
