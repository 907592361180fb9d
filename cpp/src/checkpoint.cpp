#include "torch2mlx/checkpoint.h"

#include <fmt/format.h>

#include <array>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "json_sax.h"
#include "torch2mlx/error.h"
#include "torch2mlx/mapped_file.h"
#include "torch2mlx/pt2.h"
#include "torch2mlx/safetensors.h"
#include "torch2mlx/torch_zip.h"
#include "torch2mlx/zip_archive.h"

namespace torch2mlx {
namespace {

namespace fs = std::filesystem;
constexpr std::string_view kComponent = "checkpoint";

[[noreturn]] void reject(std::string_view file, std::string_view message) {
  fail(kComponent, fmt::format("{}: {}", file, message));
}
[[noreturn]] void reject(const fs::path& file, std::string_view message) {
  reject(std::string_view(file.native()), message);
}

// What to do about an index that is damaged, or that does not match its shards.
constexpr std::string_view kIndexDamaged =
    "the index is damaged or not a Hugging Face index: download it again";
constexpr std::string_view kIndexMismatch =
    "the index and the shards do not belong together: download the whole folder again";

// What a Hugging Face folder may hold, in the order transformers looks for it.
constexpr std::array<std::string_view, 4> kFolderCandidates{
    "model.safetensors.index.json",
    "model.safetensors",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
};

// The magic number legacy (pre-1.6) torch.save writes first: LONG1 0x1950a86a20f9469cfc6c.
constexpr std::array<unsigned char, 14> kLegacyMagic{0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c,
                                                     0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};

std::string zip_flavour(const std::shared_ptr<MappedFile>& file) {
  const ZipArchive archive = ZipArchive::open(file);
  bool torchscript = false;
  for (const auto& entry : archive.entries()) {
    const std::string_view name = entry.name;
    if (name.ends_with("/data.pkl") && name.find('/') == name.rfind('/')) return "torch";
    if (name.ends_with("/archive_format") || name == "archive_format" ||
        name.ends_with("serialized_exported_program.json")) {
      return "pt2";
    }
    if (name.ends_with("/constants.pkl")) torchscript = true;
  }
  return torchscript ? "torchscript" : "zip";
}

std::string detect_file(const fs::path& path, const std::shared_ptr<MappedFile>& file) {
  const auto bytes = file->bytes();
  auto starts_with = [&](std::span<const unsigned char> magic) {
    return bytes.size() >= magic.size() &&
           std::memcmp(bytes.data(), magic.data(), magic.size()) == 0;
  };
  constexpr std::array<unsigned char, 4> kZip{'P', 'K', 3, 4};
  constexpr std::array<unsigned char, 4> kEmptyZip{'P', 'K', 5, 6};
  if (starts_with(kZip) || starts_with(kEmptyZip)) return zip_flavour(file);
  if (starts_with(kLegacyMagic)) return "torch-legacy";
  // Named .safetensors: let the header parser say what is wrong (a length past the end of
  // a truncated file, a header that is not JSON) rather than "not a safetensors file".
  if (path.extension() == ".safetensors") return "safetensors";
  if (bytes.size() >= 9 && std::to_integer<char>(bytes[8]) == '{') {
    std::uint64_t length = 0;
    for (int i = 7; i >= 0; --i) length = (length << 8) | std::to_integer<std::uint64_t>(bytes[i]);
    if (length <= bytes.size() - 8) return "safetensors";
  }
  if (path.extension() == ".json") return "hf-index";
  if (!bytes.empty() && std::to_integer<unsigned char>(bytes[0]) == 0x80) return "pickle";
  return "unknown";
}

// The weights of a torch.export archive (parameters, buffers and constants, by state-dict
// name); the graph is read and checked too, so a damaged program is refused here as well.
Checkpoint pt2_checkpoint(const std::shared_ptr<MappedFile>& file, const ReadOptions& options) {
  ExportedProgram program = read_pt2(file, options);
  Checkpoint checkpoint;
  checkpoint.format = "pt2";
  checkpoint.files.push_back(file->name());
  checkpoint.tensors = std::move(program.weights);
  checkpoint.metadata["schema_version"] =
      fmt::format("{}.{}", program.schema_version.first, program.schema_version.second);
  if (!program.torch_version.empty()) checkpoint.metadata["torch_version"] = program.torch_version;
  return checkpoint;
}

Checkpoint read_file(const fs::path& path, const ReadOptions& options);
Checkpoint read_weights(const fs::path& path, const ReadOptions& options);

Checkpoint read_index(const fs::path& index_path, const ReadOptions& options) {
  const auto file = MappedFile::open(index_path);
  const ShardIndex index =
      parse_shard_index({reinterpret_cast<const char*>(file->bytes().data()), file->size()},
                        index_path.string(), options.limits);
  const auto& shards = index.shards;
  Checkpoint checkpoint;
  checkpoint.files.push_back(index_path.string());
  checkpoint.metadata = index.metadata;
  std::set<std::string> formats;
  for (const auto& [file, names] : shards) {
    const fs::path shard_path = index_path.parent_path() / file;
    if (!fs::exists(shard_path)) {
      reject(index_path,
             fmt::format("shard '{}' listed in the index is missing; download it into {}", file,
                         index_path.parent_path().string()));
    }
    Checkpoint shard = read_weights(shard_path, options);
    formats.insert(shard.format);
    checkpoint.files.push_back(shard_path.string());
    std::set<std::string> found;
    for (auto& named : shard.tensors) {
      if (!names.contains(named.name)) {
        reject(index_path, fmt::format("tensor '{}' is in shard '{}' but the index assigns it "
                                       "elsewhere or not at all; {}",
                                       named.name, file, kIndexMismatch));
      }
      found.insert(named.name);
      checkpoint.tensors.push_back(std::move(named));
    }
    for (const auto& name : names) {
      if (!found.contains(name)) {
        reject(index_path, fmt::format("tensor '{}' is listed for shard '{}' but is not in it; {}",
                                       name, file, kIndexMismatch));
      }
    }
    for (auto& leaf : shard.others) checkpoint.others.push_back(std::move(leaf));
  }
  checkpoint.format = formats.size() == 1 && *formats.begin() == "torch" ? "hf-sharded-torch"
                                                                         : "hf-sharded-safetensors";
  return checkpoint;
}

Checkpoint read_folder(const fs::path& folder, const ReadOptions& options) {
  for (const auto candidate : kFolderCandidates) {
    const fs::path path = folder / candidate;
    if (fs::exists(path)) return read_file(path, options);
  }
  reject(folder, fmt::format("folder holds none of {}; point at a weights file instead",
                             fmt::join(kFolderCandidates, ", ")));
}

Checkpoint read_file(const fs::path& path, const ReadOptions& options) {
  if (path.extension() == ".json") return read_index(path, options);
  return read_weights(path, options);
}

// A single weights file (never an index).
Checkpoint read_weights(const fs::path& path, const ReadOptions& options) {
  auto file = MappedFile::open(path);
  const std::string format = detect_file(path, file);
  if (format == "safetensors") return read_safetensors(file, options);
  if (format == "torch") return read_torch_zip(file, options);
  if (format == "torch-legacy") {
    reject(
        path,
        "written by the legacy torch.save format (torch < 1.6), which torch2mlx does not "
        "read; re-save it with a current torch: torch.save(torch.load(f, weights_only=True), f2)");
  }
  if (format == "torchscript") {
    reject(path,
           "is a TorchScript archive (torch.jit.save), not a checkpoint; save "
           "torch.jit.load(f).state_dict() with torch.save instead");
  }
  if (format == "pt2") return pt2_checkpoint(file, options);
  if (format == "pickle") {
    reject(path,
           "is a bare pickle, not a torch.save zip archive; torch2mlx does not unpickle "
           "arbitrary files");
  }
  if (format == "zip")
    reject(path, "is a zip archive but not a torch.save checkpoint (no data.pkl)");
  reject(path, "is not a safetensors file, a torch.save checkpoint or a Hugging Face index");
}

}  // namespace

ShardIndex parse_shard_index(std::string_view json, std::string_view name,
                             const ReadLimits& limits) {
  if (json.size() > limits.max_header_bytes) {
    reject(name, fmt::format("index is {} bytes, over the limit of {}; an index lists names only",
                             json.size(), limits.max_header_bytes));
  }
  // Nesting is refused while parsing: dumping a deeply nested metadata value would recurse.
  nlohmann::json index;
  json_sax::DomBuilder builder(index, limits.max_depth, [&] {
    reject(name, fmt::format("index nests deeper than the limit of {}; {}", limits.max_depth,
                             kIndexDamaged));
  });
  try {
    nlohmann::json::sax_parse(json, &builder);
  } catch (const nlohmann::json::exception& error) {
    reject(name, fmt::format("index is not valid JSON ({}); {}", error.what(), kIndexDamaged));
  }
  const auto map = index.find("weight_map");
  if (!index.is_object() || map == index.end() || !map->is_object()) {
    reject(name, fmt::format("index has no 'weight_map' object; {}", kIndexDamaged));
  }
  if (map->size() > limits.max_tensors) {
    reject(name, fmt::format("weight_map lists {} tensors, over the limit of {}; {}", map->size(),
                             limits.max_tensors, kIndexDamaged));
  }
  ShardIndex result;
  for (const auto& [tensor, shard] : map->items()) {
    if (!shard.is_string())
      reject(name, fmt::format("weight_map['{}'] is not a file name; {}", tensor, kIndexDamaged));
    const auto& file = shard.get_ref<const std::string&>();
    if (file.empty() || file.find('/') != std::string::npos ||
        file.find('\\') != std::string::npos || file == "." || file == "..") {
      reject(name, fmt::format("shard name '{}' is not a plain file name in the folder; {}", file,
                               kIndexDamaged));
    }
    if (fs::path(file).extension() == ".json") {
      // An index naming an index (itself, say) would recurse without end.
      reject(name, fmt::format("shard '{}' is an index, not a weights file; the "
                               "weight_map must name the shard files themselves",
                               file));
    }
    result.shards[file].insert(tensor);
  }
  if (const auto meta = index.find("metadata"); meta != index.end() && meta->is_object()) {
    for (const auto& [key, value] : meta->items()) {
      result.metadata[key] = value.is_string() ? value.get<std::string>() : value.dump();
    }
  }
  return result;
}

std::string detect_format(const fs::path& path) {
  if (fs::is_directory(path)) return "hf-folder";
  if (path.extension() == ".json") return "hf-index";
  return detect_file(path, MappedFile::open(path));
}

Checkpoint read_checkpoint(const fs::path& path, const ReadOptions& options) {
  if (!fs::exists(path)) reject(path, "no such file or folder");
  if (fs::is_directory(path)) return read_folder(path, options);
  return read_file(path, options);
}

}  // namespace torch2mlx
