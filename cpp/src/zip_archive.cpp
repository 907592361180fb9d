// The zip format as torch.save and torch.export write it, written down (APPNOTE.TXT):
//
//   [local header + data] ...  central directory  [zip64 end record + locator]  end record
//
//   end record        "PK\5\6", counts, cd size (u32), cd offset (u32), comment length (u16)
//   zip64 locator     "PK\6\7" 20 bytes before the end record: offset of the zip64 end record
//   zip64 end record  "PK\6\6": entry count (u64), cd size (u64), cd offset (u64)
//   central header    "PK\1\2" 46 bytes: flags, method, crc, sizes (u32), name/extra/comment
//                     lengths, local header offset (u32); a value 0xFFFFFFFF is replaced, in
//                     order, by the u64s of the zip64 extra field (id 0x0001)
//   local header      "PK\3\4" 30 bytes + name + extra; the data follows it
//
// Every offset and length is checked against the file size before it is used. (We parse it
// ourselves: Debian's minizip 1.1 compares zip64 markers with (unsigned long)-1, which on
// 64-bit Linux never matches, so it cannot read archives larger than 4 GB.)
#include "torch2mlx/zip_archive.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>

#include "torch2mlx/error.h"

namespace torch2mlx {
namespace {

constexpr std::string_view kComponent = "zip";
constexpr std::uint32_t kEndSignature = 0x06054b50;
constexpr std::uint32_t kZip64EndSignature = 0x06064b50;
constexpr std::uint32_t kZip64LocatorSignature = 0x07064b50;
constexpr std::uint32_t kCentralSignature = 0x02014b50;
constexpr std::uint32_t kLocalSignature = 0x04034b50;
constexpr std::size_t kEndSize = 22;
constexpr std::size_t kLocatorSize = 20;
constexpr std::size_t kZip64EndSize = 56;
constexpr std::size_t kCentralSize = 46;
constexpr std::size_t kLocalSize = 30;
constexpr std::uint32_t kMarker32 = 0xFFFFFFFF;
// Deflate cannot expand data by more than about 1032:1; a larger claim is a bomb.
constexpr std::uint64_t kMaxDeflateRatio = 1032;
// The first buffer a deflated member inflates into, before it doubles as data arrives: a few
// times the compressed size (data.pkl deflates about 3:1), at least 64 KiB, at most 64 MiB.
constexpr std::uint64_t kInitialInflate = std::uint64_t{64} << 10;
constexpr std::uint64_t kMaxInitialInflate = std::uint64_t{64} << 20;

// Refuses the file with a message that already says what to do.
[[noreturn]] void refuse(std::string_view file, std::string_view message) {
  fail(kComponent, fmt::format("{}: {}", file, message));
}

// Refuses a damaged file: the message says what is wrong, the hint what to do.
[[noreturn]] void reject(std::string_view file, std::string_view message) {
  refuse(file,
         fmt::format("{}; the file is truncated or damaged: download or save it again", message));
}

// torch.save and torch.export never write these; nothing in the file can be trusted.
constexpr std::string_view kHostile =
    "torch.save never writes this; do not use the file, get it again from a trusted source";

// Little-endian reads from a bounds-checked window of the file.
class Reader {
 public:
  Reader(std::span<const std::byte> bytes, std::string_view file) : bytes_(bytes), file_(file) {}

  [[nodiscard]] std::uint64_t read(std::uint64_t offset, std::size_t width,
                                   std::string_view what) const {
    if (offset > bytes_.size() || width > bytes_.size() - offset) {
      reject(file_, fmt::format("{} at byte {} lies past the end of the {}-byte file (truncated?)",
                                what, offset, bytes_.size()));
    }
    std::uint64_t value = 0;
    for (std::size_t i = width; i-- > 0;) {
      value = (value << 8) | std::to_integer<std::uint64_t>(bytes_[offset + i]);
    }
    return value;
  }
  [[nodiscard]] std::string_view text(std::uint64_t offset, std::size_t length,
                                      std::string_view what) const {
    (void)read(offset, 0, what);
    if (length > bytes_.size() - offset)
      reject(file_, fmt::format("{} runs past the end of the file", what));
    return {reinterpret_cast<const char*>(bytes_.data() + offset), length};
  }
  [[nodiscard]] std::size_t size() const { return bytes_.size(); }

