// Pattern fusions: subgraphs that torch models write out op by op, rewritten into the one
// node that MLX has a fast kernel for. Each fusion matches from one anchor node backwards,
// requires every intermediate value to be read only inside the pattern, and replaces the
// anchor; the intermediates are then dead, and the dead-code pass removes them. A pattern
// that does not match exactly is left as it is: a fusion never changes what is computed.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <numbers>
#include <optional>
#include <string>
#include <vector>

#include "pass_util.h"
#include "torch2mlx/passes.h"

namespace torch2mlx {
namespace {

using pass_util::DefUse;
using pass_util::literal_int;
using pass_util::literal_ints;
using pass_util::literal_number;
using pass_util::meta_of;
using pass_util::tensor_input;

// Casts: ops whose only effect is a dtype (and device) change.
constexpr std::array<std::string_view, 4> kCasts = {"aten._to_copy.default", "aten.to.dtype",
                                                    "aten.to.dtype_layout", "aten.to.device"};

bool is_cast(const Node* node) {
  return node != nullptr && std::find(kCasts.begin(), kCasts.end(), node->target) != kCasts.end();
}

bool is(const Node* node, std::string_view target) {
  return node != nullptr && node->target == target;
}

std::string output_of(const Node& node) {
  return node.outputs.size() == 1 && node.outputs[0].kind == ArgKind::Tensor &&
                 !node.outputs[0].names.empty()
             ? node.outputs[0].names[0]
             : std::string();
}

std::size_t rank_of(const ExportedProgram& program, const std::string& value) {
  const TensorMeta* meta = meta_of(program, value);
  return meta == nullptr ? 0 : meta->shape.size();
}

std::string dtype_of(const ExportedProgram& program, const std::string& value) {
  const TensorMeta* meta = meta_of(program, value);
  return meta == nullptr ? std::string() : meta->dtype;
}

// The last dim of a value when it is static, else nullopt.
std::optional<std::int64_t> static_last_dim(const ExportedProgram& program,
                                            const std::string& value) {
  const TensorMeta* meta = meta_of(program, value);
  if (meta == nullptr || meta->shape.empty() || !meta->shape.back().symbol.empty()) {
    return std::nullopt;
  }
  return meta->shape.back().hint;
}

bool same_dim(const Dim& a, const Dim& b) { return a.hint == b.hint && a.symbol == b.symbol; }

// A `dim` argument that names the last axis of a tensor of `rank` dims.
bool is_last_axis(std::int64_t dim, std::size_t rank) {
  return dim == -1 || (rank > 0 && dim == static_cast<std::int64_t>(rank) - 1);
}

// The two tensor operands of a binary op ("self", "other"), or nullopt when one is a scalar.
std::optional<std::pair<std::string, std::string>> operands(const Node& node) {
  const std::string self = tensor_input(node, "self");
  const std::string other = tensor_input(node, "other");
  if (self.empty() || other.empty()) return std::nullopt;
  return std::make_pair(self, other);
}

// The other operand of a binary node one of whose operands is `known`, or "".
std::string other_operand(const Node& node, const std::string& known) {
  const auto pair = operands(node);
  if (!pair) return "";
  if (pair->first == known) return pair->second;
  if (pair->second == known) return pair->first;
  return "";
}

Arg tensor_arg(const std::string& name) { return Arg{ArgKind::Tensor, {name}, {}, {}, {}}; }
Arg int_arg(std::int64_t value) { return Arg{ArgKind::Int, {}, {value}, {}, {}}; }
Arg ints_arg(std::vector<std::int64_t> values) {
  return Arg{ArgKind::IntList, {}, std::move(values), {}, {}};
}
Arg float_arg(double value) { return Arg{ArgKind::Float, {}, {}, {value}, {}}; }
Arg bool_arg(bool value) { return Arg{ArgKind::Bool, {}, {value ? 1 : 0}, {}, {}}; }

// A node that replaces `anchor`: same outputs, module call and source line.
Node replacing(const Node& anchor, std::string target, std::vector<NamedArg> inputs) {
  Node node;
  node.name = anchor.name;
  node.target = std::move(target);
  node.inputs = std::move(inputs);
  node.outputs = anchor.outputs;
  node.module_stack = anchor.module_stack;
  node.stack_trace = anchor.stack_trace;
  return node;
}

// --- RMS norm: x * rsqrt(mean(x ** 2, -1, keepdim) + eps) [-> cast] [* weight].

// What a match yields: the node it replaces (the pattern's last) and the replacement.
using Match = std::optional<std::pair<const Node*, Node>>;

Match match_rms_norm(const ExportedProgram& program, const DefUse& graph, const Node& rsqrt) {
  const std::string shifted = tensor_input(rsqrt, "self");
  const Node* add = graph.producer(shifted);
  if (!(is(add, "aten.add.Tensor") || is(add, "aten.add.Scalar")) || !graph.read_once(shifted)) {
    return std::nullopt;
  }
  const auto eps = literal_number(*add, "other");
  const auto alpha = literal_number(*add, "alpha");
  if (!eps || (add->input("alpha") != nullptr && alpha != 1.0)) return std::nullopt;
  const std::string mean_value = tensor_input(*add, "self");
  const Node* mean = graph.producer(mean_value);
  if (!is(mean, "aten.mean.dim") || !graph.read_once(mean_value)) return std::nullopt;
  const std::string squares = tensor_input(*mean, "self");
  const auto dims = literal_ints(*mean, "dim");
  const auto keepdim = literal_int(*mean, "keepdim");
  if (!dims || dims->size() != 1 || !is_last_axis((*dims)[0], rank_of(program, squares)) ||
      keepdim != 1 || mean->input("dtype") != nullptr) {
    return std::nullopt;
  }
  const Node* square = graph.producer(squares);
  if (!is(square, "aten.pow.Tensor_Scalar") || literal_number(*square, "exponent") != 2.0 ||
      !graph.read_once(squares)) {
    return std::nullopt;
  }
  const std::string x = tensor_input(*square, "self");
  // The one reader of the rsqrt multiplies x by it.
  const std::string scale = output_of(rsqrt);
  const auto readers = graph.readers(scale);
  if (readers.size() != 1 || !graph.read_once(scale) || !is(readers[0], "aten.mul.Tensor") ||
      other_operand(*readers[0], scale) != x) {
    return std::nullopt;
  }
  const Node* last = readers[0];
  std::string value = output_of(*last);
  // A cast back to the input dtype, as half-precision models do after computing in float32.
  if (const auto next = graph.readers(value);
      graph.read_once(value) && next.size() == 1 && is_cast(next[0])) {
    last = next[0];
    value = output_of(*last);
  }
  // A weight needs the size of the last axis; without one it may be dynamic (rms_norm reads
  // the length of normalized_shape only, and mx.fast normalises the last axis, whatever its
  // size).
  const auto size = static_last_dim(program, x);
  std::string weight;
  if (const auto next = graph.readers(value);
      size && graph.read_once(value) && next.size() == 1 && is(next[0], "aten.mul.Tensor")) {
    const std::string other = other_operand(*next[0], value);
    const TensorMeta* meta = meta_of(program, other);
    if (meta != nullptr && meta->shape.size() == 1 && meta->shape[0].symbol.empty() &&
        meta->shape[0].hint == *size && meta->dtype == dtype_of(program, value) &&
        dtype_of(program, output_of(*next[0])) == dtype_of(program, value)) {
      weight = other;
      last = next[0];
      value = output_of(*last);
    }
  }
  // x upcast from the input for the statistics: normalise the input itself, when the result
  // is in the input's dtype again.
  std::string input = x;
  const Node* upcast = graph.producer(x);
  if (is_cast(upcast) && graph.readers(x).size() == 2 &&
      dtype_of(program, tensor_input(*upcast, "self")) == dtype_of(program, value)) {
    input = tensor_input(*upcast, "self");
  }
  if (dtype_of(program, input) != dtype_of(program, value) || output_of(*last).empty()) {
    return std::nullopt;
  }
  std::vector<NamedArg> inputs = {{"input", tensor_arg(input)},
                                  {"normalized_shape", ints_arg({size.value_or(-1)})}};
  if (!weight.empty()) inputs.push_back({"weight", tensor_arg(weight)});
  inputs.push_back({"eps", float_arg(*eps)});
  return std::make_pair(last, replacing(*last, "aten.rms_norm.default", std::move(inputs)));
}

// --- Rotary embedding: x * cos + cat(-x[..., h:], x[..., :h]) * sin.

// The value under a chain of casts and unsqueezes.
std::string strip(const DefUse& graph, std::string value, bool unsqueezes) {
  for (;;) {
    const Node* node = graph.producer(value);
    if (is_cast(node) || (unsqueezes && is(node, "aten.unsqueeze.default"))) {
      value = tensor_input(*node, "self");
    } else {
      return value;
    }
  }
}

// The float32 values of a buffer or constant the program holds, or nullopt.
std::optional<std::vector<float>> weight_values(const ExportedProgram& program,
                                                const std::string& value) {
  const auto spec = std::find_if(program.inputs.begin(), program.inputs.end(),
                                 [&](const InputSpec& input) { return input.name == value; });
  if (spec == program.inputs.end() ||
      (spec->kind != InputKind::Buffer && spec->kind != InputKind::Constant)) {
    return std::nullopt;
  }
  const auto weight =
      std::find_if(program.weights.begin(), program.weights.end(),
                   [&](const NamedTensor& named) { return named.name == spec->target; });
  if (weight == program.weights.end() || weight->tensor.dtype != DType::F32 ||
      weight->tensor.storage == nullptr) {
    return std::nullopt;
  }
  std::vector<float> values(static_cast<std::size_t>(weight->tensor.numel()));
  std::vector<std::byte> bytes(weight->tensor.nbytes());
  copy_contiguous(weight->tensor, bytes.data());
  std::memcpy(values.data(), bytes.data(), bytes.size());
  return values;
}

// The base when `inverse_frequencies` is base ** (-2i / dims) for i < dims / 2 (how every
// standard rotary embedding builds them), else nullopt.
std::optional<double> rope_base(const std::vector<float>& inverse_frequencies, std::int64_t dims) {
  const auto half = static_cast<std::size_t>(dims / 2);
  if (inverse_frequencies.size() != half || half < 2 || inverse_frequencies[0] != 1.0F ||
      !(inverse_frequencies[1] > 0.0F && inverse_frequencies[1] < 1.0F)) {
    return std::nullopt;
  }
  // From the last (smallest) frequency, base ** (-2(h-1)/d): its exponent is near -1, so
  // float32's rounding of the table is not amplified as it would be from the second.
  const double last_exponent = -2.0 * static_cast<double>(half - 1) / static_cast<double>(dims);
  double base = std::pow(static_cast<double>(inverse_frequencies[half - 1]), 1.0 / last_exponent);
  // Rounded to the integer it was written as (10000, 500000) when float32 cannot tell.
  if (const double rounded = std::round(base); std::abs(rounded - base) <= 1e-4 * base) {
    base = rounded;
  }
  for (std::size_t i = 0; i < half; ++i) {
    const double expected =
        std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(dims));
    if (std::abs(inverse_frequencies[i] - expected) > 1e-6 * expected) return std::nullopt;
  }
  return base;
}

// What a cos or sin table is computed from: the positions' offset (arange's start) and the
// rope base. `table` is the value multiplied with x, `function` aten.cos or aten.sin.
struct RopeTable {
  std::string angles;  // the cat([freqs, freqs]) both tables take the cos and sin of
  Arg offset;          // an int, or a symbolic size (a KV cache's past length)
  double base = 0.0;
  std::int64_t axis = -2;  // the axis of x the positions run along
};

// positions + offset, where the offset is a scalar (an int, or a symbolic size such as the
// length of a KV cache): the positions and the offset; else `value` and nullopt.
std::pair<std::string, std::optional<Arg>> shifted_positions(const DefUse& graph,
                                                             const std::string& value) {
  const Node* add = graph.producer(value);
  if (!is(add, "aten.add.Tensor") || !tensor_input(*add, "other").empty() ||
      (add->input("alpha") != nullptr && literal_number(*add, "alpha") != 1.0)) {
    return {value, std::nullopt};
  }
  const Arg* other = add->input("other");
  if (other == nullptr || other->kind != ArgKind::Int) return {value, std::nullopt};
  return {tensor_input(*add, "self"), *other};
}

// Whether a table of `columns` columns broadcasts over every axis of x but the last two:
// [1, ..., 1, L, columns], with L x's second-to-last dim.
bool table_fits(const ExportedProgram& program, const std::string& table, const std::string& x,
                std::int64_t columns);

// The axis of x the positions of a [1, ..., L, 1, columns] or [1, ..., 1, L, columns] table
// run along: -2 (x is [..., L, D]) or -3 (x is [..., L, heads, D], as GPT-J rotates before
// moving heads first); nullopt when the table fits neither.
std::optional<std::int64_t> table_axis(const ExportedProgram& program, const std::string& table,
                                       const std::string& x, std::int64_t columns) {
  if (table_fits(program, table, x, columns)) return -2;
  const TensorMeta* table_meta = meta_of(program, table);
  const TensorMeta* x_meta = meta_of(program, x);
  if (table_meta == nullptr || x_meta == nullptr || table_meta->shape.size() < 3 ||
      table_meta->shape.size() > x_meta->shape.size() || x_meta->shape.size() < 4) {
    return std::nullopt;
  }
  const auto& shape = table_meta->shape;
  const std::size_t rank = shape.size();
  const bool fits = same_dim(shape[rank - 3], x_meta->shape[x_meta->shape.size() - 3]) &&
                    shape[rank - 2].hint == 1 && shape[rank - 2].symbol.empty() &&
                    shape.back().hint == columns && shape.back().symbol.empty() &&
                    std::all_of(shape.begin(), shape.end() - 3,
                                [](const Dim& dim) { return dim.hint == 1 && dim.symbol.empty(); });
  return fits ? std::optional<std::int64_t>(-3) : std::nullopt;
}

bool table_fits(const ExportedProgram& program, const std::string& table, const std::string& x,
                std::int64_t columns) {
  const TensorMeta* table_meta = meta_of(program, table);
  const TensorMeta* x_meta = meta_of(program, x);
  if (table_meta == nullptr || x_meta == nullptr || table_meta->shape.size() < 2 ||
      table_meta->shape.size() > x_meta->shape.size()) {
    return false;
  }
  const auto& shape = table_meta->shape;
  return same_dim(shape[shape.size() - 2], x_meta->shape[x_meta->shape.size() - 2]) &&
         shape.back().hint == columns && shape.back().symbol.empty() &&
         std::all_of(shape.begin(), shape.end() - 2,
                     [](const Dim& dim) { return dim.hint == 1 && dim.symbol.empty(); });
}

// The offset when `positions` is arange(start, start + L) or arange(L) + shift (under
// casts and unsqueezes), one position per row of x (`rows`, its length L); else nullopt.
// Positions from anywhere else (a user's position_ids) have no offset to give mx.fast.rope.
std::optional<Arg> arange_offset(const ExportedProgram& program, const DefUse& graph,
                                 const std::string& positions, const Dim& rows) {
  const auto [unshifted, shift] = shifted_positions(graph, strip(graph, positions, true));
  const Node* arange = graph.producer(strip(graph, unshifted, true));
  if (arange == nullptr) return std::nullopt;
  std::int64_t start = 0;
  if (is(arange, "aten.arange.start") || is(arange, "aten.arange.start_step")) {
    const auto literal = literal_int(*arange, "start");
    if (!literal) return std::nullopt;
    start = *literal;
    if (arange->input("step") != nullptr && literal_int(*arange, "step") != 1) return std::nullopt;
  } else if (!is(arange, "aten.arange.default")) {
    return std::nullopt;
  }
  // A shift is kept as it is, symbol or int; arange(start) + shift would need a sum.
  if (shift && start != 0) return std::nullopt;
  const TensorMeta* count = meta_of(program, output_of(*arange));
  if (count == nullptr || count->shape.size() != 1 || !same_dim(count->shape[0], rows)) {
    return std::nullopt;
  }
  return shift ? *shift : int_arg(start);
}

// The positions' offset and the base when `frequencies` is the outer product of positions
// (an arange, maybe shifted, one per row of x) and an inverse-frequency buffer
// base ** (-2i / dims); `rows` is the length of x's second-to-last axis.
std::optional<RopeTable> rope_frequencies(const ExportedProgram& program, const DefUse& graph,
                                          const std::string& frequencies_value, const Dim& rows,
                                          std::int64_t dims) {
  const Node* product = graph.producer(frequencies_value);
  const auto pair =
      product != nullptr && is(product, "aten.mul.Tensor") ? operands(*product) : std::nullopt;
  if (!pair) return std::nullopt;
  for (const auto& [positions, frequencies] : {*pair, std::make_pair(pair->second, pair->first)}) {
    const auto values = weight_values(program, strip(graph, frequencies, false));
    const auto offset = arange_offset(program, graph, positions, rows);
    if (!values || !offset) continue;
    const auto base = rope_base(*values, dims);
    if (!base) continue;
    RopeTable result;
    result.angles = frequencies_value;
    result.offset = *offset;
    result.base = *base;
    return result;
  }
  return std::nullopt;
}

// The length of x's axis `axis` (-2 or -3: the positions).
const Dim& rows_of(const ExportedProgram& program, const std::string& x, std::int64_t axis = -2) {
  const auto& shape = meta_of(program, x)->shape;
  return shape[shape.size() - static_cast<std::size_t>(-axis)];
}

// A precomputed table of `rows` rows: half = columns / 2 angles per row, p * base ** (-2i /
// (2 * half)) in row p, their sines in one half of the columns and cosines in the other
// (GPT-J's embed_positions, [sin | cos]). The base and whether the sines come first, when
// every value is within float32 rounding of that; else nullopt.
struct SinusoidTable {
  double base = 0.0;
  bool sine_first = true;
};

std::optional<SinusoidTable> sinusoid_table(const std::vector<float>& table, std::int64_t rows,
                                            std::int64_t columns) {
  const std::int64_t half = columns / 2;
  if (rows < 2 || half < 2 || columns % 2 != 0 ||
      static_cast<std::int64_t>(table.size()) != rows * columns) {
    return std::nullopt;
  }
  const auto at = [&](std::int64_t row, std::int64_t column) {
    return static_cast<double>(table[static_cast<std::size_t>(row * columns + column)]);
  };
  // Row 0 is sin(0) = 0 and cos(0) = 1: which half is which.
  SinusoidTable result;
  result.sine_first = at(0, 0) == 0.0;
  const std::int64_t sines = result.sine_first ? 0 : half;
  const std::int64_t cosines = result.sine_first ? half : 0;
  // The base from row 1's smallest angle, base ** (-2(h-1)/d): asin is exact to rounding
  // there, and the exponent near -1 does not amplify it.
  const double smallest = std::asin(at(1, sines + half - 1));
  if (!(smallest > 0.0 && smallest < 1.0)) return std::nullopt;
  const auto dims = static_cast<double>(columns);
  double base = std::pow(smallest, -dims / (2.0 * static_cast<double>(half - 1)));
  if (const double rounded = std::round(base); std::abs(rounded - base) <= 1e-4 * base) {
    base = rounded;
  }
  if (!std::isfinite(base) || base <= 1.0) return std::nullopt;
  for (std::int64_t i = 0; i < half; ++i) {
    const double frequency = std::pow(base, -2.0 * static_cast<double>(i) / dims);
    for (std::int64_t row = 0; row < rows; ++row) {
      // torch computes the angle in float32: its rounding grows with the angle.
      const double angle = static_cast<double>(row) * frequency;
      const double tolerance = 1e-6 * std::max(1.0, angle);
      if (std::abs(at(row, sines + i) - std::sin(angle)) > tolerance ||
          std::abs(at(row, cosines + i) - std::cos(angle)) > tolerance) {
        return std::nullopt;
      }
    }
  }
  result.base = base;
  return result;
}

// The part of a split along the last axis that `value` is: the split's input and the part's
// index, or nullopt.
std::optional<std::pair<std::string, std::size_t>> split_part(const ExportedProgram& program,
                                                              const DefUse& graph,
                                                              const std::string& value) {
  const Node* split = graph.producer(value);
  if (!is(split, "aten.split.Tensor") || split->outputs.size() != 1) return std::nullopt;
  const std::string input = tensor_input(*split, "self");
  const auto dim = literal_int(*split, "dim");
  if (!dim || !is_last_axis(*dim, rank_of(program, input))) return std::nullopt;
  const std::vector<std::string>& parts = split->outputs[0].names;
  const auto found = std::find(parts.begin(), parts.end(), value);
  if (found == parts.end()) return std::nullopt;
  return std::make_pair(input, static_cast<std::size_t>(found - parts.begin()));
}

// An interleaved table gathered from a precomputed one: function(p * freqs) for positions p
// = table[positions] split in its sine and cosine halves, [1, L, dims / 2]
// (GPT-J's embed_positions[position_ids]). `table` is the part of the split, the positions
// arange-based, and the buffer's values a sinusoid table (sinusoid_table), checked here.
std::optional<RopeTable> gathered_table(const ExportedProgram& program, const DefUse& graph,
                                        const std::string& table, std::string_view function,
                                        const Dim& rows, std::int64_t dims) {
  const auto part = split_part(program, graph, table);
  const std::string gathered = part ? strip(graph, part->first, false) : std::string();
  const Node* index = part ? graph.producer(gathered) : nullptr;
  const Arg* indices = index != nullptr ? index->input("indices") : nullptr;
  if (!is(index, "aten.index.Tensor") || indices == nullptr || indices->names.size() != 1 ||
      indices->names[0].empty()) {
    return std::nullopt;
  }
  const Node* split = graph.producer(table);
  const TensorMeta* buffer = meta_of(program, tensor_input(*index, "self"));
  const auto split_size = literal_int(*split, "split_size");
  if (buffer == nullptr || buffer->shape.size() != 2 || !buffer->shape[0].symbol.empty() ||
      buffer->shape[1].hint != dims || split_size != dims / 2 ||
      split->outputs[0].names.size() != 2) {
    return std::nullopt;
  }
  const auto offset = arange_offset(program, graph, indices->names[0], rows);
  const auto values = weight_values(program, tensor_input(*index, "self"));
  if (!offset || !values) return std::nullopt;
  const auto sinusoid = sinusoid_table(*values, buffer->shape[0].hint, dims);
  const bool sine = function == "aten.sin.default";
  if (!sinusoid || (part->second == 0) != (sinusoid->sine_first == sine)) return std::nullopt;
  RopeTable result;
  result.angles = gathered;
  result.offset = *offset;
  result.base = sinusoid->base;
  return result;
}

// A split-half table: cos or sin of cat([freqs, freqs], -1), [1, ..., L, dims].
std::optional<RopeTable> rope_table(const ExportedProgram& program, const DefUse& graph,
                                    const std::string& table, std::string_view function,
                                    const std::string& x, std::int64_t dims) {
  if (!table_fits(program, table, x, dims)) return std::nullopt;
  const Node* trig = graph.producer(strip(graph, table, true));
  if (!is(trig, function)) return std::nullopt;
  const std::string angles = tensor_input(*trig, "self");
  const Node* cat = graph.producer(angles);
  const Arg* parts = cat != nullptr ? cat->input("tensors") : nullptr;
  const auto cat_dim = cat != nullptr ? literal_int(*cat, "dim") : std::nullopt;
  if (!is(cat, "aten.cat.default") || parts == nullptr || parts->names.size() != 2 ||
      parts->names[0] != parts->names[1] ||
      !is_last_axis(cat_dim.value_or(0), rank_of(program, angles))) {
    return std::nullopt;
  }
  auto result = rope_frequencies(program, graph, parts->names[0], rows_of(program, x), dims);
  if (result) result->angles = angles;
  return result;
}

// An interleaved table: cos or sin of freqs, one column per pair, [1, ..., L, dims / 2]; with
// `repeated`, each column twice (repeat_interleave(table, 2, -1), as GPT-J writes it).
std::optional<RopeTable> interleaved_table(const ExportedProgram& program, const DefUse& graph,
                                           std::string table, std::string_view function,
                                           const std::string& x, std::int64_t dims, bool repeated) {
  std::optional<std::int64_t> axis = -2;
  if (repeated) {
    axis = table_axis(program, table, x, dims);
    if (!axis) return std::nullopt;
    const Node* repeat = graph.producer(strip(graph, table, true));
    if (!is(repeat, "aten.repeat_interleave.self_int") || literal_int(*repeat, "repeats") != 2 ||
        !is_last_axis(literal_int(*repeat, "dim").value_or(0),
                      rank_of(program, tensor_input(*repeat, "self")))) {
      return std::nullopt;
    }
    table = tensor_input(*repeat, "self");
  }
  if (table_axis(program, table, x, dims / 2) != axis) return std::nullopt;
  const std::string stripped = strip(graph, table, true);
  const Node* trig = graph.producer(stripped);
  auto result = is(trig, function) ? rope_frequencies(program, graph, tensor_input(*trig, "self"),
                                                      rows_of(program, x, *axis), dims)
                                   : gathered_table(program, graph, stripped, function,
                                                    rows_of(program, x, *axis), dims);
  if (result) result->axis = *axis;
  return result;
}

// x when `rotated` is cat([-x[..., h:], x[..., :h]], -1) with h = dims / 2.
std::string rotated_half_of(const ExportedProgram& program, const DefUse& graph,
                            const std::string& rotated, std::int64_t dims) {
  const Node* cat = graph.producer(rotated);
  const Arg* parts = cat != nullptr ? cat->input("tensors") : nullptr;
  if (!is(cat, "aten.cat.default") || parts == nullptr || parts->names.size() != 2 ||
      !graph.read_once(rotated)) {
    return "";
  }
  const std::size_t rank = rank_of(program, rotated);
  if (!is_last_axis(literal_int(*cat, "dim").value_or(0), rank)) {
    return "";
  }
  const Node* negation = graph.producer(parts->names[0]);
  if (!is(negation, "aten.neg.default")) return "";
  const Node* second = graph.producer(tensor_input(*negation, "self"));
  const Node* first = graph.producer(parts->names[1]);
  // x[..., start:end] where end may be past the last element (torch writes INT64_MAX).
  const auto is_slice = [&](const Node* node, std::int64_t start, std::int64_t end) {
    if (!is(node, "aten.slice.Tensor")) return false;
    const auto dim = literal_int(*node, "dim");
    const auto to = literal_int(*node, "end");
    return dim && is_last_axis(*dim, rank) &&
           (node->input("start") == nullptr ? 0 : literal_int(*node, "start")) == start && to &&
           (end == dims ? *to >= end : *to == end) &&
           (node->input("step") == nullptr || literal_int(*node, "step") == 1);
  };
  const std::int64_t half = dims / 2;
  if (!is_slice(first, 0, half) || !is_slice(second, half, dims)) return "";
  const std::string x = tensor_input(*first, "self");
  return tensor_input(*second, "self") == x ? x : "";
}

Match match_rope(const ExportedProgram& program, const DefUse& graph, const Node& add) {
  const auto sum = operands(add);
  if (!sum || (add.input("alpha") != nullptr && literal_number(add, "alpha") != 1.0)) {
    return std::nullopt;
  }
  for (const auto& [cos_term, sin_term] : {*sum, std::make_pair(sum->second, sum->first)}) {
    const Node* cos_product = graph.producer(cos_term);
    const Node* sin_product = graph.producer(sin_term);
    if (!is(cos_product, "aten.mul.Tensor") || !is(sin_product, "aten.mul.Tensor") ||
        !graph.read_once(cos_term) || !graph.read_once(sin_term)) {
      continue;
    }
    const auto sin_pair = operands(*sin_product);
    if (!sin_pair) continue;
    for (const auto& [rotated, sin_table] :
         {*sin_pair, std::make_pair(sin_pair->second, sin_pair->first)}) {
      const auto dims = static_last_dim(program, rotated);
      if (!dims || *dims % 2 != 0) continue;
      const std::string x = rotated_half_of(program, graph, rotated, *dims);
      if (x.empty() || rank_of(program, x) < 3) continue;
      const std::string cos_table = other_operand(*cos_product, x);
      if (cos_table.empty()) continue;
      const auto cosine = rope_table(program, graph, cos_table, "aten.cos.default", x, *dims);
      const auto sine = rope_table(program, graph, sin_table, "aten.sin.default", x, *dims);
      if (!cosine || !sine || cosine->angles != sine->angles ||
          cosine->offset.names != sine->offset.names || cosine->offset.ints != sine->offset.ints) {
        continue;
      }
      const TensorMeta* x_meta = meta_of(program, x);
      const TensorMeta* out_meta = meta_of(program, output_of(add));
      if (x_meta == nullptr || out_meta == nullptr || x_meta->dtype != out_meta->dtype ||
          !pass_util::same_dims(x_meta->shape, out_meta->shape)) {
        continue;
      }
      return std::make_pair(&add, replacing(add, "mlx.fast.rope",
                                            {{"input", tensor_arg(x)},
                                             {"dims", int_arg(*dims)},
                                             {"traditional", bool_arg(false)},
                                             {"base", float_arg(cosine->base)},
                                             {"scale", float_arg(1.0)},
                                             {"offset", cosine->offset}}));
    }
  }
  return std::nullopt;
}

// --- Grouped-query attention: repeat_kv(k) = reshape(expand(k[:, :, None]), ...).

// The keys or values before repeat_kv, and the repeat count; nullopt when `value` is not a
// repeat_kv output.
std::optional<std::pair<std::string, std::int64_t>> unrepeated(const ExportedProgram& program,
                                                               const DefUse& graph,
                                                               const std::string& value) {
  const Node* reshape = graph.producer(value);
  if (!(is(reshape, "aten.reshape.default") || is(reshape, "aten.view.default") ||
        is(reshape, "aten._unsafe_view.default")) ||
      !graph.read_once(value)) {
    return std::nullopt;
  }
  const std::string expanded = tensor_input(*reshape, "self");
  const Node* expand = graph.producer(expanded);
  if (!is(expand, "aten.expand.default") || !graph.read_once(expanded)) return std::nullopt;
  const std::string inserted = tensor_input(*expand, "self");
  const Node* unsqueeze = graph.producer(inserted);
  if (!is(unsqueeze, "aten.unsqueeze.default") || literal_int(*unsqueeze, "dim") != 2 ||
      !graph.read_once(inserted)) {
    return std::nullopt;
  }
  const std::string source = tensor_input(*unsqueeze, "self");
  const TensorMeta* in = meta_of(program, source);
  const TensorMeta* wide = meta_of(program, expanded);
  const TensorMeta* out = meta_of(program, value);
  if (in == nullptr || wide == nullptr || out == nullptr || in->shape.size() != 4 ||
      wide->shape.size() != 5 || out->shape.size() != 4) {
    return std::nullopt;
  }
  // [B, KV, L, D] -> [B, KV, R, L, D] -> [B, KV * R, L, D].
  const auto& s = in->shape;
  const auto& w = wide->shape;
  const auto& o = out->shape;
  const Dim& repeats = w[2];
  if (!repeats.symbol.empty() || !s[1].symbol.empty() || !o[1].symbol.empty() ||
      !same_dim(w[0], s[0]) || !same_dim(w[1], s[1]) || !same_dim(w[3], s[2]) ||
      !same_dim(w[4], s[3]) || !same_dim(o[0], s[0]) || o[1].hint != s[1].hint * repeats.hint ||
      !same_dim(o[2], s[2]) || !same_dim(o[3], s[3])) {
    return std::nullopt;
  }
  return std::make_pair(source, repeats.hint);
}

Match match_grouped_query_attention(const ExportedProgram& program, const DefUse& graph,
                                    const Node& attention) {
  const auto keys = unrepeated(program, graph, tensor_input(attention, "key"));
  const auto values = unrepeated(program, graph, tensor_input(attention, "value"));
  if (!keys || !values || keys->second != values->second) return std::nullopt;
  Node fused = attention;
  for (NamedArg& input : fused.inputs) {
    if (input.name == "key") input.arg = tensor_arg(keys->first);
    if (input.name == "value") input.arg = tensor_arg(values->first);
  }
  std::erase_if(fused.inputs, [](const NamedArg& input) { return input.name == "enable_gqa"; });
  fused.inputs.push_back({"enable_gqa", bool_arg(true), true});
  return std::make_pair(&attention, std::move(fused));
}

// --- Activations written out: GELU (exact and tanh) and SiLU.

// A value as coefficient * factor * factor * ...: the multiplications, divisions by a
// number and negations that compute it, flattened (so that `0.5 * x * y`, `x * 0.5 * y`
// and `x * y / 2` read the same). Each value below the root must be read once, by the
// pattern; a value read elsewhere is a factor.
struct Product {
  double coefficient = 1.0;
  std::vector<std::string> factors;
};

// A value as constant + term + term + ...: the additions and subtractions of numbers
// that compute it, flattened likewise.
struct Sum {
  double constant = 0.0;
  std::vector<std::string> terms;
};

bool unit_alpha(const Node& node) {
  return node.input("alpha") == nullptr || literal_number(node, "alpha") == 1.0;
}

void collect_product(const DefUse& graph, const std::string& value, bool root, Product& product) {
  const Node* node = graph.producer(value);
  if (node == nullptr || (!root && !graph.read_once(value))) {
    product.factors.push_back(value);
    return;
  }
  const bool multiplies = is(node, "aten.mul.Tensor") || is(node, "aten.mul.Scalar");
  const bool divides = is(node, "aten.div.Tensor") || is(node, "aten.div.Scalar");
  if ((multiplies || divides) && node->input("rounding_mode") == nullptr) {
    if (const auto number = literal_number(*node, "other"); number && *number != 0.0) {
      product.coefficient *= divides ? 1.0 / *number : *number;
      collect_product(graph, tensor_input(*node, "self"), false, product);
      return;
    }
    if (const auto pair = operands(*node); pair && multiplies) {
      collect_product(graph, pair->first, false, product);
      collect_product(graph, pair->second, false, product);
      return;
    }
  }
  if (is(node, "aten.neg.default")) {
    product.coefficient = -product.coefficient;
    collect_product(graph, tensor_input(*node, "self"), false, product);
    return;
  }
  product.factors.push_back(value);
}

Product product_of(const DefUse& graph, const std::string& value, bool root) {
  Product product;
  collect_product(graph, value, root, product);
  return product;
}

void collect_sum(const DefUse& graph, const std::string& value, bool root, Sum& sum) {
  const Node* node = graph.producer(value);
  if (node == nullptr || (!root && !graph.read_once(value))) {
    sum.terms.push_back(value);
    return;
  }
  const bool adds = is(node, "aten.add.Tensor") || is(node, "aten.add.Scalar");
  const bool subtracts = is(node, "aten.sub.Tensor") || is(node, "aten.sub.Scalar");
  if ((adds || subtracts) && unit_alpha(*node)) {
    if (const auto number = literal_number(*node, "other")) {
      sum.constant += subtracts ? -*number : *number;
      collect_sum(graph, tensor_input(*node, "self"), false, sum);
      return;
    }
    if (const auto pair = operands(*node); pair && adds) {
      collect_sum(graph, pair->first, false, sum);
      collect_sum(graph, pair->second, false, sum);
      return;
    }
  }
  sum.terms.push_back(value);
}

Sum sum_of(const DefUse& graph, const std::string& value, bool root) {
  Sum sum;
  collect_sum(graph, value, root, sum);
  return sum;
}

// Whether a coefficient written in a model equals `expected`: to float32's precision, in
// which models compute (GPT-2 writes sqrt(2/pi) exactly, others as 0.7978845608).
bool about(double coefficient, double expected) {
  return std::abs(coefficient - expected) <= 1e-7 * std::abs(expected);
}

// The node `value` is the output of, when it is `target` and read only by the pattern.
const Node* inner(const DefUse& graph, const std::string& value, std::string_view target) {
  const Node* node = graph.producer(value);
  return is(node, target) && graph.read_once(value) ? node : nullptr;
}

// Whether `value` is coefficient * x, alone.
bool scales(const DefUse& graph, const std::string& value, double coefficient,
            const std::string& x) {
  const Product product = product_of(graph, value, false);
  return product.factors == std::vector<std::string>{x} && about(product.coefficient, coefficient);
}

// Whether `value` is 1 + f(coefficient * x), where f is `function`.
bool one_plus(const DefUse& graph, const std::string& value, std::string_view function,
              const std::function<bool(const std::string&)>& argument) {
  const Sum sum = sum_of(graph, value, false);
  if (sum.terms.size() != 1 || sum.constant != 1.0) return false;
  const Node* node = inner(graph, sum.terms[0], function);
  return node != nullptr && argument(tensor_input(*node, "self"));
}

// x ** 3 written as pow(x, 3) or x * x * x, times 0.044715: GELU's cubic term.
bool cubic_term(const DefUse& graph, const std::string& value, const std::string& x) {
  const Product product = product_of(graph, value, false);
  if (!about(product.coefficient, 0.044715)) return false;
  if (product.factors == std::vector<std::string>{x, x, x}) return true;
  const Node* cube = product.factors.size() == 1
                         ? inner(graph, product.factors[0], "aten.pow.Tensor_Scalar")
                         : nullptr;
  return cube != nullptr && tensor_input(*cube, "self") == x &&
         literal_number(*cube, "exponent") == 3.0;
}

// The argument of tanh in the tanh approximation, in its two usual spellings:
// sqrt(2/pi) * (x + 0.044715 * x**3) (GPT-2's NewGELU) and
// x * sqrt(2/pi) * (1 + 0.044715 * x * x) (FastGELU).
bool tanh_gelu_argument(const DefUse& graph, const std::string& value, const std::string& x) {
  const Product product = product_of(graph, value, false);
  if (!about(product.coefficient, std::sqrt(2.0 / std::numbers::pi))) return false;
  if (product.factors.size() == 1) {
    const Sum sum = sum_of(graph, product.factors[0], false);
    if (sum.constant != 0.0 || sum.terms.size() != 2) return false;
    return (sum.terms[0] == x && cubic_term(graph, sum.terms[1], x)) ||
           (sum.terms[1] == x && cubic_term(graph, sum.terms[0], x));
  }
  if (product.factors.size() != 2) return false;
  for (const auto& [first, second] : {std::make_pair(product.factors[0], product.factors[1]),
                                      std::make_pair(product.factors[1], product.factors[0])}) {
    if (first != x) continue;
    const Sum sum = sum_of(graph, second, false);
    if (sum.constant != 1.0 || sum.terms.size() != 1) continue;
    const Product square = product_of(graph, sum.terms[0], false);
    if (square.factors == std::vector<std::string>{x, x} && about(square.coefficient, 0.044715)) {
      return true;
    }
  }
  return false;
}

// The activation a fused node computes, as aten's gelu or silu takes it.
Match activation(const ExportedProgram& program, const Node& anchor, const std::string& x,
                 std::string_view target, std::optional<std::string_view> approximate) {
  const std::string out = output_of(anchor);
  const TensorMeta* in_meta = meta_of(program, x);
  const TensorMeta* out_meta = meta_of(program, out);
  // The same dtype and shape: a broadcast or a promotion is more than the activation.
  if (out.empty() || in_meta == nullptr || out_meta == nullptr ||
      in_meta->dtype != out_meta->dtype || !pass_util::same_dims(in_meta->shape, out_meta->shape)) {
    return std::nullopt;
  }
  std::vector<NamedArg> inputs = {{"self", tensor_arg(x)}};
  if (approximate) {
    inputs.push_back(
        {"approximate", Arg{ArgKind::String, {}, {}, {}, {std::string(*approximate)}}});
  }
  return std::make_pair(&anchor, replacing(anchor, std::string(target), std::move(inputs)));
}

// 0.5 * x * (1 + erf(x / sqrt(2))) or 0.5 * x * (1 + tanh(...)), in any order of factors.
Match match_gelu(const ExportedProgram& program, const DefUse& graph, const Node& anchor) {
  const Product product = product_of(graph, output_of(anchor), true);
  if (product.factors.size() != 2 || !about(product.coefficient, 0.5)) return std::nullopt;
  for (const auto& order : {std::make_pair(product.factors[0], product.factors[1]),
                            std::make_pair(product.factors[1], product.factors[0])}) {
    const std::string& x = order.first;
    const std::string& bracket = order.second;
    if (one_plus(graph, bracket, "aten.erf.default", [&](const std::string& argument) {
          return scales(graph, argument, 1.0 / std::numbers::sqrt2, x);
        })) {
      return activation(program, anchor, x, "aten.gelu.default", "none");
    }
    if (one_plus(graph, bracket, "aten.tanh.default", [&](const std::string& argument) {
          return tanh_gelu_argument(graph, argument, x);
        })) {
      return activation(program, anchor, x, "aten.gelu.default", "tanh");
    }
  }
  return std::nullopt;
}

// x * sigmoid(x).
Match match_silu(const ExportedProgram& program, const DefUse& graph, const Node& anchor) {
  const auto pair = operands(anchor);
  if (!pair) return std::nullopt;
  for (const auto& [x, gate] : {*pair, std::make_pair(pair->second, pair->first)}) {
    const Node* sigmoid = inner(graph, gate, "aten.sigmoid.default");
    if (sigmoid != nullptr && tensor_input(*sigmoid, "self") == x) {
      return activation(program, anchor, x, "aten.silu.default", std::nullopt);
    }
  }
  return std::nullopt;
}

// --- Layer norm: (x - mean(x)) / sqrt(var(x) + eps) [* weight] [+ bias], along one axis.

// Which output of `node` `value` is, or nullopt.
std::optional<std::size_t> output_index(const Node& node, const std::string& value) {
  for (std::size_t index = 0; index < node.outputs.size(); ++index) {
    const Arg& output = node.outputs[index];
    if (output.kind == ArgKind::Tensor && !output.names.empty() && output.names[0] == value) {
      return index;
    }
  }
  return std::nullopt;
}

// The one axis a statistic reduces with keepdim, as a non-negative axis of a `rank`-d input.
std::optional<std::int64_t> kept_axis(const Node& node, std::size_t rank) {
  const auto dims = literal_ints(node, "dim");
  const auto keepdim = literal_int(node, "keepdim");
  if (!dims || dims->size() != 1 || keepdim != 1 || rank == 0) return std::nullopt;
  const auto size = static_cast<std::int64_t>(rank);
  const std::int64_t axis = (*dims)[0] < 0 ? (*dims)[0] + size : (*dims)[0];
  return axis >= 0 && axis < size ? std::optional(axis) : std::nullopt;
}

// Whether a var or var_mean node computes the population variance (no Bessel correction).
bool population_variance(const Node& node) {
  if (node.input("correction") != nullptr) return literal_number(node, "correction") == 0.0;
  return literal_int(node, "unbiased") == 0;  // var.dim / var_mean.dim: unbiased=False
}

constexpr std::array<std::string_view, 4> kVariances = {
    "aten.var.dim", "aten.var.correction", "aten.var_mean.dim", "aten.var_mean.correction"};

// The statistics of a written-out layer norm: x, the axis, and the nodes that only the
// pattern may read.
struct Moments {
  std::string x;
  std::int64_t axis = 0;
};

// `centered` = x - mean(x) and `variance` its mean square, along one kept axis:
// mean((x - mean(x)) ** 2) or var(x, correction=0), or var_mean's two outputs.
std::optional<Moments> moments(const ExportedProgram& program, const DefUse& graph,
                               const std::string& centered, const std::string& variance,
                               const Node& anchor) {
  const Node* sub = graph.producer(centered);
  if (!is(sub, "aten.sub.Tensor") || !unit_alpha(*sub)) return std::nullopt;
  const std::string x = tensor_input(*sub, "self");
  const std::string mean_value = tensor_input(*sub, "other");
  const Node* mean = graph.producer(mean_value);
  const Node* statistic = graph.producer(variance);
  const std::size_t rank = rank_of(program, x);
  if (mean == nullptr || statistic == nullptr || x.empty() || !graph.read_once(mean_value) ||
      !graph.read_once(variance)) {
    return std::nullopt;
  }
  std::optional<std::int64_t> axis;
  const Node* square = nullptr;
  if (is(statistic, "aten.mean.dim") && is(mean, "aten.mean.dim")) {
    // mean((x - mean(x)) ** 2): the centered values are read by the square and the anchor.
    const std::string squares = tensor_input(*statistic, "self");
    square = graph.producer(squares);
    if (!graph.read_once(squares) ||
        !((is(square, "aten.pow.Tensor_Scalar") && tensor_input(*square, "self") == centered &&
           literal_number(*square, "exponent") == 2.0) ||
          (is(square, "aten.mul.Tensor") && tensor_input(*square, "self") == centered &&
           tensor_input(*square, "other") == centered)) ||
        statistic->input("dtype") != nullptr) {
      return std::nullopt;
    }
    axis = kept_axis(*statistic, rank);
  } else if (std::find(kVariances.begin(), kVariances.end(), statistic->target) !=
                 kVariances.end() &&
             tensor_input(*statistic, "self") == x && population_variance(*statistic)) {
    const bool joint = statistic->target.starts_with("aten.var_mean");
    // var_mean gives (variance, mean) from one node; var goes with a separate mean.
    if (joint ? (mean != statistic || output_index(*statistic, variance) != 0U ||
                 output_index(*statistic, mean_value) != 1U)
              : !is(mean, "aten.mean.dim")) {
      return std::nullopt;
    }
    axis = kept_axis(*statistic, rank);
  } else {
    return std::nullopt;
  }
  if (!axis || (is(mean, "aten.mean.dim") &&
                (tensor_input(*mean, "self") != x || kept_axis(*mean, rank) != axis ||
                 mean->input("dtype") != nullptr))) {
    return std::nullopt;
  }
  // The centered values feed the variance and the normalisation, nothing else.
  for (const Node* reader : graph.readers(centered)) {
    if (reader != square && reader != &anchor) return std::nullopt;
  }
  if (graph.is_graph_output(centered)) return std::nullopt;
  return Moments{x, *axis};
}

// A per-channel parameter applied along `axis` of a `rank`-d value: a 1-d tensor of `size`
// elements, itself or unsqueezed to [size, 1, ..., 1] so that it broadcasts along `axis`.
std::string channel_parameter(const ExportedProgram& program, const DefUse& graph,
                              const std::string& value, std::int64_t axis, std::size_t rank,
                              std::int64_t size, const std::string& dtype) {
  const TensorMeta* meta = meta_of(program, value);
  if (meta == nullptr || meta->dtype != dtype ||
      static_cast<std::int64_t>(meta->shape.size()) != static_cast<std::int64_t>(rank) - axis ||
      meta->shape[0].hint != size || !meta->shape[0].symbol.empty() ||
      !std::all_of(meta->shape.begin() + 1, meta->shape.end(),
                   [](const Dim& dim) { return dim.hint == 1 && dim.symbol.empty(); })) {
    return "";
  }
  const std::string source = strip(graph, value, true);
  const TensorMeta* source_meta = meta_of(program, source);
  return source_meta != nullptr && source_meta->dtype == dtype && source_meta->shape.size() == 1
             ? source
             : "";
}

// The normalised value `anchor` computes: (centered, variance + eps) when the anchor is
// centered / sqrt(variance + eps) or centered * rsqrt(variance + eps).
std::optional<std::pair<std::string, std::string>> normalisation(const DefUse& graph,
                                                                 const Node& anchor) {
  const auto pair = operands(anchor);
  if (!pair) return std::nullopt;
  const bool divides = is(&anchor, "aten.div.Tensor");
  const std::string_view root = divides ? "aten.sqrt.default" : "aten.rsqrt.default";
  for (const auto& [centered, scale] : {*pair, std::make_pair(pair->second, pair->first)}) {
    if (divides && centered != pair->first) continue;  // the divisor is the root
    if (const Node* node = inner(graph, scale, root)) {
      return std::make_pair(centered, tensor_input(*node, "self"));
    }
  }
  return std::nullopt;
}

Match match_layer_norm(const ExportedProgram& program, const DefUse& graph, const Node& anchor) {
  const auto normalised = normalisation(graph, anchor);
  if (!normalised) return std::nullopt;
  const auto& [centered, shifted] = *normalised;
  const Node* add = inner(graph, shifted, "aten.add.Tensor");
  const auto eps = add != nullptr ? literal_number(*add, "other") : std::nullopt;
  if (!eps || !unit_alpha(*add)) return std::nullopt;
  const auto stats = moments(program, graph, centered, tensor_input(*add, "self"), anchor);
  if (!stats) return std::nullopt;
  const TensorMeta* x_meta = meta_of(program, stats->x);
  const Dim& channels = x_meta->shape[static_cast<std::size_t>(stats->axis)];
  const std::size_t rank = x_meta->shape.size();
  const Node* last = &anchor;
  std::string value = output_of(anchor);
  // A cast back to the input's dtype, as half-precision models do after computing in float32.
  if (const auto next = graph.readers(value);
      graph.read_once(value) && next.size() == 1 && is_cast(next[0])) {
    last = next[0];
    value = output_of(*last);
  }
  const std::string dtype = dtype_of(program, value);
  // Weight and bias need the channel count; without them it may be dynamic.
  std::string weight;
  std::string bias;
  const auto affine = [&](std::string_view target) {
    const auto next = graph.readers(value);
    if (!channels.symbol.empty() || !graph.read_once(value) || next.size() != 1 ||
        !is(next[0], target) || (target == "aten.add.Tensor" && !unit_alpha(*next[0]))) {
      return std::string();
    }
    const std::string other = other_operand(*next[0], value);
    std::string parameter =
        channel_parameter(program, graph, other, stats->axis, rank, channels.hint, dtype);
    const TensorMeta* out = meta_of(program, output_of(*next[0]));
    if (parameter.empty() || out == nullptr || out->dtype != dtype ||
        !pass_util::same_dims(out->shape, x_meta->shape)) {
      return std::string();
    }
    last = next[0];
    value = output_of(*last);
    return parameter;
  };
  weight = affine("aten.mul.Tensor");
  if (!weight.empty()) bias = affine("aten.add.Tensor");
  // x upcast from the input for the statistics: normalise the input itself, when the result
  // is in the input's dtype again.
  std::string input = stats->x;
  if (const Node* upcast = graph.producer(input);
      is_cast(upcast) && dtype_of(program, tensor_input(*upcast, "self")) == dtype) {
    input = tensor_input(*upcast, "self");
  }
  if (dtype_of(program, input) != dtype || output_of(*last).empty()) return std::nullopt;
  const bool last_axis = stats->axis + 1 == static_cast<std::int64_t>(rank);
  const auto optional_tensor = [](const std::string& name) {
    return name.empty() ? Arg{ArgKind::None, {}, {}, {}, {}} : tensor_arg(name);
  };
  std::vector<NamedArg> inputs = {{"input", tensor_arg(input)}};
  if (last_axis) {
    // aten.layer_norm, which the registry writes as mx.fast.layer_norm, and which a
    // LayerNorm module's region becomes an nn.LayerNorm for.
    inputs.push_back(
        {"normalized_shape", ints_arg({channels.symbol.empty() ? channels.hint : -1})});
  }
  inputs.push_back({"weight", optional_tensor(weight)});
  inputs.push_back({"bias", optional_tensor(bias)});
  inputs.push_back({"eps", float_arg(*eps)});
  if (!last_axis) inputs.push_back({"axis", int_arg(stats->axis)});
  return std::make_pair(
      last, replacing(*last, last_axis ? "aten.layer_norm.default" : "mlx.fast.layer_norm",
                      std::move(inputs)));
}

// native_layer_norm of which only the output is read (not the mean and 1 / std that
// training keeps): aten.layer_norm, one mx.fast.layer_norm call.
Match match_native_layer_norm(const ExportedProgram& /*program*/, const DefUse& graph,
                              const Node& node) {
  if (node.outputs.empty() || node.outputs[0].kind != ArgKind::Tensor ||
      node.outputs[0].names.empty() || node.outputs[0].names[0].empty()) {
    return std::nullopt;
  }
  for (std::size_t index = 1; index < node.outputs.size(); ++index) {
    for (const std::string& name : node.outputs[index].names) {
      if (!name.empty() && (!graph.readers(name).empty() || graph.is_graph_output(name))) {
        return std::nullopt;
      }
    }
  }
  Node fused = replacing(node, "aten.layer_norm.default", node.inputs);
  fused.outputs.resize(1);
  return std::make_pair(&node, std::move(fused));
}

// --- Interleaved rotary embedding (GPT-J, Meta's original Llama): pairs (x[2i], x[2i+1])
// rotate, mx.fast.rope(..., traditional=True).

// x[..., start::2], the even (start 0) or odd (start 1) elements of the last axis.
std::string strided_half(const ExportedProgram& program, const DefUse& graph,
                         const std::string& value, std::int64_t start) {
  const Node* slice = graph.producer(value);
  if (!is(slice, "aten.slice.Tensor") || literal_int(*slice, "step") != 2) return "";
  std::string x = tensor_input(*slice, "self");
  const auto dim = literal_int(*slice, "dim");
  const auto dims = static_last_dim(program, x);
  const auto end = literal_int(*slice, "end");
  if (!dim || !is_last_axis(*dim, rank_of(program, x)) || !dims ||
      (slice->input("start") == nullptr ? 0 : literal_int(*slice, "start")) != start || !end ||
      *end < *dims) {
    return "";
  }
  return x;
}

// The stack of two values along a new last axis, flattened back into x's shape: the
// interleaving of (a, b) as [a0, b0, a1, b1, ...]; nullopt when `value` is not that.
std::optional<std::pair<std::string, std::string>> interleaved(const ExportedProgram& program,
                                                               const DefUse& graph,
                                                               const Node& flatten) {
  const std::string stacked = tensor_input(flatten, "self");
  const Node* stack = graph.producer(stacked);
  const Arg* parts = stack != nullptr ? stack->input("tensors") : nullptr;
  const std::size_t rank = rank_of(program, stacked);
  if (!is(stack, "aten.stack.default") || parts == nullptr || parts->names.size() != 2 ||
      !graph.read_once(stacked) || !is_last_axis(literal_int(*stack, "dim").value_or(0), rank) ||
      rank < 2) {
    return std::nullopt;
  }
  // flatten(-2), or a view/reshape to x's shape (rank one less, last dim twice as wide).
  if (is(&flatten, "aten.flatten.using_ints")) {
    const auto start = literal_int(flatten, "start_dim");
    const auto end = flatten.input("end_dim") == nullptr ? std::optional<std::int64_t>(-1)
                                                         : literal_int(flatten, "end_dim");
    const auto wrap = [&](std::int64_t dim) {
      return dim < 0 ? dim + static_cast<std::int64_t>(rank) : dim;
    };
    if (!start || !end || wrap(*start) != static_cast<std::int64_t>(rank) - 2 ||
        wrap(*end) != static_cast<std::int64_t>(rank) - 1) {
      return std::nullopt;
    }
  }
  const TensorMeta* in = meta_of(program, stacked);
  const TensorMeta* out = meta_of(program, output_of(flatten));
  if (in == nullptr || out == nullptr || out->shape.size() + 1 != rank ||
      !pass_util::same_dims({in->shape.begin(), in->shape.end() - 2},
                            {out->shape.begin(), out->shape.end() - 1}) ||
      in->shape.back().hint != 2 || !out->shape.back().symbol.empty() ||
      out->shape.back().hint != 2 * in->shape[rank - 2].hint) {
    return std::nullopt;
  }
  return std::make_pair(parts->names[0], parts->names[1]);
}

Node interleaved_rope(const Node& anchor, const std::string& x, std::int64_t dims,
                      const RopeTable& table) {
  return replacing(anchor, "mlx.fast.rope",
                   {{"input", tensor_arg(x)},
                    {"dims", int_arg(dims)},
                    {"traditional", bool_arg(true)},
                    {"base", float_arg(table.base)},
                    {"scale", float_arg(1.0)},
                    {"offset", table.offset},
                    {"axis", int_arg(table.axis)}});
}

bool same_offset(const RopeTable& a, const RopeTable& b) {
  return a.offset.names == b.offset.names && a.offset.ints == b.offset.ints && a.base == b.base &&
         a.axis == b.axis;
}

// The output has x's dtype and shape: no promotion or broadcast hides in the pattern.
bool keeps_type(const ExportedProgram& program, const std::string& x, const std::string& out) {
  const TensorMeta* x_meta = meta_of(program, x);
  const TensorMeta* out_meta = meta_of(program, out);
  return x_meta != nullptr && out_meta != nullptr && x_meta->dtype == out_meta->dtype &&
         pass_util::same_dims(x_meta->shape, out_meta->shape) && x_meta->shape.size() >= 3;
}

// GPT-J: x * repeat_interleave(cos) + rotate_every_two(x) * repeat_interleave(sin), where
// rotate_every_two(x) = stack((-x[..., 1::2], x[..., ::2]), -1).flatten(-2).
Match match_rope_every_two(const ExportedProgram& program, const DefUse& graph, const Node& add) {
  const auto sum = operands(add);
  if (!sum || !unit_alpha(add)) return std::nullopt;
  for (const auto& [cos_term, sin_term] : {*sum, std::make_pair(sum->second, sum->first)}) {
    const Node* cos_product = inner(graph, cos_term, "aten.mul.Tensor");
    const Node* sin_product = inner(graph, sin_term, "aten.mul.Tensor");
    const auto sin_pair = sin_product != nullptr ? operands(*sin_product) : std::nullopt;
    if (cos_product == nullptr || !sin_pair) continue;
    for (const auto& [rotated, sin_table] :
         {*sin_pair, std::make_pair(sin_pair->second, sin_pair->first)}) {
      const Node* flatten = graph.producer(rotated);
      if (flatten == nullptr || !graph.read_once(rotated)) continue;
      const auto halves = interleaved(program, graph, *flatten);
      const Node* negation = halves ? inner(graph, halves->first, "aten.neg.default") : nullptr;
      if (negation == nullptr || !graph.read_once(halves->second)) continue;
      const std::string x = strided_half(program, graph, halves->second, 0);
      if (x.empty() || strided_half(program, graph, tensor_input(*negation, "self"), 1) != x ||
          !graph.read_once(tensor_input(*negation, "self")) ||
          !keeps_type(program, x, output_of(add))) {
        continue;
      }
      const std::int64_t dims = *static_last_dim(program, x);
      const std::string cos_table = other_operand(*cos_product, x);
      if (cos_table.empty() || dims % 2 != 0) continue;
      const auto cosine =
          interleaved_table(program, graph, cos_table, "aten.cos.default", x, dims, true);
      const auto sine =
          interleaved_table(program, graph, sin_table, "aten.sin.default", x, dims, true);
      if (!cosine || !sine || cosine->angles != sine->angles || !same_offset(*cosine, *sine)) {
        continue;
      }
      return std::make_pair(&add, interleaved_rope(add, x, dims, *cosine));
    }
  }
  return std::nullopt;
}

// a * b as (a, b) when `value` is their product, read only by the pattern.
std::optional<std::pair<std::string, std::string>> factors_of(const DefUse& graph,
                                                              const std::string& value) {
  const Node* product = inner(graph, value, "aten.mul.Tensor");
  return product != nullptr ? operands(*product) : std::nullopt;
}

// Whether {a, b} is the pair {first, second} in either order.
bool same_pair(const std::pair<std::string, std::string>& pair, const std::string& first,
               const std::string& second) {
  return (pair.first == first && pair.second == second) ||
         (pair.first == second && pair.second == first);
}

// The stack form: stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), -1).flatten(-2), with
// x1 = x[..., ::2], x2 = x[..., 1::2] and cos, sin of one column per pair.
Match match_rope_stacked(const ExportedProgram& program, const DefUse& graph, const Node& flatten) {
  const auto halves = interleaved(program, graph, flatten);
  if (!halves) return std::nullopt;
  const Node* difference = inner(graph, halves->first, "aten.sub.Tensor");
  const Node* total = inner(graph, halves->second, "aten.add.Tensor");
  if (difference == nullptr || total == nullptr || !unit_alpha(*difference) ||
      !unit_alpha(*total)) {
    return std::nullopt;
  }
  // x1 * cos - x2 * sin: the first product holds the even elements and the cosines.
  const auto first = factors_of(graph, tensor_input(*difference, "self"));
  const auto second = factors_of(graph, tensor_input(*difference, "other"));
  const auto sum = operands(*total);
  if (!first || !second || !sum) return std::nullopt;
  const auto third = factors_of(graph, sum->first);
  const auto fourth = factors_of(graph, sum->second);
  if (!third || !fourth) return std::nullopt;
  for (const auto& [even, cos_table] : {*first, std::make_pair(first->second, first->first)}) {
    const std::string x = strided_half(program, graph, even, 0);
    if (x.empty()) continue;
    const bool odd_first = strided_half(program, graph, second->first, 1) == x;
    if (!odd_first && strided_half(program, graph, second->second, 1) != x) continue;
    const std::string& odd = odd_first ? second->first : second->second;
    const std::string& sin_table = odd_first ? second->second : second->first;
    // x1 * sin + x2 * cos, in either order of terms and factors.
    if (!((same_pair(*third, even, sin_table) && same_pair(*fourth, odd, cos_table)) ||
          (same_pair(*fourth, even, sin_table) && same_pair(*third, odd, cos_table)))) {
      continue;
    }
    // The halves are read by these four products only.
    if (graph.readers(even).size() != 2 || graph.readers(odd).size() != 2 ||
        graph.is_graph_output(even) || graph.is_graph_output(odd) ||
        !keeps_type(program, x, output_of(flatten))) {
      continue;
    }
    const std::int64_t dims = *static_last_dim(program, x);
    const auto cosine =
        interleaved_table(program, graph, cos_table, "aten.cos.default", x, dims, false);
    const auto sine =
        interleaved_table(program, graph, sin_table, "aten.sin.default", x, dims, false);
    if (!cosine || !sine || cosine->angles != sine->angles || !same_offset(*cosine, *sine)) {
      continue;
    }
    return std::make_pair(&flatten, interleaved_rope(flatten, x, dims, *cosine));
  }
  return std::nullopt;
}

// Matches every node of `target` against one DefUse of the program, then replaces each
// matched pattern's last node. With a `base`, each replacement's output is renamed after
// what it now computes ("rms_norm", "rope_1"): the anchor's name ("mul_4", "add_3") told
// what it was.
std::size_t rewrite(ExportedProgram& program, std::string_view target,
                    Match (*match)(const ExportedProgram&, const DefUse&, const Node&),
                    std::string_view base) {
  std::vector<std::pair<std::size_t, Node>> rewrites;
  {
    const DefUse graph(program);
    for (const Node& node : program.nodes) {
      if (node.target != target) continue;
      if (auto found = match(program, graph, node)) {
        rewrites.emplace_back(static_cast<std::size_t>(found->first - program.nodes.data()),
                              std::move(found->second));
      }
    }
  }
  for (auto& [index, node] : rewrites) {
    const std::string old_name = output_of(node);
    program.nodes[index] = std::move(node);
    if (base.empty() || old_name.empty()) continue;
    std::string name(base);
    for (int suffix = 1; program.tensors.contains(name); ++suffix) {
      name = fmt::format("{}_{}", base, suffix);
    }
    pass_util::replace_uses(program, index, old_name, name);
    program.nodes[index].outputs[0].names[0] = name;
    if (auto meta = program.tensors.extract(old_name)) {
      meta.key() = name;
      program.tensors.insert(std::move(meta));
    }
  }
  return rewrites.size();
}

}  // namespace

