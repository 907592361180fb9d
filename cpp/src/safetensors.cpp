#include "torch2mlx/safetensors.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <string_view>
#include <unordered_set>
#include <utility>

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

// torch's names for the safetensors float8 dtypes, which MLX has no array dtype for: the
// message names both, so that the user knows what to cast in torch.
constexpr std::array<std::pair<std::string_view, std::string_view>, 5> kFloat8Names{{
    {"F8_E4M3", "float8_e4m3fn"},
    {"F8_E5M2", "float8_e5m2"},
    {"F8_E8M0", "float8_e8m0fnu"},
    {"F8_E4M3FNUZ", "float8_e4m3fnuz"},
    {"F8_E5M2FNUZ", "float8_e5m2fnuz"},
}};

// One top-level member of the header as the parser saw it. It is checked once the whole
// JSON is known to be valid, so that a syntax error anywhere is reported as such.
struct RawEntry {
  SafetensorsEntry entry;  // name and the dims read so far (at most kMaxDims are kept)
  bool is_object = false;
  enum class DTypeState : std::uint8_t { Missing, Known, Unknown } dtype = DTypeState::Missing;
  std::string unknown_dtype;
  bool shape_is_array = false;
  std::size_t rank = 0;
  // The first dim that is not a non-negative integer, or that is too large, decides.
  enum class DimProblem : std::uint8_t {
    None,
    NotUnsigned,
    TooLarge
  } dim_problem = DimProblem::None;
  bool offsets_is_array = false;
  bool offsets_bad = false;  // an element that is not a non-negative integer
  std::size_t offsets_count = 0;
};

// A SAX handler that reads the header straight into RawEntry values, in one pass and
// without a DOM: {name: {"dtype": str, "shape": [uint...], "data_offsets": [uint, uint]}, ...,
// "__metadata__": {str: str}}. Members it does not know are skipped.
class HeaderParser {
 public:
  HeaderParser(std::string_view file, const ReadLimits& limits) : file_(file), limits_(limits) {}

  // What the containers open around the current value are.
  enum class Role : std::uint8_t { Root, Entry, Metadata, Shape, Offsets, Skipped };
  enum class Field : std::uint8_t { Other, DType, Shape, Offsets };

  bool null() { return scalar(Scalar::Other); }
  bool boolean(bool /*value*/) { return scalar(Scalar::Other); }
  bool number_integer(nlohmann::json::number_integer_t /*value*/) { return scalar(Scalar::Other); }
  bool number_unsigned(nlohmann::json::number_unsigned_t value) {
    unsigned_ = value;
    return scalar(Scalar::Unsigned);
  }
  bool number_float(nlohmann::json::number_float_t /*value*/,
                    const nlohmann::json::string_t& /*text*/) {
    return scalar(Scalar::Other);
  }
  bool string(nlohmann::json::string_t& value) {
    string_ = &value;
    return scalar(Scalar::String);
  }
  bool binary(nlohmann::json::binary_t& /*value*/) { return scalar(Scalar::Other); }
  bool start_object(std::size_t /*size*/) { return open(true); }
  bool start_array(std::size_t /*size*/) { return open(false); }
  bool end_object() { return close(); }
  bool end_array() { return close(); }
  bool key(nlohmann::json::string_t& name) {
    switch (roles_.back()) {
      case Role::Root:
        if (entries_.size() + (has_metadata_ ? 1 : 0) >= limits_.max_tensors) {
          reject(file_, fmt::format("header lists more tensors than the limit of {} (a header "
                                    "bomb?); a genuine checkpoint this large can be saved in "
                                    "shards",
                                    limits_.max_tensors));
        }
        if (name == "__metadata__") {
          if (has_metadata_) note_duplicate(name);
          has_metadata_ = true;
          member_is_metadata_ = true;
        } else {
          member_is_metadata_ = false;
          entries_.emplace_back();
          entries_.back().entry.name = std::move(name);
        }
        break;
      case Role::Entry:
        field_ = field_of(name);
        break;
      case Role::Metadata:
        // A repeated metadata key replaces the earlier value, as a JSON object would.
        metadata_key_ = &metadata_[std::move(name)];
        break;
      default:
        break;
    }
    return true;
  }
  template <class Exception>
  bool parse_error(std::size_t /*position*/, const std::string& /*token*/, const Exception& error) {
    throw error;
  }

