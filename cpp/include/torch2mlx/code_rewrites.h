#pragma once
// Rewrites of generated Python (python_ast.h) that make model.py read as a hand-written MLX
// model: each takes statements and returns them rewritten, and has its own tests
// (cpp/tests/test_code_rewrites.cpp).

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "torch2mlx/python_ast.h"

namespace torch2mlx {

/// A class body (`__init__` first, then `__call__`) with each list of identical layers that
/// `__call__` runs one after another, each on the output of the one before (a transformer's
/// blocks), built as `[Block() for _ in range(n)]` and called in a loop:
/// `for layer in self.layers: h = layer(h, mask)`. Anything else is left as it is.
[[nodiscard]] std::vector<py::Stmt> loop_over_layers(std::vector<py::Stmt> body);

}  // namespace torch2mlx
