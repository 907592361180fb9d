// Read access to a whole file through a private, copy-on-write memory mapping: pages are
// read only when touched, so parsing a header never reads the tensors behind it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "torch2mlx/tensor.h"

namespace torch2mlx {

/// A file's bytes, mapped or held in memory. Always owned through a shared_ptr so that
/// tensor storages can keep it alive.
class MappedFile {
 public:
  /// Maps `path` (an empty file maps to an empty span).
  static std::shared_ptr<MappedFile> open(const std::filesystem::path& path);
  /// Wraps bytes already in memory; `name` is used in error messages (fuzzing, tests).
  static std::shared_ptr<MappedFile> from_bytes(std::vector<std::byte> bytes, std::string name);

  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&&) = delete;
  MappedFile& operator=(MappedFile&&) = delete;
  ~MappedFile();

  /// All bytes of the file. Writable: writes stay private to this process.
  [[nodiscard]] std::span<std::byte> bytes() const { return {data_, size_}; }
  [[nodiscard]] std::size_t size() const { return size_; }
  /// How the bytes are about to be read; a hint to the kernel's readahead.
  enum class Access : std::uint8_t { Normal, Random, Sequential };
  /// Hints the access pattern: Random while hopping between headers keeps the kernel from
  /// reading ahead megabytes of weights that nobody asked for; Sequential for one pass.
  void advise(Access access) const;
  /// Asks the kernel to start reading the pages of `range` (a part of bytes()) now, without
  /// waiting for them; a hint whose failure changes only speed.
  void prefetch(std::span<const std::byte> range) const;
  /// Hands the whole pages inside `range` (a part of bytes()) back to the kernel: resident
  /// memory drops, and a later read faults them in from the file again. Only for a mapping
  /// nobody has written to; a buffer from from_bytes is left alone.
  void release(std::span<const std::byte> range) const;

  /// True when the bytes are a file mapping (not a buffer from from_bytes).
  [[nodiscard]] bool is_mapped() const { return mapped_; }
  /// The open file behind a mapping (read-only), for copies that stay in the kernel; -1 if
  /// the bytes are not a file's.
  [[nodiscard]] int descriptor() const { return fd_; }
  /// Where `byte` lies in the file; `byte` must point into bytes().
  [[nodiscard]] std::uint64_t offset_of(const std::byte* byte) const {
    return static_cast<std::uint64_t>(byte - data_);
  }

  /// The path or name given at open, for error messages.
  [[nodiscard]] const std::string& name() const { return name_; }

 private:
  MappedFile() = default;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  bool mapped_ = false;
  int fd_ = -1;
  std::vector<std::byte> owned_;
  std::string name_;
};

/// Hands the whole pages inside a file-backed storage back to the kernel, so that a
/// converter streaming through a large checkpoint keeps its resident memory bounded.
/// Does nothing for storages that are not file-backed.
void release_pages(const Storage& storage);

}  // namespace torch2mlx
