// Zip archives as torch.save and torch.export write them (zip64 included), read from a
// mapped file; the format is written down in zip_archive.cpp. Stored (uncompressed) entries
// are returned as views of the mapping, deflated ones are inflated and CRC-checked.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "torch2mlx/checkpoint.h"
#include "torch2mlx/mapped_file.h"
#include "torch2mlx/tensor.h"

namespace torch2mlx {

/// One member of the archive, with its data validated to lie inside the file.
struct ZipEntry {
  std::string name;
  std::uint64_t data_offset = 0;  // absolute offset of the (possibly compressed) data
  std::uint64_t compressed_size = 0;
  std::uint64_t size = 0;
  bool stored = true;     // false when deflated
  std::uint32_t crc = 0;  // checked when the entry is inflated
};

/// The central directory of a zip file, and access to its members.
class ZipArchive {
 public:
  /// Reads and validates the central directory. Refuses duplicate names, absolute paths
  /// and ".." components, and entries whose data would lie outside the file.
  static ZipArchive open(const std::shared_ptr<MappedFile>& file, const ReadLimits& limits = {});

  [[nodiscard]] const std::vector<ZipEntry>& entries() const { return entries_; }
  /// The entry called `name`, or nullptr.
  [[nodiscard]] const ZipEntry* find(std::string_view name) const;
  /// The entry's bytes: a view of the mapping when stored, an inflated copy otherwise.
  [[nodiscard]] std::shared_ptr<Storage> read(const ZipEntry& entry) const;
  /// The entry's bytes as a string (small text members such as "byteorder").
  [[nodiscard]] std::string read_text(const ZipEntry& entry) const;
  [[nodiscard]] const MappedFile& file() const { return *file_; }

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<ZipEntry> entries_;
  std::map<std::string, std::size_t, std::less<>> index_;  // name -> position in entries_
};

}  // namespace torch2mlx
