// Floor 6 of the core: writing an MLX package from an ExportedProgram. This writes the
// parts that need the core (model.py and the weights); the Python front adds config.json
// and report.json and moves the finished directory into place.
#pragma once

#include <cstdint>
#include <filesystem>
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
