#include "torch2mlx/weight_converter.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>

#include "atomic_file.h"
#include "torch2mlx/cast.h"
#include "torch2mlx/error.h"
#include "torch2mlx/mapped_file.h"
#include "torch2mlx/quantize.h"
#include "torch2mlx/safetensors.h"

namespace torch2mlx {
namespace {

namespace fs = std::filesystem;
constexpr std::string_view kComponent = "convert";
constexpr std::string_view kSequential = "torch.nn.modules.container.Sequential";
// Prefixes that wrappers add to every key: torch.compile and DataParallel.
constexpr std::array<std::string_view, 2> kWrapperPrefixes{"_orig_mod.", "module."};

bool is_float(DType dtype) {
  return dtype == DType::F16 || dtype == DType::BF16 || dtype == DType::F32 || dtype == DType::F64;
}

std::string join(std::string_view prefix, std::string_view name) {
  return prefix.empty() ? std::string(name) : fmt::format("{}.{}", prefix, name);
}

// Strips a wrapper prefix when every key carries it; repeats for stacked wrappers.
std::vector<NamedTensor> strip_wrapper_prefixes(std::vector<NamedTensor> tensors,
                                                std::vector<std::string>& notes) {
  bool stripped = true;
  while (stripped && !tensors.empty()) {
    stripped = false;
    for (const auto prefix : kWrapperPrefixes) {
      const bool all = std::all_of(tensors.begin(), tensors.end(), [&](const NamedTensor& t) {
        return t.name.starts_with(prefix);
      });
      if (!all) continue;
      for (auto& tensor : tensors) tensor.name.erase(0, prefix.size());
      notes.push_back(fmt::format("stripped the '{}' prefix from every key", prefix));
      stripped = true;
    }
  }
  return tensors;
}

// weight = g * v / ||v||, the norm taken over the axes where g has size 1.
Tensor fold_weight_norm(const Tensor& g, const Tensor& v, const std::string& name) {
  if (v.dtype != DType::F32 || g.dtype != DType::F32) {
    fail(kComponent, fmt::format("weight norm '{}' is {}; torch2mlx folds float32 weight norm "
                                 "only: call torch.nn.utils.remove_weight_norm before saving",
                                 name, dtype_name(v.dtype)));
  }
  const auto numel = v.numel();
  std::vector<float> values(static_cast<std::size_t>(numel));
  copy_contiguous(v, reinterpret_cast<std::byte*>(values.data()));
  std::vector<float> gains(static_cast<std::size_t>(g.numel()));
  copy_contiguous(g, reinterpret_cast<std::byte*>(gains.data()));
  // g keeps v's rank with 1s on the reduced axes (dim=k), or is a scalar (dim=None).
  const bool whole = g.numel() == 1 &&
                     (g.shape.empty() || v.shape.size() != g.shape.size() ||
                      std::all_of(g.shape.begin(), g.shape.end(), [](auto d) { return d == 1; }));
  std::int64_t kept_axis = -1;
  // g and v as torch's weight_norm never writes them: a damaged or hand-edited checkpoint.
  const auto misfit = [&](std::string_view problem) {
    fail(kComponent,
         fmt::format("weight norm '{}': {} (g {}, v {}); save the model's state_dict() again, "
                     "or call torch.nn.utils.remove_weight_norm before saving",
                     name, problem, fmt::join(g.shape, "x"), fmt::join(v.shape, "x")));
  };
  if (!whole) {
    if (g.shape.size() != v.shape.size()) misfit("g and v ranks differ");
    for (std::size_t axis = 0; axis < g.shape.size(); ++axis) {
      if (g.shape[axis] == v.shape[axis] && g.shape[axis] != 1) {
        if (kept_axis >= 0) misfit("g keeps more than one axis");
        kept_axis = static_cast<std::int64_t>(axis);
      } else if (g.shape[axis] != 1) {
        misfit("g shape does not fit v");
      }
    }
  }
  const auto strides = contiguous_strides(v.shape);
  const std::int64_t kept = kept_axis < 0 ? 1 : v.shape[static_cast<std::size_t>(kept_axis)];
  const std::int64_t stride = kept_axis < 0 ? numel : strides[static_cast<std::size_t>(kept_axis)];
  auto slice_of = [&](std::int64_t flat) { return kept_axis < 0 ? 0 : (flat / stride) % kept; };
  std::vector<double> norms(static_cast<std::size_t>(kept), 0.0);
  for (std::int64_t i = 0; i < numel; ++i) {
    const double value = values[static_cast<std::size_t>(i)];
    norms[static_cast<std::size_t>(slice_of(i))] += value * value;
  }
  for (auto& norm : norms) norm = std::sqrt(norm);
  std::vector<std::byte> bytes(values.size() * sizeof(float));
  auto* out = reinterpret_cast<float*>(bytes.data());
  for (std::int64_t i = 0; i < numel; ++i) {
    const auto slice = static_cast<std::size_t>(slice_of(i));
    out[i] = static_cast<float>(gains[whole ? 0 : slice] * values[static_cast<std::size_t>(i)] /
                                norms[slice]);
  }
  return make_owned_tensor(DType::F32, v.shape, std::move(bytes));
}

// Folds weight_g/weight_v and parametrizations.weight.original0/1 pairs into weights.
std::vector<NamedTensor> fold_weight_norms(std::vector<NamedTensor> tensors,
                                           std::vector<std::string>& notes) {
  struct Pattern {
    std::string_view g, v;
  };
  constexpr std::array<Pattern, 2> kPatterns{
      {{"weight_g", "weight_v"},
       {"parametrizations.weight.original0", "parametrizations.weight.original1"}}};
  std::unordered_map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < tensors.size(); ++i) index.emplace(tensors[i].name, i);
  std::vector<bool> removed(tensors.size(), false);
  std::vector<NamedTensor> folded;
  for (const auto& pattern : kPatterns) {
    for (std::size_t i = 0; i < tensors.size(); ++i) {
      const std::string& name = tensors[i].name;
      // "<owner>.<g>" or just "<g>" for a root module
      const bool root = name == pattern.g;
      if (!root && !name.ends_with(fmt::format(".{}", pattern.g))) continue;
      const std::string owner = root ? "" : name.substr(0, name.size() - pattern.g.size() - 1);
      const auto partner = index.find(join(owner, pattern.v));
      if (partner == index.end()) continue;
      folded.push_back({join(owner, "weight"),
                        fold_weight_norm(tensors[i].tensor, tensors[partner->second].tensor,
                                         owner.empty() ? "(root)" : owner)});
      removed[i] = removed[partner->second] = true;
      notes.push_back(fmt::format("folded weight norm into '{}'", join(owner, "weight")));
    }
  }
  std::vector<NamedTensor> result;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (!removed[i]) result.push_back(std::move(tensors[i]));
  }
  for (auto& tensor : folded) result.push_back(std::move(tensor));
  return result;
}