  std::vector<RawEntry>& entries() { return entries_; }
  [[nodiscard]] bool has_metadata() const { return has_metadata_; }
  [[nodiscard]] bool metadata_is_object() const { return metadata_is_object_; }
  // Metadata values, nullopt where the value was not a string.
  [[nodiscard]] const std::map<std::string, std::optional<std::string>>& metadata() const {
    return metadata_;
  }
  // The first name given twice at the top level, if any ("__metadata__" included).
  [[nodiscard]] std::optional<std::string> duplicate() const {
    if (duplicate_) return duplicate_;
    // Sorting views of the names finds repeats without a hash node per name.
    std::vector<std::string_view> names;
    names.reserve(entries_.size());
    for (const RawEntry& raw : entries_) names.emplace_back(raw.entry.name);
    std::sort(names.begin(), names.end());
    const auto repeat = std::adjacent_find(names.begin(), names.end());
    if (repeat == names.end()) return std::nullopt;
    return std::string(*repeat);
  }

 private:
  enum class Scalar : std::uint8_t { Unsigned, String, Other };

  static Field field_of(std::string_view name) {
    if (name == "dtype") return Field::DType;
    if (name == "shape") return Field::Shape;
    if (name == "data_offsets") return Field::Offsets;
    return Field::Other;
  }

  void note_duplicate(const std::string& name) {
    if (!duplicate_) duplicate_ = name;
  }

  // A value (scalar or container) starts in the innermost container; `object` tells which
  // kind it is when it is a container. Returns the role a container would get.
  Role place(std::optional<bool> object) {
    switch (roles_.back()) {
      case Role::Root:
        if (member_is_metadata_) {
          metadata_is_object_ = object == true;
          return object == true ? Role::Metadata : Role::Skipped;
        }
        entries_.back().is_object = object == true;
        if (object == true) field_ = Field::Other;
        return object == true ? Role::Entry : Role::Skipped;
      case Role::Entry: {
        RawEntry& raw = entries_.back();
        // A repeated field replaces the earlier value, as a JSON object would.
        if (field_ == Field::DType) {
          raw.dtype = RawEntry::DTypeState::Missing;
          if (!object.has_value() && scalar_ == Scalar::String) {
            if (const auto dtype = dtype_from_safetensors(*string_)) {
              raw.dtype = RawEntry::DTypeState::Known;
              raw.entry.dtype = *dtype;
            } else {
              raw.dtype = RawEntry::DTypeState::Unknown;
              raw.unknown_dtype = std::move(*string_);
            }
          }
        } else if (field_ == Field::Shape) {
          raw.shape_is_array = object == false;
          raw.rank = 0;
          raw.entry.shape.clear();
          raw.dim_problem = RawEntry::DimProblem::None;
          if (object == false) return Role::Shape;
        } else if (field_ == Field::Offsets) {
          raw.offsets_is_array = object == false;
          raw.offsets_count = 0;
          raw.offsets_bad = false;
          if (object == false) return Role::Offsets;
        }
        return Role::Skipped;
      }
      case Role::Shape: {
        RawEntry& raw = entries_.back();
        if (raw.dim_problem == RawEntry::DimProblem::None) {
          if (object.has_value() || scalar_ != Scalar::Unsigned) {
            raw.dim_problem = RawEntry::DimProblem::NotUnsigned;
          } else if (unsigned_ > static_cast<std::uint64_t>(INT64_MAX)) {
            raw.dim_problem = RawEntry::DimProblem::TooLarge;
          } else if (raw.rank < kMaxDims) {
            raw.entry.shape.push_back(static_cast<std::int64_t>(unsigned_));
          }
        }
        ++raw.rank;
        return Role::Skipped;
      }
      case Role::Offsets: {
        RawEntry& raw = entries_.back();
        if (object.has_value() || scalar_ != Scalar::Unsigned) {
          raw.offsets_bad = true;
        } else if (raw.offsets_count == 0) {
          raw.entry.begin = unsigned_;
        } else if (raw.offsets_count == 1) {
          raw.entry.end = unsigned_;
        }
        ++raw.offsets_count;
        return Role::Skipped;
      }
      case Role::Metadata:
        if (!object.has_value() && scalar_ == Scalar::String) {
          *metadata_key_ = std::move(*string_);
        } else {
          *metadata_key_ = std::nullopt;
        }
        return Role::Skipped;
      case Role::Skipped:
        return Role::Skipped;
    }
    return Role::Skipped;
  }

