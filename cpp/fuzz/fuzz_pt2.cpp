// libFuzzer target: torch.export archives (.pt2, both layouts) over arbitrary bytes, and the
// ExportedProgram JSON parser over the same bytes taken as JSON text.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_util.h"
#include "torch2mlx/graph.h"
#include "torch2mlx/pt2.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace torch2mlx;
  try {
    (void)parse_exported_program({reinterpret_cast<const char*>(data), size}, "fuzz.json");
  } catch (const Error&) {
  }
  for (const bool headers_only : {false, true}) {
    ReadOptions options;
    options.headers_only = headers_only;
    try {
      const ExportedProgram program = read_pt2(fuzz::file_of(data, size, "fuzz.pt2"), options);
      for (const auto& named : program.weights) fuzz::check_tensor(named);
    } catch (const Error&) {
      return 0;
    }
  }
  return 0;
}