class ModuleTree {
 public:
  explicit ModuleTree(std::span<const ModuleInfo> modules) {
    for (const auto& module : modules) by_path_.emplace(module.path, &module);
  }
  [[nodiscard]] bool empty() const { return by_path_.empty(); }
  [[nodiscard]] const ModuleInfo* find(const std::string& path) const {
    const auto found = by_path_.find(path);
    return found == by_path_.end() ? nullptr : found->second;
  }
  // torch key -> MLX key: children of a Sequential live under "layers.N" in MLX.
  [[nodiscard]] std::string to_mlx(std::string_view key) const {
    std::string torch_path;
    std::string mlx_key;
    std::size_t start = 0;
    while (start <= key.size()) {
      const std::size_t end = std::min(key.find('.', start), key.size());
      const std::string_view part = key.substr(start, end - start);
      const ModuleInfo* parent = find(torch_path);
      const bool in_sequential =
          parent != nullptr && parent->type == kSequential && end < key.size();
      mlx_key = join(mlx_key, in_sequential ? fmt::format("layers.{}", part) : std::string(part));
      torch_path = join(torch_path, part);
      start = end + 1;
    }
    return mlx_key;
  }
  // MLX key -> torch key: the inverse of to_mlx.
  [[nodiscard]] std::string to_torch(std::string_view key) const {
    std::string torch_path;
    std::size_t start = 0;
    while (start <= key.size()) {
      const std::size_t end = std::min(key.find('.', start), key.size());
      const std::string_view part = key.substr(start, end - start);
      const ModuleInfo* parent = find(torch_path);
      const bool skip =
          parent != nullptr && parent->type == kSequential && part == "layers" && end < key.size();
      if (!skip) torch_path = join(torch_path, part);
      start = end + 1;
    }
    return torch_path;
  }

