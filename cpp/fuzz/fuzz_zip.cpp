// libFuzzer target: the zip reader (central directory, local headers, stored and deflated
// entries) over arbitrary bytes.
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "torch2mlx/zip_archive.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace torch2mlx;
  try {
    const ZipArchive archive = ZipArchive::open(fuzz::file_of(data, size, "fuzz.zip"));
    for (const ZipEntry& entry : archive.entries()) {
      if (archive.find(entry.name) != &entry) fuzz::broken("find() misses an entry", entry.name);
      try {
        const auto storage = archive.read(entry);
        if (storage->nbytes != entry.size) fuzz::broken("read() size differs", entry.name);
        if (storage->nbytes > 0) {
          const volatile std::byte* bytes = storage->data;
          static_cast<void>(bytes[0]);
          static_cast<void>(bytes[storage->nbytes - 1]);
        }
      } catch (const Error&) {
        // A damaged entry; the others may still be readable.
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