  bool scalar(Scalar kind) {
    scalar_ = kind;
    if (!roles_.empty()) (void)place(std::nullopt);
    return true;
  }
  bool open(bool object) {
    if (roles_.size() >= limits_.max_depth) {
      reject(file_, fmt::format("header nests deeper than the limit of {}; {}", limits_.max_depth,
                                kDamaged));
    }
    roles_.push_back(roles_.empty() ? Role::Root : place(object));
    return true;
  }
  bool close() {
    roles_.pop_back();
    return true;
  }

  std::string_view file_;
  const ReadLimits& limits_;
  std::vector<Role> roles_;
  Field field_ = Field::Other;
  Scalar scalar_ = Scalar::Other;
  std::uint64_t unsigned_ = 0;
  nlohmann::json::string_t* string_ = nullptr;
  std::vector<RawEntry> entries_;
  std::optional<std::string> duplicate_;
  bool member_is_metadata_ = false;
  bool has_metadata_ = false;
  bool metadata_is_object_ = false;
  std::map<std::string, std::optional<std::string>> metadata_;
  std::optional<std::string>* metadata_key_ = nullptr;
};

// Checks one tensor's description, as the format requires it.
SafetensorsEntry check_entry(RawEntry& raw, std::string_view file) {
  const std::string& name = raw.entry.name;
  auto bad = [&](std::string_view what) {
    reject(file,
           fmt::format("tensor '{}': {}; the header is malformed, re-export the file", name, what));
  };
  if (!raw.is_object) bad("entry is not an object");
  if (raw.dtype == RawEntry::DTypeState::Missing) bad("missing string 'dtype'");
  if (raw.dtype == RawEntry::DTypeState::Unknown) {
    const auto* float8 =
        std::find_if(kFloat8Names.begin(), kFloat8Names.end(),
                     [&](const auto& row) { return row.first == raw.unknown_dtype; });
    if (float8 != kFloat8Names.end()) {
      reject(file, fmt::format("tensor '{}' has dtype '{}' ({}), which MLX has no dtype for; "
                               "cast it to bfloat16 in torch before saving",
                               name, raw.unknown_dtype, float8->second));
    }
    reject(file, fmt::format("tensor '{}' has dtype '{}', which torch2mlx does not read "
                             "(supported: {}); cast it in torch before saving",
                             name, raw.unknown_dtype, supported_dtypes()));
  }
  if (!raw.shape_is_array) bad("missing array 'shape'");
  if (raw.rank > kMaxDims) {
    reject(file, fmt::format("tensor '{}' has {} dims, more than the {} numpy and MLX support; "
                             "reshape it to at most {} dims in torch before saving",
                             name, raw.rank, kMaxDims, kMaxDims));
  }
  if (raw.dim_problem == RawEntry::DimProblem::NotUnsigned)
    bad("shape holds a value that is not a non-negative integer");
  if (raw.dim_problem == RawEntry::DimProblem::TooLarge) bad("shape dim is too large");
  if (!raw.offsets_is_array || raw.offsets_count != 2 || raw.offsets_bad)
    bad("'data_offsets' must be two non-negative integers");
  SafetensorsEntry& entry = raw.entry;
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
  return std::move(entry);
}