 private:
  std::unordered_map<std::string, const ModuleInfo*> by_path_;
};

// The inverse of Drop: torch's BatchNorm expects num_batches_tracked in a strict load.
// It only matters when training with momentum=None, so it comes back as 0.
void restore_dropped(ConversionPlan& plan) {
  std::vector<PlannedTensor> restored;
  for (const auto& planned : plan.tensors) {
    const auto entry = find_layer(planned.module_type);
    if (entry == nullptr || !planned.target.ends_with(".running_mean")) continue;
    if (find_tensor_rule(*entry, "num_batches_tracked") != Transform::Drop) continue;
    PlannedTensor counter;
    counter.target =
        planned.target.substr(0, planned.target.size() - std::string_view("running_mean").size()) +
        "num_batches_tracked";
    counter.source = "(restored)";
    counter.dtype = DType::I64;
    counter.input = make_owned_tensor(DType::I64, {}, std::vector<std::byte>(sizeof(std::int64_t)));
    counter.module_type = planned.module_type;
    restored.push_back(std::move(counter));
  }
  for (auto& counter : restored) {
    plan.notes.push_back(fmt::format("restored '{}' as 0", counter.target));
    plan.tensors.push_back(std::move(counter));
  }
}

// The layers mlx.nn.quantize quantizes: those that become mlx.nn.Linear or mlx.nn.Embedding.
bool quantizes(std::string_view module_type) {
  const LayerEntry* entry = find_layer(module_type);
  return entry != nullptr &&
         (entry->mlx_layer == "mlx.nn.Linear" || entry->mlx_layer == "mlx.nn.Embedding");
}

// The setting for the weight of torch module `module` (its entry in quantize_layers, else the
// default), or nullopt when it stays unquantized.
std::optional<QuantSpec> quant_spec_for(const std::string& module, const ConvertOptions& options) {
  if (const auto found = options.quantize_layers.find(module);
      found != options.quantize_layers.end()) {
    return found->second;
  }
  if (options.quantize_bits == 0) return std::nullopt;
  return QuantSpec{options.quantize_bits, options.group_size, options.quantize_mode};
}

// Adds the parts of a quantized weight (weights, scales, and for affine biases), or says why
// the weight stays as it is (the same test as nn.quantize: the last dim must split into
// whole groups).
std::optional<std::string> quantize_parts(const PlannedTensor& planned, const QuantSpec& spec,
                                          std::vector<PlannedTensor>& out) {
  if (!is_quantizable(spec.bits, spec.group_size, spec.mode)) {
    fail(kComponent,
         fmt::format("'{}': cannot quantize to {} bits with group size {} in mode {}: MLX's "
                     "affine mode takes bits 2, 3, 4, 5, 6, 8 and group sizes 32, 64, 128; "
                     "mxfp4 4 bits and group 32, mxfp8 8 and 32, nvfp4 4 and 16",
                     planned.target, spec.bits, spec.group_size, quant_mode_name(spec.mode)));
  }
  if (!is_float(planned.dtype) || planned.dtype == DType::F64) {
    return fmt::format("is {}, not float32/float16/bfloat16", dtype_name(planned.dtype));
  }
  if (planned.shape.size() != 2 || planned.shape[1] % spec.group_size != 0) {
    return fmt::format("has shape {} whose last dim is not a multiple of {}",
                       fmt::join(planned.shape, "x"), spec.group_size);
  }
  const std::string base =
      planned.target.substr(0, planned.target.size() - std::string_view("weight").size());
  const std::int64_t groups = planned.shape[1] / spec.group_size;
  PlannedTensor weights = planned;
  weights.float_dtype = planned.dtype;
  weights.quant = spec;
  weights.part = PlannedTensor::Part::Weights;
  weights.dtype = DType::U32;
  weights.shape = {planned.shape[0], planned.shape[1] * spec.bits / 32};
  PlannedTensor scales = weights;
  scales.part = PlannedTensor::Part::Scales;
  scales.target = base + "scales";
  scales.dtype = spec.mode == QuantMode::Affine ? planned.dtype : DType::U8;
  scales.shape = {planned.shape[0], groups};
  PlannedTensor biases = scales;
  biases.part = PlannedTensor::Part::Biases;
  biases.target = base + "biases";
  out.push_back(std::move(weights));
  out.push_back(std::move(scales));
  if (spec.mode == QuantMode::Affine) out.push_back(std::move(biases));
  return std::nullopt;
}

}  // namespace

