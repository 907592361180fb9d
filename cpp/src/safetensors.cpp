#include "torch2mlx/safetensors.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>

#include "atomic_file.h"
#include "torch2mlx/error.h"

namespace torch2mlx {
namespace {

constexpr std::string_view kComponent = "safetensors";
constexpr std::size_t kLengthPrefix = 8;

[[noreturn]] void reject(std::string_view file, std::string_view message) {
  fail(kComponent, fmt::format("{}: {}", file, message));
}

// What to do about a file whose header or layout is damaged.
constexpr std::string_view kDamaged =
    "the file is truncated, damaged or not a safetensors file; download or save it again";

std::uint64_t read_u64_le(const std::byte* bytes) {
  std::uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | std::to_integer<std::uint64_t>(bytes[i]);
  return value;
}

std::string supported_dtypes() {
  std::vector<std::string_view> names;
  for (int i = 0; i <= static_cast<int>(DType::F64); ++i) {
    names.push_back(safetensors_dtype_name(static_cast<DType>(i)));
  }
  return fmt::format("{}", fmt::join(names, ", "));
}

SafetensorsEntry parse_entry(const std::string& name, const nlohmann::json& spec,
                             std::string_view file) {
  auto bad = [&](std::string_view what) {
    reject(file,
           fmt::format("tensor '{}': {}; the header is malformed, re-export the file", name, what));
  };
  if (!spec.is_object()) bad("entry is not an object");
  SafetensorsEntry entry;
  entry.name = name;
  const auto dtype = spec.find("dtype");
  if (dtype == spec.end() || !dtype->is_string()) bad("missing string 'dtype'");
  const auto parsed = dtype_from_safetensors(dtype->get_ref<const std::string&>());
  if (!parsed) {
    reject(file, fmt::format("tensor '{}' has dtype '{}', which torch2mlx does not read "
                             "(supported: {}); cast it in torch before saving",
                             name, dtype->get_ref<const std::string&>(), supported_dtypes()));
  }
  entry.dtype = *parsed;
  const auto shape = spec.find("shape");
  if (shape == spec.end() || !shape->is_array()) bad("missing array 'shape'");
  if (shape->size() > kMaxDims) {
    reject(file, fmt::format("tensor '{}' has {} dims, more than the {} numpy and MLX support; "
                             "reshape it to at most {} dims in torch before saving",
                             name, shape->size(), kMaxDims, kMaxDims));
  }
  for (const auto& dim : *shape) {
    if (!dim.is_number_unsigned()) bad("shape holds a value that is not a non-negative integer");
    const auto value = dim.get<std::uint64_t>();
    if (value > static_cast<std::uint64_t>(INT64_MAX)) bad("shape dim is too large");
    entry.shape.push_back(static_cast<std::int64_t>(value));
  }
  const auto offsets = spec.find("data_offsets");
  if (offsets == spec.end() || !offsets->is_array() || offsets->size() != 2 ||
      !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
    bad("'data_offsets' must be two non-negative integers");
  }
  entry.begin = (*offsets)[0].get<std::uint64_t>();
  entry.end = (*offsets)[1].get<std::uint64_t>();
  if (entry.end < entry.begin) bad("data_offsets end before they begin");
  const auto numel = checked_numel(entry.shape, itemsize(entry.dtype));
  if (!numel) bad("shape overflows");
  const std::uint64_t expected = static_cast<std::uint64_t>(*numel) * itemsize(entry.dtype);
  if (entry.end - entry.begin != expected) {
    reject(file,
           fmt::format("tensor '{}': shape {} of {} needs {} bytes but data_offsets span {}; {}",
                       name, entry.shape, safetensors_dtype_name(entry.dtype), expected,
                       entry.end - entry.begin, kDamaged));
  }
  return entry;
}

}  // namespace

SafetensorsHeader parse_safetensors_header(std::span<const std::byte> file, std::string_view name,
                                           const ReadLimits& limits) {
  if (file.size() < kLengthPrefix) {
    reject(name, fmt::format("file is {} bytes, shorter than the 8-byte header length; {}",
                             file.size(), kDamaged));
  }
  const std::uint64_t header_length = read_u64_le(file.data());
  if (header_length > file.size() - kLengthPrefix) {
    reject(name, fmt::format("header length {} exceeds file size {}; {}", header_length,
                             file.size(), kDamaged));
  }
  if (header_length > limits.max_header_bytes) {
    reject(name, fmt::format("header length {} exceeds the limit of {} bytes (a header bomb?); "
                             "a genuine checkpoint this large can be saved in shards",
                             header_length, limits.max_header_bytes));
  }
  const auto* text = reinterpret_cast<const char*>(file.data() + kLengthPrefix);
  if (header_length == 0 || text[0] != '{')
    reject(name, fmt::format("header does not start with '{{'; {}", kDamaged));

  // Reject duplicate tensor names (JSON allows them; the format does not).
  std::set<std::string> seen_keys;
  bool duplicate = false;
  std::string duplicate_name;
  const nlohmann::json::parser_callback_t on_event =
      [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
        if (depth == 1 && event == nlohmann::json::parse_event_t::key) {
          const auto& key = parsed.get_ref<const std::string&>();
          if (!seen_keys.insert(key).second && !duplicate) {
            duplicate = true;
            duplicate_name = key;
          }
        }
        return true;
      };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, text + header_length, on_event);
  } catch (const nlohmann::json::exception& error) {
    reject(name, fmt::format("header is not valid JSON ({}); {}", error.what(), kDamaged));
  }
  if (!header.is_object()) reject(name, fmt::format("header is not a JSON object; {}", kDamaged));
  if (duplicate)
    reject(name,
           fmt::format("tensor '{}' appears twice in the header; {}", duplicate_name, kDamaged));
  if (header.size() > limits.max_tensors) {
    reject(name, fmt::format("header lists {} tensors, over the limit of {} (a header bomb?); "
                             "a genuine checkpoint this large can be saved in shards",
                             header.size(), limits.max_tensors));
  }

  SafetensorsHeader result;
  result.data_start = kLengthPrefix + header_length;
  for (const auto& [key, value] : header.items()) {
    if (key == "__metadata__") {
      if (!value.is_object())
        reject(name, fmt::format("__metadata__ is not an object; {}", kDamaged));
      for (const auto& [meta_key, meta_value] : value.items()) {
        if (!meta_value.is_string()) {
          reject(name, fmt::format("__metadata__ value for '{}' is not a string; {}", meta_key,
                                   kDamaged));
        }
        result.metadata[meta_key] = meta_value.get<std::string>();
      }
      continue;
    }
    result.entries.push_back(parse_entry(key, value, name));
  }

  // The data buffer must be tiled exactly: no holes, no overlaps, nothing past its end.
  std::sort(result.entries.begin(), result.entries.end(), [](const auto& a, const auto& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  const std::uint64_t buffer_size = file.size() - result.data_start;
  std::uint64_t cursor = 0;
  for (const auto& entry : result.entries) {
    if (entry.begin != cursor) {
      reject(name, fmt::format("tensor '{}' starts at byte {} of the data buffer, expected {} "
                               "(offsets overlap or leave a hole); {}",
                               entry.name, entry.begin, cursor, kDamaged));
    }
    cursor = entry.end;
  }
  if (cursor != buffer_size) {
    reject(name, fmt::format("tensors cover {} bytes but the data buffer holds {}; {}", cursor,
                             buffer_size, kDamaged));
  }
  return result;
}

Checkpoint read_safetensors(const std::shared_ptr<MappedFile>& file, const ReadOptions& options) {
  const SafetensorsHeader header =
      parse_safetensors_header(file->bytes(), file->name(), options.limits);
  Checkpoint checkpoint;
  checkpoint.format = "safetensors";
  checkpoint.files.push_back(file->name());
  checkpoint.metadata = header.metadata;
  checkpoint.tensors.reserve(header.entries.size());
  for (const auto& entry : header.entries) {
    auto storage = std::make_shared<Storage>();
    storage->nbytes = entry.end - entry.begin;
    if (!options.headers_only) {
      storage->data = file->bytes().data() + header.data_start + entry.begin;
      storage->owner = file;
      storage->file = file->is_mapped() ? file.get() : nullptr;
    }
    Tensor tensor;
    tensor.dtype = entry.dtype;
    tensor.shape = entry.shape;
    tensor.strides = contiguous_strides(entry.shape);
    tensor.storage = std::move(storage);
    checkpoint.tensors.push_back({entry.name, std::move(tensor)});
  }
  return checkpoint;
}

SafetensorsLayout safetensors_layout(std::span<const NamedTensor> tensors,
                                     const std::map<std::string, std::string>& metadata,
                                     std::string_view file) {
  SafetensorsLayout layout;
  layout.order.resize(tensors.size());
  std::iota(layout.order.begin(), layout.order.end(), 0);
  // Largest items first keeps every tensor aligned to its itemsize with no padding between.
  std::sort(layout.order.begin(), layout.order.end(), [&](std::size_t a, std::size_t b) {
    const auto size_a = itemsize(tensors[a].tensor.dtype);
    const auto size_b = itemsize(tensors[b].tensor.dtype);
    return size_a != size_b ? size_a > size_b : tensors[a].name < tensors[b].name;
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const std::size_t index : layout.order) {
    const auto& [name, tensor] = tensors[index];
    if (name == "__metadata__") reject(file, "a tensor cannot be named '__metadata__'");
    if (header.contains(name)) reject(file, fmt::format("tensor name '{}' is used twice", name));
    if (!checked_numel(tensor.shape))
      reject(file, fmt::format("tensor '{}' has a bad shape", name));
    const std::uint64_t size = tensor.nbytes();
    header[name] = {{"dtype", safetensors_dtype_name(tensor.dtype)},
                    {"shape", tensor.shape},
                    {"data_offsets", {offset, offset + size}}};
    layout.offsets.push_back(offset);
    layout.sizes.push_back(size);
    offset += size;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  layout.header.resize(kLengthPrefix + text.size());
  for (std::size_t i = 0; i < kLengthPrefix; ++i) {
    layout.header[i] = static_cast<std::byte>((text.size() >> (8 * i)) & 0xFFU);
  }
  std::memcpy(layout.header.data() + kLengthPrefix, text.data(), text.size());
  return layout;
}

void write_safetensors(const std::filesystem::path& path, std::span<const NamedTensor> tensors,
                       const std::map<std::string, std::string>& metadata) {
  const SafetensorsLayout layout = safetensors_layout(tensors, metadata, path.string());
  AtomicFile out(path);
  out.write(layout.header);
  std::vector<std::byte> scratch;
  for (const std::size_t index : layout.order) {
    const Tensor& tensor = tensors[index].tensor;
    if (tensor.numel() == 0) continue;
    if (tensor.is_contiguous()) {
      out.write({tensor.data(), tensor.nbytes()});
    } else {
      check_expansion(tensor, fmt::format("{}: tensor '{}'", path.string(), tensors[index].name));
      scratch.resize(tensor.nbytes());
      copy_contiguous(tensor, scratch.data());
      out.write(scratch);
    }
  }
  out.commit();
}

}  // namespace torch2mlx
