// Helper functions that generated model.py files define when they use them. Each family
// file (elementwise.cpp, ...) lists its own; this joins them. A helper is plain MLX, short,
// and named after what it computes; the code generator emits the ones a model needs,
// sorted by name, so that the output is byte-identical from run to run.
#include <fmt/format.h>

#include <map>
#include <string>

#include "call.h"
#include "torch2mlx/error.h"

namespace torch2mlx {

std::optional<std::string_view> helper_source(std::string_view name) {
  static const auto* table = [] {
    auto* result = new std::map<std::string, std::string_view, std::less<>>();
    for (const auto& family : {elementwise_helpers(), reduction_helpers(), shape_helpers(),
                               conv_pool_helpers(), norm_attention_helpers(), indexing_helpers(),
                               creation_helpers(), symbolic_helpers(), recurrent_helpers()}) {
      for (const Helper& helper : family) {
        if (!result->emplace(std::string(helper.name), helper.source).second) {
          fail("ops", fmt::format("internal: helper {} is defined twice", helper.name));
        }
      }
    }
    return result;
  }();
  const auto found = table->find(name);
  if (found == table->end()) return std::nullopt;
  return found->second;
}

}  // namespace torch2mlx