ConversionPlan plan_conversion(const Checkpoint& checkpoint, std::span<const ModuleInfo> modules,
                               const ConvertOptions& options) {
  ConversionPlan plan;
  std::vector<NamedTensor> tensors = strip_wrapper_prefixes(checkpoint.tensors, plan.notes);
  if (!options.reverse) tensors = fold_weight_norms(std::move(tensors), plan.notes);
  const ModuleTree tree(modules);
  std::vector<std::string> unknown;

  for (auto& [name, tensor] : tensors) {
    check_expansion(tensor, fmt::format("tensor '{}'", name));
    PlannedTensor planned;
    planned.source = name;
    planned.input = tensor;
    planned.dtype = options.dtype && is_float(tensor.dtype) ? *options.dtype : tensor.dtype;
    const std::string torch_key = tree.empty() || !options.reverse ? name : tree.to_torch(name);
    const std::size_t dot = torch_key.rfind('.');
    const std::string owner = dot == std::string::npos ? "" : torch_key.substr(0, dot);
    const std::string local = dot == std::string::npos ? torch_key : torch_key.substr(dot + 1);

    if (!tree.empty()) {
      const ModuleInfo* module = tree.find(owner);
      const LayerEntry* entry = module == nullptr ? nullptr : find_layer(module->type);
      const auto rule = entry == nullptr ? std::nullopt : find_tensor_rule(*entry, local);
      if (!rule) {
        unknown.push_back(module == nullptr
                              ? fmt::format("'{}' (no module '{}' in the model)", name, owner)
                              : fmt::format("'{}' (module '{}' of type {}{})", name, owner,
                                            module->type,
                                            entry == nullptr ? ", not in the registry"
                                                             : ", tensor not in its rule"));
        if (!options.keep_unknown) continue;
      } else {
        planned.transform = *rule;
        planned.groups = module->groups;
        planned.module_type = module->type;
      }
      planned.target = options.reverse ? torch_key : tree.to_mlx(torch_key);
    } else {
      planned.target = name;
    }
    if (planned.transform == Transform::Drop) {
      plan.dropped.emplace_back(
          name, fmt::format("bookkeeping of {}, unused at inference", planned.module_type));
      continue;
    }
    try {
      planned.shape =
          transformed_shape(planned.transform, tensor.shape, planned.groups, options.reverse);
    } catch (const Error& error) {
      // The module's rule does not fit the tensor (a 2-d "conv weight"): the checkpoint
      // was saved from another model. Name the tensor and its module, not just the rule.
      std::string_view cause = error.what();
      cause.remove_prefix(std::min(cause.size(), error.component().size() + 3));
      fail(kComponent,
           fmt::format("tensor '{}' (shape {}) of module '{}' ({}) does not fit its "
                       "layer: {}; pass the model the checkpoint was saved from",
                       name, fmt::join(tensor.shape, "x"), owner, planned.module_type, cause));
    }
    if (planned.target != name) plan.renamed.emplace(name, planned.target);
    const std::optional<QuantSpec> spec = local == "weight" && quantizes(planned.module_type)
                                              ? quant_spec_for(owner, options)
                                              : std::nullopt;
    if (spec) {
      if (const auto skipped = quantize_parts(planned, *spec, plan.tensors); skipped) {
        plan.notes.push_back(fmt::format("not quantized: '{}' {}", planned.target, *skipped));
      } else {
        continue;
      }
    }
    plan.tensors.push_back(std::move(planned));
  }
  if (options.reverse) restore_dropped(plan);
  if (!unknown.empty() && !options.keep_unknown) {
    fail(kComponent,
         fmt::format("{}: {} tensors belong to modules the registry does not cover: {}. "
                     "Add the module type to cpp/src/registry.cpp, or keep them "
                     "unchanged with keep_unknown (--keep-unknown)",
                     checkpoint.files.empty() ? "checkpoint" : checkpoint.files.front(),
                     unknown.size(), fmt::join(unknown, "; ")));
  }
  plan.unknown = std::move(unknown);
  std::sort(plan.tensors.begin(), plan.tensors.end(),
            [](const PlannedTensor& a, const PlannedTensor& b) { return a.target < b.target; });
  for (std::size_t i = 1; i < plan.tensors.size(); ++i) {
    if (plan.tensors[i].target == plan.tensors[i - 1].target) {
      fail(kComponent,
           fmt::format("two tensors would both be written as '{}' ('{}' and '{}')",
                       plan.tensors[i].target, plan.tensors[i - 1].source, plan.tensors[i].source));
    }
  }
  return plan;
}

