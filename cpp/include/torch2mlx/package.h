// Floor 6 of the core: writing an MLX package from an ExportedProgram. This writes the
// parts that need the core (model.py and the weights); the Python front adds config.json
// and report.json and moves the finished directory into place.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "torch2mlx/codegen.h"
#include "torch2mlx/graph.h"
#include "torch2mlx/tensor.h"

namespace torch2mlx {

/// How to write the package.
struct PackageOptions {
  std::optional<DType> dtype;  // cast floating-point weights; integer and bool ones are kept
  std::uint64_t shard_bytes = 5'000'000'000;
  unsigned threads = 0;  // 0: one per core
  CodegenOptions codegen;
  // A checkpoint (file or Hugging Face folder) whose tensors the weights are read from, by
  // name, instead of the archive's: a model captured with its parameters on the meta device
  // then converts with memory bounded by a shard, not the model.
  std::filesystem::path weights_from;
  // Program weight name -> the checkpoint's name for it, where they differ: a tied head
  // (lm_head.weight) that the checkpoint stores once, as the embedding.
  std::map<std::string, std::string> weight_aliases;
};

/// What was written.
struct PackageResult {
  GeneratedModel model;
  std::vector<std::string> weight_files;  // file names inside the directory
};

/// Generates model.py for `program` and writes it with the weights (model.safetensors, or
/// shards plus model.safetensors.index.json, in MLX's layout) into `directory`, which must
/// exist. Every file is written under a temporary name and renamed at the end.
PackageResult write_package(const ExportedProgram& program, const std::filesystem::path& directory,
                            const PackageOptions& options = {});

}  // namespace torch2mlx
