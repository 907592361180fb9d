// The safetensors format (https://github.com/huggingface/safetensors), written down:
//
//   u64 little-endian N | N bytes of UTF-8 JSON header | data buffer
//
// The header maps each tensor name to {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}
// with offsets relative to the data buffer, plus an optional "__metadata__" map of
// string to string. Tensors are packed row-major, little-endian, without holes or overlaps,
// and e - b equals numel * itemsize. Writers pad the header with spaces to a multiple of 8.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "torch2mlx/checkpoint.h"
#include "torch2mlx/mapped_file.h"
#include "torch2mlx/tensor.h"

namespace torch2mlx {

/// One tensor as the header describes it.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // relative to the data buffer
  std::uint64_t end = 0;
};

/// A parsed and validated header.
struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;  // in data order
  std::map<std::string, std::string> metadata;
  std::uint64_t data_start = 0;  // absolute offset of the data buffer
};

/// Parses and validates the header of the safetensors file held in `file` (all of it, so
/// that offsets can be checked against its size). `name` is used in errors.
[[nodiscard]] SafetensorsHeader parse_safetensors_header(std::span<const std::byte> file,
                                                         std::string_view name,
                                                         const ReadLimits& limits = {});

/// Reads a safetensors file: each tensor views the mapped file, nothing is copied.
[[nodiscard]] Checkpoint read_safetensors(const std::shared_ptr<MappedFile>& file,
                                          const ReadOptions& options = {});

/// Where each tensor goes in a safetensors file, decided from names, dtypes and shapes only.
struct SafetensorsLayout {
  std::vector<std::byte> header;       // length prefix + JSON, padded to a multiple of 8
  std::vector<std::size_t> order;      // indices into the input, in data order
  std::vector<std::uint64_t> offsets;  // data-buffer offset of order[i]
  std::vector<std::uint64_t> sizes;    // bytes of order[i]
};

/// Lays out tensors (their storage is not read) by decreasing itemsize, then name, so that
/// every tensor is aligned to its element size. Refuses duplicate names.
[[nodiscard]] SafetensorsLayout safetensors_layout(
    std::span<const NamedTensor> tensors, const std::map<std::string, std::string>& metadata,
    std::string_view file = "output");

/// Writes tensors (any strides) to `path` atomically: a temporary file in the same
/// directory, then a rename. Names must be unique. Tensors are laid out by decreasing
/// itemsize, then name, so that every tensor is aligned to its element size.
void write_safetensors(const std::filesystem::path& path, std::span<const NamedTensor> tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace torch2mlx
