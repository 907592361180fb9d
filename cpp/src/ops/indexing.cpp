// Indexing, gathers and scatters. MLX arrays are immutable: a scatter returns a new array,
// which is what torch's functional overloads (the only ones torch.export leaves) mean.
#include <algorithm>
#include <cctype>
#include <cstdint>
#include <limits>
#include <string>

#include "call.h"
#include "emit_util.h"

namespace torch2mlx {

namespace {

constexpr LayoutRule kStandard = LayoutRule::Standard;

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

py::Expr index(Call& call) {
  refuse_data_dependent(call);
  call.helper("index_key");
  return call.helper("index")({call.tensor("self"), py::list(call.tensors("indices"))});
}

py::Expr index_put(Call& call) {
  call.helper("index_key");
  call.helper("masked_scatter");
  return call.helper("index_put")({call.tensor("self"), py::list(call.tensors("indices")),
                                   call.tensor("values"),
                                   py::boolean(call.flag("accumulate", false))});
}

// A 0-d index keeps the axis (with size 1), unlike mx.take's.
py::Expr index_select(Call& call) {
  if (call.rank("self") == 0) return call.tensor("self");
  return py::call("mx.take",
                  {call.tensor("self"), call.tensor("index").method("reshape", {py::integer(-1)})},
                  {{"axis", py::integer(call.axis("dim", 0))}});
}

py::Expr gather(Call& call) {
  return call.helper("gather")(
      {call.tensor("self"), py::integer(call.axis("dim", 0)), call.tensor("index")});
}

// scatter's reduce names ('add', 'multiply') and scatter_reduce's ('sum', 'prod', 'mean',
// 'amax', 'amin') all go to one helper; no reduce means replace.
py::Expr scatter(Call& call) {
  const py::Expr source = call.has("src") ? call.tensor("src") : operand(call, "value");
  return call.helper("scatter")(
      {call.tensor("self"), py::integer(call.axis("dim", 0)), call.tensor("index"), source,
       py::string(call.text("reduce", "none")), py::boolean(call.flag("include_self", true))});
}

py::Expr scatter_add(Call& call) {
  return call.helper("scatter")({call.tensor("self"), py::integer(call.axis("dim", 0)),
                                 call.tensor("index"), call.tensor("src"), py::string("sum"),
                                 py::boolean(true)});
}

// index_add: self[..., index[i], ...] += alpha * source[..., i, ...] along dim.
py::Expr index_add(Call& call) {
  const py::Expr alpha = call.literal("alpha", py::integer(1));
  const py::Expr source =
      alpha.same(py::integer(1)) ? call.tensor("source") : call.tensor("source") * alpha;
  // (slice(None),) * dim + (index.reshape(-1),)
  const py::Expr key =
      py::tuple({py::call("slice", {py::none()})}) * py::integer(call.axis("dim", 0)) +
      py::tuple({call.tensor("index").method("reshape", {py::integer(-1)})});
  return call.tensor("self").attr("at")[key].method("add", {source});
}

py::Expr slice_scatter(Call& call) {
  const auto bound = [&](std::string_view name) {
    if (!call.has(name)) return py::none();
    py::Expr value = call.literal(name);
    const bool end = value.kind() == py::Expr::Kind::Int &&
                     value.integer() == std::numeric_limits<std::int64_t>::max();
    return end ? py::none() : value;  // INT64_MAX: the end
  };
  return call.helper("slice_scatter")({call.tensor("self"), call.tensor("src"),
                                       py::integer(call.axis("dim", 0)), bound("start"),
                                       bound("end"), call.literal("step", py::integer(1))});
}

py::Expr select_scatter(Call& call) {
  return call.helper("select_scatter")({call.tensor("self"), call.tensor("src"),
                                        py::integer(call.axis("dim", 0)),
                                        call.literal("index", py::integer(0))});
}

py::Expr masked_scatter(Call& call) {
  return call.helper("masked_scatter")(
      {call.tensor("self"), call.tensor("mask"), call.tensor("source")});
}

py::Expr copy(Call& call) {
  const py::Expr self = call.tensor("self");
  return py::call("mx.broadcast_to", {call.tensor("src"), self.attr("shape")})
      .method("astype", {self.attr("dtype")});
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