// Appends `"name":{"dtype":..,"shape":[..],"data_offsets":[begin,end]}` to a header, after
// a comma unless it is the first member: the bytes nlohmann's dump gives for that member
// (the name escaped by nlohmann itself, which also refuses a name that is not UTF-8).
void append_header_member(std::string& text, const std::string& name, const Tensor& tensor,
                          std::uint64_t begin, std::uint64_t end) {
  if (text.size() > 1) text += ',';
  text += nlohmann::json(name).dump();
  fmt::format_to(std::back_inserter(text),
                 R"(:{{"dtype":"{}","shape":[{}],"data_offsets":[{},{}]}})",
                 safetensors_dtype_name(tensor.dtype), fmt::join(tensor.shape, ","), begin, end);
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

  // One pass, no DOM (nlohmann's callback parser would be quadratic in the tensor count).
  HeaderParser parser(name, limits);
  try {
    nlohmann::json::sax_parse(text, text + header_length, &parser);
  } catch (const nlohmann::json::exception& error) {
    reject(name, fmt::format("header is not valid JSON ({}); {}", error.what(), kDamaged));
  }
  // Duplicate tensor names: JSON allows them; the format does not.
  if (const auto duplicate = parser.duplicate()) {
    reject(name, fmt::format("tensor '{}' appears twice in the header; {}", *duplicate, kDamaged));
  }

  SafetensorsHeader result;
  result.data_start = kLengthPrefix + header_length;
  if (parser.has_metadata()) {
    if (!parser.metadata_is_object())
      reject(name, fmt::format("__metadata__ is not an object; {}", kDamaged));
    for (const auto& [meta_key, meta_value] : parser.metadata()) {
      if (!meta_value) {
        reject(name,
               fmt::format("__metadata__ value for '{}' is not a string; {}", meta_key, kDamaged));
      }
      result.metadata.emplace(meta_key, *meta_value);
    }
  }
  result.entries.reserve(parser.entries().size());
  for (RawEntry& raw : parser.entries()) result.entries.push_back(check_entry(raw, name));

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
  SafetensorsHeader header = parse_safetensors_header(file->bytes(), file->name(), options.limits);
  Checkpoint checkpoint;
  checkpoint.format = "safetensors";
  checkpoint.files.push_back(file->name());
  checkpoint.metadata = header.metadata;
  checkpoint.tensors.reserve(header.entries.size());
  for (auto& entry : header.entries) {
    auto storage = std::make_shared<Storage>();
    storage->nbytes = entry.end - entry.begin;
    if (!options.headers_only) {
      storage->data = file->bytes().data() + header.data_start + entry.begin;
      storage->owner = file;
      storage->file = file->is_mapped() ? file.get() : nullptr;
    }
    Tensor tensor;
    tensor.dtype = entry.dtype;
    tensor.strides = contiguous_strides(entry.shape);
    tensor.shape = std::move(entry.shape);
    tensor.storage = std::move(storage);
    checkpoint.tensors.push_back({std::move(entry.name), std::move(tensor)});
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

  // The header is written member by member, in data order. (An ordered_json object would
  // look up every new key by a linear scan: quadratic in the number of tensors.)
  std::string text = "{";
  if (!metadata.empty()) text += R"("__metadata__":)" + nlohmann::json(metadata).dump();
  std::unordered_set<std::string_view> names;
  names.reserve(tensors.size());
  std::uint64_t offset = 0;
  for (const std::size_t index : layout.order) {
    const auto& [name, tensor] = tensors[index];
    if (name == "__metadata__") reject(file, "a tensor cannot be named '__metadata__'");
    if (!names.insert(name).second) {
      reject(file, fmt::format("tensor name '{}' is used twice", name));
    }
    if (!checked_numel(tensor.shape))
      reject(file, fmt::format("tensor '{}' has a bad shape", name));
    const std::uint64_t size = tensor.nbytes();
    append_header_member(text, name, tensor, offset, offset + size);
    layout.offsets.push_back(offset);
    layout.sizes.push_back(size);
    offset += size;
  }
  text += '}';
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
