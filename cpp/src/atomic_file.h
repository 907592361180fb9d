// Internal: a file written under a temporary name in its destination directory and
// renamed into place only when complete, so a failed or killed write leaves no trace.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>

namespace torch2mlx {

class AtomicFile {
 public:
  /// Creates "<dir>/.<name>.tmp-XXXXXX" next to `destination`.
  explicit AtomicFile(std::filesystem::path destination);
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;
  AtomicFile(AtomicFile&&) = delete;
  AtomicFile& operator=(AtomicFile&&) = delete;
  /// Removes the temporary file unless commit() succeeded.
  ~AtomicFile();

  /// Appends bytes; throws Error on a short write.
  void write(std::span<const std::byte> bytes);
  /// Writes bytes at an absolute offset (pwrite); safe to call from several threads.
  void write_at(std::uint64_t offset, std::span<const std::byte> bytes) const;
  /// Copies `length` bytes of the open file `source` from `source_offset` to `offset`
  /// inside the kernel (copy_file_range), as cp does. Returns false, having written nothing,
  /// where the kernel cannot (other file systems, old kernels): the caller then writes.
  bool copy_from(int source, std::uint64_t source_offset, std::uint64_t offset,
                 std::uint64_t length) const;
  /// Asks the kernel to start writing a range to disk without waiting (a hint: no error).
  void start_writeback(std::uint64_t offset, std::uint64_t length) const;
  /// Flushes to disk and renames over the destination.
  void commit();

 private:
  std::filesystem::path destination_;
  std::filesystem::path temporary_;
  int fd_ = -1;
  bool committed_ = false;
};

}  // namespace torch2mlx
