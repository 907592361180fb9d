// SHA-256 of a file, for the provenance a converted checkpoint records.
#pragma once

#include <cstddef>
#include <exception>
#include <filesystem>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

namespace torch2mlx {

/// Characters of a SHA-256 in hex.
inline constexpr std::size_t kSha256HexLength = 64;

/// The SHA-256 of the file at `path` in lowercase hex, as `sha256sum` prints it. Reads
/// through a mapping and hands each chunk's pages back once hashed, so resident memory
/// stays a chunk whatever the file's size. Returns "" early once `stop` is requested.
[[nodiscard]] std::string sha256_file(const std::filesystem::path& path,
                                      const std::stop_token& stop = {});

/// sha256_file of one or more files (a sharded checkpoint), one after the other on a thread
/// of its own from construction, so that hashing overlaps other work (building the model,
/// converting). Destroying it stops the hashing.
class FileDigest {
 public:
  explicit FileDigest(std::vector<std::filesystem::path> paths);
  explicit FileDigest(const std::filesystem::path& path)
      : FileDigest(std::vector<std::filesystem::path>{path}) {}
  FileDigest(const FileDigest&) = delete;
  FileDigest& operator=(const FileDigest&) = delete;
  FileDigest(FileDigest&&) = delete;
  FileDigest& operator=(FileDigest&&) = delete;
  ~FileDigest() = default;

  /// Waits for the digest and returns it: the hex digest of a single file, or
  /// "name:hex,name:hex" (file names without folders) for several. Rethrows what hashing threw.
  [[nodiscard]] std::string wait();
  /// What wait() will return, with every digit '0': the same length, known at once.
  [[nodiscard]] std::string placeholder() const;

 private:
  [[nodiscard]] std::string join(const std::vector<std::string>& digests) const;
  std::vector<std::filesystem::path> paths_;
  std::string hex_;
  std::exception_ptr failure_;
  std::mutex mutex_;
  std::jthread thread_;  // last: stopped and joined before the members it writes go
};

}  // namespace torch2mlx
