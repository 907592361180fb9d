// Errors raised by the core. Every message starts with the component in brackets and
// names the file, tensor or key at fault, e.g. "[safetensors] model.safetensors: header
// length 9e18 exceeds file size 4096".
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace torch2mlx {

/// The one exception type of the core; what() is "[component] message".
class Error : public std::runtime_error {
 public:
  Error(std::string_view component, std::string_view message);
  /// The component in brackets, e.g. "pickle".
  [[nodiscard]] const std::string& component() const { return component_; }

 private:
  std::string component_;
};

/// Throws Error(component, message).
[[noreturn]] void fail(std::string_view component, std::string_view message);

}  // namespace torch2mlx