 private:
  std::span<const std::byte> bytes_;
  std::string_view file_;
};

struct Directory {
  std::uint64_t entries = 0;
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
};

Directory find_directory(const Reader& reader, std::string_view file) {
  if (reader.size() < kEndSize) reject(file, "too short to be a zip archive: not a zip archive");
  // The end record sits in the last 22 + 65535 (comment) bytes; search backwards.
  const std::uint64_t lowest =
      reader.size() > kEndSize + 0xFFFF ? reader.size() - kEndSize - 0xFFFF : 0;
  std::uint64_t end = reader.size() - kEndSize;
  while (reader.read(end, 4, "end record") != kEndSignature) {
    if (end == lowest) reject(file, "no end-of-central-directory record: not a zip archive");
    --end;
  }
  Directory directory{reader.read(end + 10, 2, "entry count"),
                      reader.read(end + 16, 4, "directory offset"),
                      reader.read(end + 12, 4, "directory size")};
  const bool zip64 =
      directory.entries == 0xFFFF || directory.offset == kMarker32 || directory.size == kMarker32;
  if (zip64) {
    if (end < kLocatorSize ||
        reader.read(end - kLocatorSize, 4, "zip64 locator") != kZip64LocatorSignature) {
      reject(file, "zip64 end record is announced but its locator is missing");
    }
    const std::uint64_t record = reader.read(end - kLocatorSize + 8, 8, "zip64 end offset");
    if (reader.read(record, 4, "zip64 end record") != kZip64EndSignature) {
      reject(file, fmt::format("no zip64 end record at byte {}", record));
    }
    (void)reader.read(record, kZip64EndSize, "zip64 end record");
    directory = {reader.read(record + 32, 8, "entry count"),
                 reader.read(record + 48, 8, "directory offset"),
                 reader.read(record + 40, 8, "directory size")};
  }
  if (directory.offset > reader.size() || directory.size > reader.size() - directory.offset) {
    reject(file, fmt::format("central directory ({} bytes at {}) lies outside the {}-byte file",
                             directory.size, directory.offset, reader.size()));
  }
  // Each entry needs at least 46 bytes, which bounds the count before anything is reserved.
  if (directory.entries > directory.size / kCentralSize) {
    reject(file, fmt::format("directory claims {} entries in {} bytes", directory.entries,
                             directory.size));
  }
  return directory;
}

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

// Replaces 0xFFFFFFFF sizes and offset by the u64s of the zip64 extra field, in order.
void apply_zip64_extra(const Reader& reader, std::uint64_t extra, std::uint64_t extra_end,
                       ZipEntry& entry, std::uint64_t& local, std::string_view file) {
  while (extra + 4 <= extra_end) {
    const auto id = reader.read(extra, 2, "extra field");
    const auto length = reader.read(extra + 2, 2, "extra field");
    if (extra + 4 + length > extra_end)
      reject(file, fmt::format("entry '{}' has a damaged extra field", entry.name));
    if (id == 0x0001) {
      std::uint64_t cursor = extra + 4;
      auto take = [&](std::uint64_t& value) {
        if (value != kMarker32) return;
        if (cursor + 8 > extra + 4 + length)
          reject(file, fmt::format("entry '{}' has a short zip64 field", entry.name));
        value = reader.read(cursor, 8, "zip64 field");
        cursor += 8;
      };
      take(entry.size);
      take(entry.compressed_size);
      take(local);
      return;
    }
    extra += 4 + length;
  }
}

}  // namespace

ZipArchive ZipArchive::open(const std::shared_ptr<MappedFile>& file, const ReadLimits& limits) {
  const std::string& name = file->name();
  const Reader reader(file->bytes(), name);
  // The scan touches one local header per entry, spread over the whole file. (A refused
  // archive keeps the Random hint; nobody reads it further.)
  file->advise(MappedFile::Access::Random);
  const Directory directory = find_directory(reader, name);
  if (directory.entries > limits.max_zip_entries) {
    refuse(name, fmt::format("archive declares {} entries, over the limit of {}; {}",
                             directory.entries, limits.max_zip_entries, kHostile));
  }
  ZipArchive archive;
  archive.file_ = file;
  archive.entries_.reserve(directory.entries);
  std::uint64_t inflated_total = 0;  // declared by the deflated entries so far
  std::uint64_t cursor = directory.offset;
  const std::uint64_t directory_end = directory.offset + directory.size;
  for (std::uint64_t index = 0; index < directory.entries; ++index) {
    if (cursor + kCentralSize > directory_end ||
        reader.read(cursor, 4, "central header") != kCentralSignature) {
      reject(name, fmt::format("central directory entry {} is damaged", index));
    }
    const auto flags = reader.read(cursor + 8, 2, "flags");
    const auto method = reader.read(cursor + 10, 2, "method");
    ZipEntry entry;
    entry.crc = static_cast<std::uint32_t>(reader.read(cursor + 16, 4, "crc"));
    entry.compressed_size = reader.read(cursor + 20, 4, "compressed size");
    entry.size = reader.read(cursor + 24, 4, "size");
    const auto name_length = reader.read(cursor + 28, 2, "name length");
    const auto extra_length = reader.read(cursor + 30, 2, "extra length");
    const auto comment_length = reader.read(cursor + 32, 2, "comment length");
    std::uint64_t local = reader.read(cursor + 42, 4, "local header offset");
    const std::uint64_t next = cursor + kCentralSize + name_length + extra_length + comment_length;
    if (next > directory_end)
      reject(name, fmt::format("central directory entry {} runs past the directory", index));
    entry.name = std::string(reader.text(cursor + kCentralSize, name_length, "entry name"));
    apply_zip64_extra(reader, cursor + kCentralSize + name_length,
                      cursor + kCentralSize + name_length + extra_length, entry, local, name);
    cursor = next;

    if (is_unsafe_name(entry.name)) {
      refuse(name, fmt::format("entry name '{}' is absolute or climbs out with '..'; {}",
                               entry.name, kHostile));
    }
    if (!archive.index_.emplace(entry.name, archive.entries_.size()).second) {
      refuse(name, fmt::format("entry '{}' appears twice, so the archive is ambiguous; {}",
                               entry.name, kHostile));
    }
    if ((flags & 1U) != 0) {
      refuse(name, fmt::format("entry '{}' is encrypted; decrypt the archive and save it again "
                               "with torch.save",
                               entry.name));
    }
    if (method != 0 && method != Z_DEFLATED) {
      refuse(name, fmt::format("entry '{}' uses compression method {}; only stored and deflated "
                               "entries are read: load the file in torch and save it again "
                               "with torch.save",
                               entry.name, method));
    }
    entry.stored = method == 0;
    if (entry.stored && entry.compressed_size != entry.size) {
      reject(name, fmt::format("stored entry '{}' claims {} bytes but occupies {}", entry.name,
                               entry.size, entry.compressed_size));
    }
    if (!entry.stored && entry.size / kMaxDeflateRatio > entry.compressed_size) {
      refuse(name, fmt::format("entry '{}' claims to inflate {} bytes to {}, beyond what deflate "
                               "can do (a zip bomb?); {}",
                               entry.name, entry.compressed_size, entry.size, kHostile));
    }
    // The local header repeats the name; its own lengths place the data.
    if (reader.read(local, 4, fmt::format("local header of '{}'", entry.name)) != kLocalSignature) {
      reject(name, fmt::format("local header of entry '{}' is damaged", entry.name));
    }
    // Without a data descriptor (flag bit 3) the local header repeats method, CRC and sizes;
    // a disagreement means one of the two headers lies.
    const auto local_flags = reader.read(local + 6, 2, "local flags");
    const auto local_method = reader.read(local + 8, 2, "local method");
    const auto local_compressed = reader.read(local + 18, 4, "local compressed size");
    const auto local_size = reader.read(local + 22, 4, "local size");
    const bool described_later = (local_flags & 8U) != 0;
    auto size_agrees = [](std::uint64_t local_value, std::uint64_t central) {
      return local_value == kMarker32 || local_value == central;
    };
    if (local_method != method ||
        (!described_later && (reader.read(local + 14, 4, "local crc") != entry.crc ||
                              !size_agrees(local_compressed, entry.compressed_size) ||
                              !size_agrees(local_size, entry.size)))) {
      reject(name, fmt::format("local header of entry '{}' is damaged: it disagrees with the "
                               "central directory",
                               entry.name));
    }
    const auto local_name = reader.read(local + 26, 2, "local name length");
    const auto local_extra = reader.read(local + 28, 2, "local extra length");
    if (reader.text(local + kLocalSize, local_name, "local name") != entry.name) {
      reject(name, fmt::format("local header of entry '{}' names another file", entry.name));
    }
    entry.data_offset = local + kLocalSize + local_name + local_extra;
    if (entry.data_offset > file->size() ||
        entry.compressed_size > file->size() - entry.data_offset) {
      reject(name, fmt::format("entry '{}' has {} bytes at offset {}, past the end of the {}-byte "
                               "file (truncated?)",
                               entry.name, entry.compressed_size, entry.data_offset, file->size()));
    }
    // Refused here, before anything is inflated: many entries (their data may even overlap)
    // could each claim the most deflate allows.
    if (!entry.stored) {
      if (entry.size > limits.max_inflated_bytes - inflated_total) {
        refuse(name,
               fmt::format("deflated entries inflate to more than the limit of {} bytes "
                           "(entry '{}' adds {} to {}): a zip bomb? Checkpoints store "
                           "tensors uncompressed; re-save a genuine one with torch.save",
                           limits.max_inflated_bytes, entry.name, entry.size, inflated_total));
      }
      inflated_total += entry.size;
    }
    archive.entries_.push_back(std::move(entry));
  }
  file->advise(MappedFile::Access::Normal);
  return archive;
}

const ZipEntry* ZipArchive::find(std::string_view name) const {
  const auto found = index_.find(name);
  return found == index_.end() ? nullptr : &entries_[found->second];
}

std::shared_ptr<Storage> ZipArchive::read(const ZipEntry& entry) const {
  if (entry.stored) {
    return std::make_shared<Storage>(Storage{file_->bytes().data() + entry.data_offset, entry.size,
                                             file_, file_->is_mapped() ? file_.get() : nullptr});
  }
  // Raw deflate (no zlib header), inflated in chunks that fit zlib's 32-bit counters, into a
  // buffer that grows with what actually comes out: the directory's size is only a claim, and
  // a member claiming a gigabyte that holds a few kilobytes must cost a few kilobytes. The
  // buffer never grows past the claim, which open() held to the deflate ratio and to the
  // archive's total (ReadLimits::max_inflated_bytes).
  auto inflated = std::make_shared<std::vector<std::byte>>();
  inflated->resize(std::min(
      {entry.size, std::max(kInitialInflate, 4 * entry.compressed_size), kMaxInitialInflate}));
  z_stream stream{};
  if (inflateInit2(&stream, -MAX_WBITS) != Z_OK)
    refuse(file_->name(), "cannot start inflating (out of memory?)");
  const std::byte* input = file_->bytes().data() + entry.data_offset;
  std::uint64_t consumed = 0;
  std::uint64_t produced = 0;
  // Once the declared size is reached (at once for an empty entry, whose vector may have no
  // data pointer, which zlib refuses), one spare byte lets the stream end, or catches one
  // that inflates to more than it declared.
  std::byte spare{};
  int status = Z_OK;
  while (status == Z_OK && produced <= entry.size) {
    if (produced == inflated->size() && produced < entry.size) {
      inflated->resize(std::min(entry.size, 2 * inflated->size()));
    }
    const bool room = produced < entry.size;
    const auto in_chunk =
        static_cast<uInt>(std::min<std::uint64_t>(entry.compressed_size - consumed, 1U << 30));
    const auto out_chunk =
        room ? static_cast<uInt>(std::min<std::uint64_t>(inflated->size() - produced, 1U << 30))
             : 1U;
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(input + consumed));
    stream.avail_in = in_chunk;
    stream.next_out = reinterpret_cast<Bytef*>(room ? inflated->data() + produced : &spare);
    stream.avail_out = out_chunk;
    status = inflate(&stream, Z_NO_FLUSH);
    consumed += in_chunk - stream.avail_in;
    produced += out_chunk - stream.avail_out;
    if (status == Z_OK && in_chunk == stream.avail_in && out_chunk == stream.avail_out) break;
  }
  inflateEnd(&stream);
  if (status != Z_STREAM_END || produced != entry.size) {
    refuse(file_->name(),
           fmt::format("entry '{}' is corrupt: its data inflates to {}{} bytes where the directory "
                       "declares {}; the file is damaged, download or save it again",
                       entry.name, produced > entry.size ? "more than " : "",
                       std::min(produced, entry.size), entry.size));
  }
  uLong checksum = crc32(0L, nullptr, 0);
  for (std::uint64_t done = 0; done < produced;) {
    const auto chunk = static_cast<uInt>(std::min<std::uint64_t>(produced - done, 1U << 30));
    checksum = crc32(checksum, reinterpret_cast<const Bytef*>(inflated->data() + done), chunk);
    done += chunk;
  }
  if (checksum != entry.crc) {
    refuse(file_->name(),
           fmt::format(
               "entry '{}' fails its CRC check: the file is damaged, download or save it again",
               entry.name));
  }
  return std::make_shared<Storage>(Storage{inflated->data(), inflated->size(), inflated});
}

std::string ZipArchive::read_text(const ZipEntry& entry) const {
  const auto storage = read(entry);
  return {reinterpret_cast<const char*>(storage->data), storage->nbytes};
}

}  // namespace torch2mlx
