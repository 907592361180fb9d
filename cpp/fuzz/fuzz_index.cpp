// libFuzzer target: the Hugging Face sharded-checkpoint index (weight_map and metadata).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace torch2mlx;
  try {
    const ShardIndex index =
        parse_shard_index({reinterpret_cast<const char*>(data), size}, "fuzz.index.json");
    for (const auto& [shard, names] : index.shards) {
      if (shard.empty() || shard.find('/') != std::string::npos || names.empty()) {
        fuzz::broken("bad shard name accepted", shard);
      }
    }
  } catch (const Error&) {
  }
  return 0;
}
