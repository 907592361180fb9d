// SHA-256 of a file, for the provenance a converted checkpoint records.
#pragma once

#include <cstddef>
#include <exception>
#include <filesystem>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>

namespace torch2mlx {

/// Characters of a SHA-256 in hex.
inline constexpr std::size_t kSha256HexLength = 64;

/// The SHA-256 of the file at `path` in lowercase hex, as `sha256sum` prints it. Reads
/// through a mapping and hands each chunk's pages back once hashed, so resident memory
/// stays a chunk whatever the file's size. Returns "" early once `stop` is requested.
[[nodiscard]] std::string sha256_file(const std::filesystem::path& path,
                                      const std::stop_token& stop = {});

/// sha256_file running on its own thread from construction, so that hashing a checkpoint
/// overlaps other work (building the model, converting). Destroying it stops the hashing.
class FileDigest {
 public:
  explicit FileDigest(std::filesystem::path path);
  FileDigest(const FileDigest&) = delete;
  FileDigest& operator=(const FileDigest&) = delete;
  FileDigest(FileDigest&&) = delete;
  FileDigest& operator=(FileDigest&&) = delete;
  ~FileDigest() = default;

  /// Waits for the digest and returns it; rethrows what hashing threw.
  [[nodiscard]] std::string wait();
  /// The file being hashed.
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  std::string hex_;
  std::exception_ptr failure_;
  std::mutex mutex_;
  std::jthread thread_;  // last: stopped and joined before the members it writes go
};

}  // namespace torch2mlx
