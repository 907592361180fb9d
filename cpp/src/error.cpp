#include "torch2mlx/error.h"

#include <fmt/format.h>

namespace torch2mlx {

Error::Error(std::string_view component, std::string_view message)
    : std::runtime_error(fmt::format("[{}] {}", component, message)), component_(component) {}

void fail(std::string_view component, std::string_view message) { throw Error(component, message); }

}  // namespace torch2mlx