namespace {

// Produces one output tensor into `out`: transform, then cast.
void produce(const PlannedTensor& planned, std::byte* out, bool reverse,
             std::vector<std::byte>& scratch) {
  if (planned.dtype == planned.input.dtype && planned.shape.size() == planned.input.shape.size()) {
    apply_transform(planned.transform, planned.input, out, planned.groups, reverse);
    return;
  }
  scratch.resize(planned.input.nbytes());
  apply_transform(planned.transform, planned.input, scratch.data(), planned.groups, reverse);
  Tensor contiguous = planned.input;
  contiguous.shape = planned.shape;
  contiguous.strides = contiguous_strides(planned.shape);
  contiguous.offset = 0;
  contiguous.storage = std::make_shared<Storage>(Storage{scratch.data(), scratch.size(), nullptr});
  cast_into(contiguous, planned.dtype, out);
}

// The bytes of an output that is its input unchanged (same dtype, and a transform that leaves
// the elements in order, as Keep always does), to be written straight from the source mapping:
// no copy through a buffer, which is most of a conversion's tensors and bytes.
std::optional<std::span<const std::byte>> unchanged_bytes(const PlannedTensor& planned,
                                                          bool reverse) {
  if (planned.part != PlannedTensor::Part::Whole || planned.dtype != planned.input.dtype ||
      !planned.input.storage) {
    return std::nullopt;
  }
  const Tensor view = transform_view(planned.transform, planned.input, planned.groups, reverse);
  if (!view.is_contiguous()) return std::nullopt;
  return std::span<const std::byte>(view.data(), view.nbytes());
}

// The three outputs of a quantized weight come from one quantization, computed by whichever
// worker asks first and handed to the other two parts.
class QuantizedCache {
 public:
  void produce_part(const PlannedTensor& planned, std::byte* out, bool reverse) {
    std::shared_ptr<Entry> entry;
    {
      const std::lock_guard lock(mutex_);
      auto& slot = entries_[planned.source];
      if (!slot) slot = std::make_shared<Entry>();
      entry = slot;
    }
    std::call_once(entry->once, [&] {
      PlannedTensor whole = planned;
      whole.part = PlannedTensor::Part::Whole;
      whole.dtype = planned.float_dtype;
      whole.shape =
          transformed_shape(planned.transform, planned.input.shape, planned.groups, reverse);
      std::vector<std::byte> bytes(
          static_cast<std::size_t>(checked_numel(whole.shape).value_or(0)) * itemsize(whole.dtype));
      std::vector<std::byte> scratch;
      produce(whole, bytes.data(), reverse, scratch);
      const Tensor tensor = make_owned_tensor(whole.dtype, whole.shape, std::move(bytes));
      entry->result = quantize(tensor, planned.quant.bits, planned.quant.group_size, planned.target,
                               planned.quant.mode);
    });
    const Tensor& part = planned.part == PlannedTensor::Part::Weights  ? entry->result.weights
                         : planned.part == PlannedTensor::Part::Scales ? entry->result.scales
                                                                       : entry->result.biases;
    std::memcpy(out, part.data(), part.nbytes());
    const std::lock_guard lock(mutex_);
    const int parts = planned.quant.mode == QuantMode::Affine ? 3 : 2;
    if (++entry->used == parts) entries_.erase(planned.source);
  }

