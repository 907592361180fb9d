// A checkpoint as the readers return it, whatever the format on disk, and the entry point
// that picks the reader from the file's magic bytes (never from its extension).
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "torch2mlx/tensor.h"

namespace torch2mlx {

/// Caps that no real checkpoint reaches and every decompression or pickle bomb does.
struct ReadLimits {
  std::size_t max_header_bytes = std::size_t{100} << 20;  // a JSON header or index; all names
  std::size_t max_pickle_bytes = std::size_t{1} << 30;    // a data.pkl
  std::size_t max_memo_entries = std::size_t{1} << 24;
  // Values, container slots and memo entries a data.pkl creates (about 30 per tensor), and
  // values a flattened checkpoint expands to.
  std::size_t max_pickle_values = std::size_t{1} << 22;
  std::size_t max_depth = 512;  // nesting of pickle marks and containers
  std::size_t max_tensors = std::size_t{1} << 22;
  std::size_t max_zip_entries = std::size_t{1} << 22;
  // Bytes the deflated members of one zip may inflate to, all together. torch.save and
  // torch.export store tensors uncompressed; only data.pkl and small members are ever
  // deflated, while each member alone may claim 1032 times its compressed size.
  std::size_t max_inflated_bytes = std::size_t{2} << 30;
};

/// How to read.
struct ReadOptions {
  /// Parse headers only: tensors get a storage with its size but no data pointer.
  bool headers_only = false;
  /// .pt2 only: weights saved from meta tensors (an empty storage) are kept, without data,
  /// for a caller that takes their bytes from a checkpoint (PackageOptions::weights_from).
  bool allow_meta_weights = false;
  ReadLimits limits;
};

/// A value in a checkpoint that is not a tensor (an epoch counter, a learning rate...).
/// Readers report these rather than dropping them silently.
struct Leaf {
  std::string path;  // dotted key, e.g. "optimizer.param_groups.0.lr"
  std::string type;  // "int", "float", "str", "bytes", "bool", "None", ...
  std::string repr;  // short Python-like rendering
};

/// Tensors and other leaves read from one file or one sharded folder.
struct Checkpoint {
  // "safetensors", "torch", "pt2", "hf-sharded-safetensors", "hf-sharded-torch"
  std::string format;
  std::vector<std::string> files;
  std::vector<NamedTensor> tensors;
  std::vector<Leaf> others;
  std::map<std::string, std::string> metadata;
};

/// What a Hugging Face index (model.safetensors.index.json) says: which shard holds which tensor.
struct ShardIndex {
  std::map<std::string, std::set<std::string>> shards;  // shard file -> tensor names
  std::map<std::string, std::string> metadata;          // non-string values as JSON text
};

/// Parses and validates the JSON text of a sharded-checkpoint index; `name` is used in errors.
[[nodiscard]] ShardIndex parse_shard_index(std::string_view json, std::string_view name,
                                           const ReadLimits& limits = {});

/// Names the format of `path` from its magic bytes: "safetensors", "torch", "torch-legacy",
/// "torchscript", "pt2", "hf-folder", "hf-index", or "unknown".
[[nodiscard]] std::string detect_format(const std::filesystem::path& path);

/// Reads a safetensors file, a torch.save zip, the weights of a torch.export archive (.pt2),
/// a sharded Hugging Face folder or its index.json. Throws Error naming the file and what to
/// do for anything else.
[[nodiscard]] Checkpoint read_checkpoint(const std::filesystem::path& path,
                                         const ReadOptions& options = {});

}  // namespace torch2mlx
