// The code generator's tables agree with the layer registry: one module-type table.
#include <gtest/gtest.h>

#include "torch2mlx/codegen.h"
#include "torch2mlx/registry.h"

namespace torch2mlx {
namespace {

TEST(CodegenTables, EveryLeafLayerTypeIsARegistryEntry) {
  for (const std::string_view type : leaf_layer_types()) {
    EXPECT_NE(find_layer(type), nullptr) << type;
  }
  EXPECT_FALSE(leaf_layer_types().empty());
}

}  // namespace
}  // namespace torch2mlx
