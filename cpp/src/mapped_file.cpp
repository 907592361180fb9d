#include "torch2mlx/mapped_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "torch2mlx/error.h"

namespace torch2mlx {

std::shared_ptr<MappedFile> MappedFile::open(const std::filesystem::path& path) {
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->name_ = path.string();
  // O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer, forever; the
  // fstat below then refuses it (for a regular file the flag changes nothing).
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    fail("file", fmt::format("cannot open {}: {}", path.string(), std::strerror(errno)));
  }
  struct stat info {};
  if (::fstat(fd, &info) != 0) {
    const int saved = errno;
    ::close(fd);
    fail("file", fmt::format("cannot stat {}: {}", path.string(), std::strerror(saved)));
  }
  if (!S_ISREG(info.st_mode)) {
    ::close(fd);
    const char* kind = S_ISDIR(info.st_mode)    ? "a folder"
                       : S_ISFIFO(info.st_mode) ? "a FIFO"
                       : S_ISSOCK(info.st_mode) ? "a socket"
                                                : "a device";
    fail("file", fmt::format("{} is not a regular file ({}); only regular files are read: "
                             "point at the checkpoint file itself",
                             path.string(), kind));
  }
  file->size_ = static_cast<std::size_t>(info.st_size);
  if (file->size_ > 0) {
    // MAP_PRIVATE + PROT_WRITE: callers may write into tensors (numpy arrays are writable,
    // as torch.load's tensors are) without ever touching the file.
    void* address = ::mmap(nullptr, file->size_, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (address == MAP_FAILED) {
      const int saved = errno;
      ::close(fd);
      fail("file", fmt::format("cannot map {}: {}", path.string(), std::strerror(saved)));
    }
    file->data_ = static_cast<std::byte*>(address);
    file->mapped_ = true;
    file->fd_ = fd;  // kept for copy_file_range; closed with the mapping
    return file;
  }
  ::close(fd);
  return file;
}

std::shared_ptr<MappedFile> MappedFile::from_bytes(std::vector<std::byte> bytes, std::string name) {
  std::shared_ptr<MappedFile> file(new MappedFile());
  file->owned_ = std::move(bytes);
  file->data_ = file->owned_.data();
  file->size_ = file->owned_.size();
  file->name_ = std::move(name);
  return file;
}

void MappedFile::advise(Access access) const {
  if (!mapped_) return;
  // Only a hint: a failure changes speed, never results, so it is ignored.
  const int advice = access == Access::Random       ? MADV_RANDOM
                     : access == Access::Sequential ? MADV_SEQUENTIAL
                                                    : MADV_NORMAL;
  (void)::madvise(data_, size_, advice);
}

void MappedFile::prefetch(std::span<const std::byte> range) const {
  if (!mapped_ || range.empty()) return;
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto address = reinterpret_cast<std::uintptr_t>(range.data());
  // madvise wants a page-aligned start: round it down (the page is the file's either way).
  std::byte* start = const_cast<std::byte*>(range.data()) - address % page;
  (void)::madvise(start, range.size() + address % page, MADV_WILLNEED);
}

void MappedFile::release(std::span<const std::byte> range) const {
  if (!mapped_ || range.empty()) return;
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto address = reinterpret_cast<std::uintptr_t>(range.data());
  // Only whole pages inside the range: round the start up and the end down.
  const std::uintptr_t head = (page - address % page) % page;
  const std::uintptr_t tail = (address + range.size()) % page;
  if (head + tail >= range.size()) return;
  // The mapping is private and never written by the converter, so dropping the pages
  // loses nothing: a later read faults them in from the file again.
  (void)::madvise(const_cast<std::byte*>(range.data()) + head, range.size() - head - tail,
                  MADV_DONTNEED);
}

void release_pages(const Storage& storage) {
  if (storage.file != nullptr) storage.file->release({storage.data, storage.nbytes});
}

MappedFile::~MappedFile() {
  if (mapped_) ::munmap(data_, size_);
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace torch2mlx