std::size_t fuse_rms_norm(ExportedProgram& program) {
  return rewrite(program, "aten.rsqrt.default", match_rms_norm, "rms_norm");
}

std::size_t fuse_rope(ExportedProgram& program) {
  // The interleaved form ends in the add (GPT-J) or in the flatten of a stack.
  return rewrite(program, "aten.add.Tensor", match_rope, "rope") +
         rewrite(program, "aten.add.Tensor", match_rope_every_two, "rope") +
         rewrite(program, "aten.flatten.using_ints", match_rope_stacked, "rope") +
         rewrite(program, "aten.view.default", match_rope_stacked, "rope") +
         rewrite(program, "aten.reshape.default", match_rope_stacked, "rope");
}

std::size_t fuse_layer_norm(ExportedProgram& program) {
  return rewrite(program, "aten.div.Tensor", match_layer_norm, "layer_norm") +
         rewrite(program, "aten.mul.Tensor", match_layer_norm, "layer_norm") +
         rewrite(program, "aten.native_layer_norm.default", match_native_layer_norm, "layer_norm");
}

std::size_t fuse_activations(ExportedProgram& program) {
  // Anchors: the last op of each pattern (GELU may end in a multiplication or in `/ 2`).
  struct Rule {
    std::string_view anchor;
    Match (*match)(const ExportedProgram&, const DefUse&, const Node&);
    std::string_view name;
  };
  constexpr std::array<Rule, 3> kRules = {{
      {"aten.mul.Tensor", match_gelu, "gelu"},
      {"aten.div.Tensor", match_gelu, "gelu"},
      {"aten.mul.Tensor", match_silu, "silu"},
  }};
  std::size_t fused = 0;
  for (const Rule& rule : kRules) fused += rewrite(program, rule.anchor, rule.match, rule.name);
  return fused;
}

std::size_t fuse_grouped_query_attention(ExportedProgram& program) {
  // The attention node keeps its name: it still computes attention.
  return rewrite(program, "aten.scaled_dot_product_attention.default",
                 match_grouped_query_attention, "");
}

}  // namespace torch2mlx