 private:
  struct Entry {
    std::once_flag once;
    QuantizedTensor result;
    int used = 0;
  };
  std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<Entry>> entries_;
};

struct Shard {
  std::vector<const PlannedTensor*> tensors;
  std::uint64_t bytes = 0;
};

// Where a metadata value stands in a header, so that it can be written once known: the
// header is laid out with a placeholder of the same length.
std::uint64_t value_offset(const SafetensorsLayout& layout, const std::string& key,
                           const std::string& placeholder) {
  const std::string needle = fmt::format(R"("{}":"{}")", key, placeholder);
  const std::string_view header(reinterpret_cast<const char*>(layout.header.data()),
                                layout.header.size());
  const std::size_t at = header.find(needle);
  if (at == std::string_view::npos) {
    fail(kComponent, fmt::format("metadata key '{}' is not in the header", key));
  }
  return at + key.size() + 4;  // past "key":"
}

std::string shard_name(const fs::path& destination, std::size_t index, std::size_t count) {
  const std::string stem = destination.stem().string();
  return fmt::format("{}-{:05d}-of-{:05d}.safetensors", stem, index + 1, count);
}

// The index of a sharded output, as Hugging Face writes it: the total size, and the shard
// of every tensor in name order (the plan's order). The map is built in one pass; adding
// keys one by one to an ordered_json would scan it each time, quadratic in the tensors.
std::string index_text(const std::vector<Shard>& shards, const std::vector<std::string>& files,
                       std::uint64_t total) {
  std::map<std::string, std::string> weight_map;
  for (std::size_t index = 0; index < shards.size(); ++index) {
    const std::string file = fs::path(files[index]).filename().string();
    for (const PlannedTensor* planned : shards[index].tensors) {
      weight_map.emplace_hint(weight_map.end(), planned->target, file);
    }
  }
  nlohmann::ordered_json index;
  index["metadata"] = {{"total_size", total}};
  index["weight_map"] = weight_map;  // constructed from the map's range, no lookups
  return index.dump(2) + "\n";
}

}  // namespace

