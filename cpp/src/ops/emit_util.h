// Small pieces the op tables share: string literals as template arguments (so that a table
// row like {"aten.exp.default", unary<"mx.exp">} stays one line), and operand rendering.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

#include "call.h"

namespace torch2mlx {

/// A string literal usable as a template argument.
template <std::size_t N>
struct Text {
  char value[N]{};
  constexpr Text(const char (&text)[N]) { std::copy_n(text, N, value); }  // NOLINT
  [[nodiscard]] constexpr std::string_view view() const { return {value, N - 1}; }
};

/// A tensor or scalar argument as an expression.
inline py::Expr operand(Call& call, std::string_view name) { return call.literal(name); }

/// The first input, whatever torch calls it ("self" for most ops, "input" for some).
inline std::string first_name(const Call& call) { return call.node().inputs.at(0).name; }

}  // namespace torch2mlx
