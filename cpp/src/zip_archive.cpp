#include "torch2mlx/zip_archive.h"

#include <fmt/format.h>
#include <minizip/unzip.h>

#include <algorithm>
#include <cstring>

#include "torch2mlx/error.h"

namespace torch2mlx {
namespace {

constexpr std::string_view kComponent = "zip";
// Deflate cannot expand data by more than about 1032:1; a larger claim is a bomb.
constexpr std::uint64_t kMaxDeflateRatio = 1032;

[[noreturn]] void reject(std::string_view file, std::string_view message) {
  fail(kComponent, fmt::format("{}: {}", file, message));
}

// minizip reads through these callbacks from the mapped bytes: no second file handle,
// and the same code path for files and in-memory buffers (tests, fuzzing).
struct MemoryStream {
  std::span<const std::byte> bytes;
  std::uint64_t position = 0;
};

voidpf open_stream(voidpf opaque, const void* /*filename*/, int /*mode*/) {
  return new MemoryStream{*static_cast<std::span<const std::byte>*>(opaque), 0};
}

uLong read_stream(voidpf /*opaque*/, voidpf stream, void* buffer, uLong size) {
  auto* memory = static_cast<MemoryStream*>(stream);
  const std::uint64_t left =
      memory->bytes.size() - std::min<std::uint64_t>(memory->position, memory->bytes.size());
  const std::uint64_t count = std::min<std::uint64_t>(size, left);
  std::memcpy(buffer, memory->bytes.data() + memory->position, count);
  memory->position += count;
  return static_cast<uLong>(count);
}

uLong write_stream(voidpf /*opaque*/, voidpf /*stream*/, const void* /*buffer*/, uLong /*size*/) {
  return 0;
}

ZPOS64_T tell_stream(voidpf /*opaque*/, voidpf stream) {
  return static_cast<MemoryStream*>(stream)->position;
}

long seek_stream(voidpf /*opaque*/, voidpf stream, ZPOS64_T offset, int origin) {
  auto* memory = static_cast<MemoryStream*>(stream);
  std::uint64_t base = 0;
  switch (origin) {
    case ZLIB_FILEFUNC_SEEK_SET:
      base = 0;
      break;
    case ZLIB_FILEFUNC_SEEK_CUR:
      base = memory->position;
      break;
    case ZLIB_FILEFUNC_SEEK_END:
      base = memory->bytes.size();
      break;
    default:
      return -1;
  }
  if (offset > memory->bytes.size() || base > memory->bytes.size() - offset) return -1;
  memory->position = base + offset;
  return 0;
}

int close_stream(voidpf /*opaque*/, voidpf stream) {
  delete static_cast<MemoryStream*>(stream);
  return 0;
}

int error_stream(voidpf /*opaque*/, voidpf /*stream*/) { return 0; }

// An open minizip handle over the mapped bytes, closed on scope exit.
class Unzip {
 public:
  explicit Unzip(const MappedFile& file) : bytes_(file.bytes()) {
    zlib_filefunc64_def functions{};
    functions.zopen64_file = open_stream;
    functions.zread_file = read_stream;
    functions.zwrite_file = write_stream;
    functions.ztell64_file = tell_stream;
    functions.zseek64_file = seek_stream;
    functions.zclose_file = close_stream;
    functions.zerror_file = error_stream;
    functions.opaque = &bytes_;
    handle_ = unzOpen2_64(file.name().c_str(), &functions);
    if (handle_ == nullptr) {
      reject(file.name(),
             "not a zip archive, or its central directory is damaged "
             "(a truncated download?)");
    }
  }
  Unzip(const Unzip&) = delete;
  Unzip& operator=(const Unzip&) = delete;
  Unzip(Unzip&&) = delete;
  Unzip& operator=(Unzip&&) = delete;
  ~Unzip() { unzClose(handle_); }
  [[nodiscard]] unzFile get() const { return handle_; }

