// libFuzzer target: the restricted unpickler and flatten over arbitrary programs. Every
// persistent id resolves to one small storage, so tensor rebuilds are reached.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "fuzz_util.h"
#include "torch2mlx/pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace torch2mlx;
  // 64 bytes on the heap, so that AddressSanitizer sees any read past them.
  auto bytes = std::make_shared<std::vector<std::byte>>(64, std::byte{0x5a});
  const pickle::StorageLoader load_storage = [&](const pickle::StorageRef& /*ref*/) {
    return std::make_shared<Storage>(Storage{bytes->data(), bytes->size(), bytes});
  };
  try {
    const pickle::Unpickled unpickled =
        pickle::unpickle(std::as_bytes(std::span(data, size)), "fuzz.pkl", load_storage);
    Checkpoint checkpoint;
    pickle::flatten(*unpickled.root, "fuzz.pkl", {}, checkpoint.tensors, checkpoint.others);
    fuzz::check_checkpoint(checkpoint);
  } catch (const Error&) {
  }
  return 0;
}
