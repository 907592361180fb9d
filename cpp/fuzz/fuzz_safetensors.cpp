// libFuzzer target: the safetensors header parser and reader over arbitrary bytes.
#include <cstddef>
#include <cstdint>
#include <span>

#include "fuzz_util.h"
#include "torch2mlx/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace torch2mlx;
  try {
    (void)parse_safetensors_header(std::as_bytes(std::span(data, size)), "fuzz.safetensors");
  } catch (const Error&) {
    return 0;  // refused cleanly; the reader below must refuse it too
  }
  for (const bool headers_only : {false, true}) {
    ReadOptions options;
    options.headers_only = headers_only;
    const Checkpoint checkpoint =
        read_safetensors(fuzz::file_of(data, size, "fuzz.safetensors"), options);
    fuzz::check_checkpoint(checkpoint);
  }
  return 0;
}
