#include "atomic_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "torch2mlx/error.h"

namespace torch2mlx {

AtomicFile::AtomicFile(std::filesystem::path destination) : destination_(std::move(destination)) {
  const auto directory =
      destination_.has_parent_path() ? destination_.parent_path() : std::filesystem::path(".");
  std::string pattern =
      (directory / ("." + destination_.filename().string() + ".tmp-XXXXXX")).string();
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  fd_ = ::mkstemp(buffer.data());
  if (fd_ < 0) {
    fail("write",
         fmt::format("cannot create a file in {}: {}", directory.string(), std::strerror(errno)));
  }
  temporary_ = buffer.data();
  ::fchmod(fd_, 0644);  // mkstemp creates 0600; outputs are ordinary files
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) {
    std::error_code ignored;
    std::filesystem::remove(temporary_, ignored);
  }
}

void AtomicFile::write(std::span<const std::byte> bytes) {
  const std::byte* cursor = bytes.data();
  std::size_t left = bytes.size();
  while (left > 0) {
    const ::ssize_t written = ::write(fd_, cursor, left);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) {
      fail("write",
           fmt::format("writing {} failed: {}", destination_.string(), std::strerror(errno)));
    }
    cursor += written;
    left -= static_cast<std::size_t>(written);
  }
}

void AtomicFile::write_at(std::uint64_t offset, std::span<const std::byte> bytes) const {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ::ssize_t written = ::pwrite(fd_, bytes.data() + done, bytes.size() - done,
                                       static_cast<::off_t>(offset + done));
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) {
      fail("write",
           fmt::format("writing {} failed: {}", destination_.string(), std::strerror(errno)));
    }
    done += static_cast<std::size_t>(written);
  }
}

bool AtomicFile::copy_from(int source, std::uint64_t source_offset, std::uint64_t offset,
                           std::uint64_t length) const {
#ifdef __linux__
  std::uint64_t done = 0;
  while (done < length) {
    auto from = static_cast<::off64_t>(source_offset + done);
    auto to = static_cast<::off64_t>(offset + done);
    const ::ssize_t copied = ::copy_file_range(source, &from, fd_, &to, length - done, 0);
    if (copied < 0 && errno == EINTR) continue;
    if (copied < 0 && done == 0 &&
        (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
      return false;
    }
    if (copied <= 0) {
      fail("write", fmt::format("copying into {} failed: {}", destination_.string(),
                                copied < 0 ? std::strerror(errno) : "the source ended early"));
    }
    done += static_cast<std::uint64_t>(copied);
  }
  return true;
#else
  (void)source;
  (void)source_offset;
  (void)offset;
  (void)length;
  return false;
#endif
}

void AtomicFile::start_writeback(std::uint64_t offset, std::uint64_t length) const {
#ifdef __linux__
  (void)::sync_file_range(fd_, static_cast<::off64_t>(offset), static_cast<::off64_t>(length),
                          SYNC_FILE_RANGE_WRITE);
#else
  (void)offset;
  (void)length;
#endif
}

void AtomicFile::commit() {
  if (::fsync(fd_) != 0 || ::close(fd_) != 0) {
    fd_ = -1;
    fail("write",
         fmt::format("flushing {} failed: {}", destination_.string(), std::strerror(errno)));
  }
  fd_ = -1;
  std::error_code error;
  std::filesystem::rename(temporary_, destination_, error);
  if (error) {
    fail("write", fmt::format("cannot move the finished file to {}: {}", destination_.string(),
                              error.message()));
  }
  committed_ = true;
}

}  // namespace torch2mlx
