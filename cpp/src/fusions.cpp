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

std::optional<RopeTable> rope_table(const ExportedProgram& program, const DefUse& graph,
                                    const std::string& table, std::string_view function,
                                    const std::string& x, std::int64_t dims) {
  // The table broadcasts over every axis of x but the last two: [1, ..., 1, L, dims].
  const TensorMeta* table_meta = meta_of(program, table);
  const TensorMeta* x_meta = meta_of(program, x);
  if (table_meta == nullptr || x_meta == nullptr || table_meta->shape.size() < 2 ||
      table_meta->shape.size() > x_meta->shape.size()) {
    return std::nullopt;
  }
  const auto& shape = table_meta->shape;
  if (!same_dim(shape[shape.size() - 2], x_meta->shape[x_meta->shape.size() - 2]) ||
      shape.back().hint != dims || !shape.back().symbol.empty() ||
      !std::all_of(shape.begin(), shape.end() - 2,
                   [](const Dim& dim) { return dim.hint == 1 && dim.symbol.empty(); })) {
    return std::nullopt;
  }
  const Node* trig = graph.producer(strip(graph, table, true));
  if (!is(trig, function)) return std::nullopt;
  RopeTable result;
  result.angles = tensor_input(*trig, "self");
  const Node* cat = graph.producer(result.angles);
  const Arg* parts = cat != nullptr ? cat->input("tensors") : nullptr;
  const auto cat_dim = cat != nullptr ? literal_int(*cat, "dim") : std::nullopt;
  if (!is(cat, "aten.cat.default") || parts == nullptr || parts->names.size() != 2 ||
      parts->names[0] != parts->names[1] ||
      !is_last_axis(cat_dim.value_or(0), rank_of(program, result.angles))) {
    return std::nullopt;
  }
  const Node* product = graph.producer(parts->names[0]);
  const auto pair =
      product != nullptr && is(product, "aten.mul.Tensor") ? operands(*product) : std::nullopt;
  if (!pair) return std::nullopt;
  for (const auto& [positions, frequencies] : {*pair, std::make_pair(pair->second, pair->first)}) {
    const auto [unshifted, shift] = shifted_positions(graph, strip(graph, positions, true));
    const Node* arange = graph.producer(strip(graph, unshifted, true));
    const auto values = weight_values(program, strip(graph, frequencies, false));
    if (arange == nullptr || !values) continue;
    std::int64_t start = 0;
    if (is(arange, "aten.arange.start") || is(arange, "aten.arange.start_step")) {
      const auto literal = literal_int(*arange, "start");
      if (!literal) continue;
      start = *literal;
      if (arange->input("step") != nullptr && literal_int(*arange, "step") != 1) continue;
    } else if (!is(arange, "aten.arange.default")) {
      continue;
    }
    // A shift is kept as it is, symbol or int; arange(start) + shift would need a sum.
    if (shift && start != 0) continue;
    // Positions run along the table's second-to-last axis, one per row of x.
    const TensorMeta* count = meta_of(program, output_of(*arange));
    if (count == nullptr || count->shape.size() != 1 ||
        !same_dim(count->shape[0], shape[shape.size() - 2])) {
      continue;
    }
    const auto base = rope_base(*values, dims);
    if (!base) continue;
    result.offset = shift ? *shift : int_arg(start);
    result.base = *base;
    return result;
  }
  return std::nullopt;
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
  return rewrite(program, "aten.add.Tensor", match_rope, "rope");
}

std::size_t fuse_grouped_query_attention(ExportedProgram& program) {
  // The attention node keeps its name: it still computes attention.
  return rewrite(program, "aten.scaled_dot_product_attention.default",
                 match_grouped_query_attention, "");
}

}  // namespace torch2mlx
