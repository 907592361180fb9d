// The weight converter: applies the registry's per-module-type rules to a checkpoint and
// streams the result into (possibly sharded) safetensors, in parallel, with bounded memory.
//
// Output layout, as mlx-lm writes it: DEST.safetensors when everything fits in one shard;
// otherwise DEST-00001-of-0000N.safetensors ... plus DEST.safetensors.index.json mapping each
// tensor to its shard. Every file is written under a temporary name and renamed into place
// only when all of them are complete.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "torch2mlx/checkpoint.h"
#include "torch2mlx/digest.h"
#include "torch2mlx/quantize.h"
#include "torch2mlx/registry.h"
#include "torch2mlx/tensor.h"

namespace torch2mlx {

/// One module of the torch model: where it sits and what it is.
struct ModuleInfo {
  std::string path;         // dotted path from the root, "" for the root itself
  std::string type;         // fully qualified torch type, e.g. "torch.nn.modules.conv.Conv2d"
  std::int64_t groups = 1;  // conv groups (transposed convs permute per group)
};

/// Options of a conversion.
struct ConvertOptions {
  std::optional<DType> dtype;  // cast floating-point tensors; integer and bool ones are kept
  int quantize_bits = 0;       // MLX quantization of Linear/Embedding weights (0: off)
  int group_size = 64;
  QuantMode quantize_mode = QuantMode::Affine;
  // Per layer (torch module path, e.g. "model.embed_tokens"): its own setting, or nullopt
  // to leave it unquantized; layers not listed take the three fields above.
  std::map<std::string, std::optional<QuantSpec>> quantize_layers;
  std::uint64_t shard_bytes = 5'000'000'000;
  bool reverse = false;       // MLX layout and names back to torch's
  bool keep_unknown = false;  // copy tensors of unknown modules unchanged (reported)
  unsigned threads = 0;       // 0: one per core
  std::map<std::string, std::string> metadata;  // added to every output file
  // When both are set, every output file's metadata gets `digest_key`: the SHA-256 of the
  // source, hashed beside the writers (one read of the disk serves both; the caller may
  // have started it earlier still) and filled into the headers before the files are named.
  std::string digest_key;
  std::shared_ptr<FileDigest> digest;
  // Called on the calling thread with (bytes done, bytes total) while writing.
  std::function<void(std::uint64_t, std::uint64_t)> progress;
};

/// One output tensor and how it is made.
struct PlannedTensor {
  std::string source;  // key in the input checkpoint
  std::string target;  // key in the output
  Transform transform = Transform::Keep;
  std::int64_t groups = 1;
  DType dtype = DType::F32;         // output dtype
  std::vector<std::int64_t> shape;  // output shape
  Tensor input;
  std::string module_type;  // the registry entry that decided, "" when none
  // Quantized weights become three outputs with the same source: the packed weights
  // (target), then target's ".scales" and ".biases" siblings (no biases in the fp modes).
  enum class Part : std::uint8_t { Whole, Weights, Scales, Biases };
  Part part = Part::Whole;
  DType float_dtype = DType::F32;  // what a quantized weight is quantized from
  QuantSpec quant;                 // how, for the parts of a quantized weight
};

/// Everything a conversion will do, decided before a byte is written.
struct ConversionPlan {
  std::vector<PlannedTensor> tensors;
  std::vector<std::pair<std::string, std::string>> dropped;  // key, reason
  std::vector<std::string> notes;              // prefixes stripped, weight norm folded, ...
  std::vector<std::string> unknown;            // tensors no rule covers (kept if keep_unknown)
  std::map<std::string, std::string> renamed;  // source -> target, where they differ
};

/// Decides the output of converting `checkpoint` for a model made of `modules` (empty:
/// copy every tensor unchanged). Throws Error listing every tensor no rule covers, unless
/// options.keep_unknown.
[[nodiscard]] ConversionPlan plan_conversion(const Checkpoint& checkpoint,
                                             std::span<const ModuleInfo> modules,
                                             const ConvertOptions& options);

/// Writes the plan to `destination` (a .safetensors path); returns the files written.
std::vector<std::string> write_plan(const ConversionPlan& plan,
                                    const std::filesystem::path& destination,
                                    const ConvertOptions& options);

}  // namespace torch2mlx