 private:
  std::span<const std::byte> bytes_;
  unzFile handle_ = nullptr;
};

bool is_unsafe_name(std::string_view name) {
  if (name.empty() || name.front() == '/' || name.find('\\') != std::string_view::npos) return true;
  std::size_t start = 0;
  while (start <= name.size()) {
    const std::size_t end = std::min(name.find('/', start), name.size());
    if (name.substr(start, end - start) == "..") return true;
    start = end + 1;
  }
  return false;
}

}  // namespace

ZipArchive ZipArchive::open(const std::shared_ptr<MappedFile>& file, const ReadLimits& limits) {
  const std::string& name = file->name();
  Unzip zip(*file);
  unz_global_info64 global{};
  if (unzGetGlobalInfo64(zip.get(), &global) != UNZ_OK)
    reject(name, "cannot read the central directory");
  if (global.number_entry > limits.max_zip_entries) {
    reject(name, fmt::format("archive declares {} entries, over the limit of {}",
                             global.number_entry, limits.max_zip_entries));
  }
  ZipArchive archive;
  archive.file_ = file;
  std::vector<char> name_buffer(0x10000 + 1);
  int status = unzGoToFirstFile(zip.get());
  while (status == UNZ_OK) {
    unz_file_info64 info{};
    if (unzGetCurrentFileInfo64(zip.get(), &info, name_buffer.data(), name_buffer.size(), nullptr,
                                0, nullptr, 0) != UNZ_OK) {
      reject(name, "damaged central directory entry");
    }
    ZipEntry entry;
    entry.name.assign(name_buffer.data(),
                      std::min<std::size_t>(info.size_filename, name_buffer.size() - 1));
    if (is_unsafe_name(entry.name)) {
      reject(name, fmt::format("entry name '{}' is absolute or climbs out with '..'; refusing the "
                               "archive",
                               entry.name));
    }
    if (!archive.index_.emplace(entry.name, archive.entries_.size()).second) {
      reject(name, fmt::format("entry '{}' appears twice; the archive is ambiguous", entry.name));
    }
    if ((info.flag & 1U) != 0) reject(name, fmt::format("entry '{}' is encrypted", entry.name));
    if (info.compression_method != 0 && info.compression_method != Z_DEFLATED) {
      reject(name, fmt::format("entry '{}' uses compression method {}; only stored and deflated "
                               "entries are read",
                               entry.name, info.compression_method));
    }
    entry.stored = info.compression_method == 0;
    entry.compressed_size = info.compressed_size;
    entry.size = info.uncompressed_size;
    if (entry.stored && entry.compressed_size != entry.size) {
      reject(name, fmt::format("stored entry '{}' claims {} bytes but occupies {}", entry.name,
                               entry.size, entry.compressed_size));
    }
    if (!entry.stored && entry.size / kMaxDeflateRatio > entry.compressed_size) {
      reject(name, fmt::format("entry '{}' claims to inflate {} bytes to {}, beyond what deflate "
                               "can do (a zip bomb?)",
                               entry.name, entry.compressed_size, entry.size));
    }
    // Opening the entry reads and checks its local header, which gives the data offset.
    if (unzOpenCurrentFile(zip.get()) != UNZ_OK) {
      reject(name, fmt::format("local header of entry '{}' is damaged", entry.name));
    }
    entry.data_offset = unzGetCurrentFileZStreamPos64(zip.get());
    unzCloseCurrentFile(zip.get());
    if (entry.data_offset > file->size() ||
        entry.compressed_size > file->size() - entry.data_offset) {
      reject(name, fmt::format("entry '{}' has {} bytes at offset {}, past the end of the {}-byte "
                               "file (truncated?)",
                               entry.name, entry.compressed_size, entry.data_offset, file->size()));
    }
    archive.entries_.push_back(std::move(entry));
    status = unzGoToNextFile(zip.get());
  }
  if (status != UNZ_END_OF_LIST_OF_FILE) reject(name, "damaged central directory");
  return archive;
}

const ZipEntry* ZipArchive::find(std::string_view name) const {
  const auto found = index_.find(name);
  return found == index_.end() ? nullptr : &entries_[found->second];
}

std::shared_ptr<Storage> ZipArchive::read(const ZipEntry& entry) const {
  if (entry.stored) {
    return std::make_shared<Storage>(
        Storage{file_->bytes().data() + entry.data_offset, entry.size, file_});
  }
  auto inflated = std::make_shared<std::vector<std::byte>>(entry.size);
  Unzip zip(*file_);
  if (unzLocateFile(zip.get(), entry.name.c_str(), 1) != UNZ_OK ||
      unzOpenCurrentFile(zip.get()) != UNZ_OK) {
    reject(file_->name(), fmt::format("cannot open entry '{}'", entry.name));
  }
  std::size_t done = 0;
  while (done < inflated->size()) {
    const auto chunk =
        static_cast<unsigned>(std::min<std::size_t>(inflated->size() - done, 1U << 30));
    const int got = unzReadCurrentFile(zip.get(), inflated->data() + done, chunk);
    if (got <= 0) break;
    done += static_cast<std::size_t>(got);
  }
  const int closed = unzCloseCurrentFile(zip.get());
  if (done != inflated->size() || closed != UNZ_OK) {
    reject(file_->name(),
           fmt::format("entry '{}' is corrupt (inflated {} of {} bytes, CRC {})", entry.name, done,
                       inflated->size(), closed == UNZ_OK ? "ok" : "mismatch"));
  }
  return std::make_shared<Storage>(Storage{inflated->data(), inflated->size(), inflated});
}

std::string ZipArchive::read_text(const ZipEntry& entry) const {
  const auto storage = read(entry);
  return {reinterpret_cast<const char*>(storage->data), storage->nbytes};
}

}  // namespace torch2mlx
