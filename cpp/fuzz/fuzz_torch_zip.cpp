// libFuzzer target: torch.save archives (zip + data.pkl + storages) over arbitrary bytes.
#include <cstddef>
#include <cstdint>

#include "fuzz_util.h"
#include "torch2mlx/torch_zip.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace torch2mlx;
  for (const bool headers_only : {false, true}) {
    ReadOptions options;
    options.headers_only = headers_only;
    try {
      const Checkpoint checkpoint = read_torch_zip(fuzz::file_of(data, size, "fuzz.pt"), options);
      fuzz::check_checkpoint(checkpoint);
    } catch (const Error&) {
      return 0;
    }
  }
  return 0;
}