std::vector<std::string> write_plan(const ConversionPlan& plan, const fs::path& destination,
                                    const ConvertOptions& options) {
  // Split into shards, in name order, each at most shard_bytes (a bigger tensor gets its own).
  std::vector<Shard> shards(1);
  std::uint64_t total = 0;
  for (const auto& planned : plan.tensors) {
    const std::uint64_t bytes =
        static_cast<std::uint64_t>(checked_numel(planned.shape).value_or(0)) *
        itemsize(planned.dtype);
    // A new shard starts only between sources, so the parts of a quantized weight stay together.
    const bool same_source =
        !shards.back().tensors.empty() && shards.back().tensors.back()->source == planned.source;
    if (!shards.back().tensors.empty() && !same_source &&
        shards.back().bytes + bytes > options.shard_bytes) {
      shards.emplace_back();
    }
    shards.back().tensors.push_back(&planned);
    shards.back().bytes += bytes;
    total += bytes;
  }

  const auto directory = destination.has_parent_path() ? destination.parent_path() : fs::path(".");
  std::vector<std::string> written;
  std::vector<std::unique_ptr<AtomicFile>> files;
  std::atomic<std::uint64_t> done{0};
  QuantizedCache quantized;

  // The source's digest is only known at the end: headers get a placeholder of its length.
  std::map<std::string, std::string> metadata = options.metadata;
  const bool digesting = !options.digest_key.empty() && options.digest;
  const std::string placeholder = digesting ? options.digest->placeholder() : "";
  if (digesting) metadata[options.digest_key] = placeholder;
  std::vector<std::uint64_t> digest_offsets;

  for (std::size_t index = 0; index < shards.size(); ++index) {
    const Shard& shard = shards[index];
    const fs::path path = shards.size() == 1
                              ? destination
                              : directory / shard_name(destination, index, shards.size());
    // The header: the same writer as write_safetensors, laid out in plan order.
    std::vector<NamedTensor> headers;
    headers.reserve(shard.tensors.size());
    for (const PlannedTensor* planned : shard.tensors) {
      Tensor header;
      header.dtype = planned->dtype;
      header.shape = planned->shape;
      header.strides = contiguous_strides(planned->shape);
      headers.push_back({planned->target, std::move(header)});
    }
    const SafetensorsLayout layout = safetensors_layout(headers, metadata);
    if (digesting) digest_offsets.push_back(value_offset(layout, options.digest_key, placeholder));
    auto file = std::make_unique<AtomicFile>(path);
    file->write(layout.header);

    // Workers take tensors in turn and write each at its offset; the calling thread reports
    // progress meanwhile. Writes into one file take turns: the kernel serialises them on
    // the file anyway, and waiting on a mutex sleeps where the kernel's lock would spin.
    std::atomic<std::size_t> next{0};
    std::mutex write_mutex;
    std::mutex failure_mutex;
    std::exception_ptr failure;
    const unsigned thread_count =
        std::max(1U, options.threads != 0 ? options.threads : std::thread::hardware_concurrency());
    const std::size_t worker_count = std::min<std::size_t>(thread_count, layout.order.size());
    std::vector<std::thread> workers;
    for (std::size_t t = 0; t < worker_count; ++t) {
      workers.emplace_back([&] {
        std::vector<std::byte> buffer;
        std::vector<std::byte> scratch;
        for (std::size_t i = next++; i < layout.order.size(); i = next++) {
          const std::size_t slot = layout.order[i];
          const PlannedTensor& planned = *shard.tensors[slot];
          // The tensor the next free worker will take: its pages are asked for now, so the
          // disk reads ahead of the copies (a sequential digest may already hold them).
          if (i + worker_count < layout.order.size()) {
            const PlannedTensor& ahead = *shard.tensors[layout.order[i + worker_count]];
            if (ahead.input.storage && ahead.input.storage->file != nullptr) {
              ahead.input.storage->file->prefetch(
                  {ahead.input.storage->data, ahead.input.storage->nbytes});
            }
          }
          try {
            const std::uint64_t offset = layout.header.size() + layout.offsets[i];
            if (const auto bytes = unchanged_bytes(planned, options.reverse)) {
              // Straight from the source: file to file in the kernel when it can, as cp
              // does, else from the mapping, never through a buffer of ours.
              const MappedFile* source = planned.input.storage->file;
              const std::lock_guard lock(write_mutex);
              if (source == nullptr ||
                  !file->copy_from(source->descriptor(), source->offset_of(bytes->data()), offset,
                                   bytes->size())) {
                file->write_at(offset, *bytes);
              }
            } else {
              buffer.resize(layout.sizes[i]);
              if (planned.part == PlannedTensor::Part::Whole) {
                produce(planned, buffer.data(), options.reverse, scratch);
              } else {
                quantized.produce_part(planned, buffer.data(), options.reverse);
              }
              const std::lock_guard lock(write_mutex);
              file->write_at(offset, buffer);
            }
            // The disk starts on these bytes now rather than when dirty pages pile up, so
            // writing overlaps converting and the fsync before the rename has little left.
            file->start_writeback(offset, layout.sizes[i]);
            if (planned.input.storage) release_pages(*planned.input.storage);
          } catch (const std::bad_alloc&) {
            const std::lock_guard lock(failure_mutex);
            if (!failure) {
              failure = std::make_exception_ptr(
                  Error(kComponent, fmt::format("out of memory converting tensor '{}' ({} bytes); "
                                                "free memory, or convert with fewer threads",
                                                planned.source, layout.sizes[i])));
            }
            next = layout.order.size();
          } catch (...) {
            const std::lock_guard lock(failure_mutex);
            if (!failure) failure = std::current_exception();
            next = layout.order.size();
          }
          done += layout.sizes[i];
        }
      });
    }
    if (options.progress) {
      try {
        while (next < layout.order.size()) {
          options.progress(done.load(), total);
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
      } catch (...) {  // e.g. Ctrl-C in the Python callback: stop the workers, then rethrow
        const std::lock_guard lock(failure_mutex);
        if (!failure) failure = std::current_exception();
        next = layout.order.size();
      }
    }
    for (auto& worker : workers) worker.join();
    if (failure) std::rethrow_exception(failure);
    files.push_back(std::move(file));
    written.push_back(path.string());
  }
  if (options.progress) options.progress(done.load(), total);

  std::unique_ptr<AtomicFile> index_file;
  if (shards.size() > 1) {
    const fs::path index_path = destination.string() + ".index.json";
    const std::string text = index_text(shards, written, total);
    index_file = std::make_unique<AtomicFile>(index_path);
    index_file->write(std::as_bytes(std::span(text)));
    written.push_back(index_path.string());
  }
  if (digesting) {
    const std::string digest = options.digest->wait();
    if (digest.size() != placeholder.size()) {
      fail(kComponent, fmt::format("the digest '{}' does not fit its placeholder", digest));
    }
    for (std::size_t i = 0; i < files.size(); ++i) {
      files[i]->write_at(digest_offsets[i], std::as_bytes(std::span(digest)));
    }
  }
  // Only now, with every byte on disk, do the files take their names.
  for (auto& file : files) file->commit();
  if (index_file) index_file->commit();
  return written;
}

}  // namespace torch2mlx
