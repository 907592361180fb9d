// Rewrites of generated Python: each on a small class body, printed.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "torch2mlx/code_rewrites.h"
#include "torch2mlx/python_ast.h"

namespace torch2mlx {
namespace {

using py::name;

// A class body: __init__ builds `self.layers` from `items`, __call__ runs `calls`.
std::vector<py::Stmt> body_of(std::vector<py::Expr> items, std::vector<py::Stmt> calls) {
  const py::Expr self = name("self");
  return {py::function("__init__", {{"self", {}}},
                       {py::assign(self.attr("layers"), py::list(std::move(items)))}),
          py::function("__call__", {{"self", {}}, {"x", {}}, {"mask", {}}}, std::move(calls))};
}

py::Stmt layer_call(const std::string& target, int index, const py::Expr& input) {
  return py::assign(name(target),
                    name("self").attr("layers")[py::integer(index)]({input, name("mask")}));
}

TEST(LoopOverLayers, ChainedIdenticalLayersBecomeALoop) {
  const py::Expr block = py::call("Block");
  const auto body = body_of(
      {block, block, block},
      {py::assign(name("h"), py::call("embed", {name("x")})), layer_call("h_1", 0, name("h")),
       py::comment("between"), layer_call("h_2", 1, name("h_1")), layer_call("h_3", 2, name("h_2")),
       py::return_({py::call("norm", {name("h_3")})})});
  EXPECT_EQ(py::print(loop_over_layers(body)),
            "def __init__(self):\n"
            "    self.layers = [Block() for _ in range(3)]\n"
            "\n\n"
            "def __call__(self, x, mask):\n"
            "    h = embed(x)\n"
            "    for layer in self.layers:\n"
            "        h = layer(h, mask)\n"
            "    return norm(h)\n");
}

TEST(LoopOverLayers, AnInputReadTwiceIsCopiedFirst) {
  const py::Expr block = py::call("Block");
  const auto body =
      body_of({block, block}, {layer_call("h", 0, name("x")), layer_call("h_1", 1, name("h")),
                               py::return_({name("h_1") + name("x")})});
  EXPECT_EQ(py::print({loop_over_layers(body)[1]}),
            "def __call__(self, x, mask):\n"
            "    h = x\n"
            "    for layer in self.layers:\n"
            "        h = layer(h, mask)\n"
            "    return h + x\n");
}

TEST(LoopOverLayers, TheInputTakesTheFirstCallsName) {
  const py::Expr block = py::call("Block");
  const auto body = body_of(
      {block, block}, {py::assign(name("embedding"), py::call("embed", {name("x")})),
                       layer_call("hidden", 0, name("embedding")),
                       layer_call("hidden_1", 1, name("hidden")), py::return_({name("hidden_1")})});
  EXPECT_EQ(py::print({loop_over_layers(body)[1]}),
            "def __call__(self, x, mask):\n"
            "    hidden = embed(x)\n"
            "    for layer in self.layers:\n"
            "        hidden = layer(hidden, mask)\n"
            "    return hidden\n");
}

TEST(LoopOverLayers, AParameterReadOnceRunsItself) {
  const py::Expr block = py::call("Block");
  const auto body = body_of(
      {block, block},
      {layer_call("h", 0, name("x")), layer_call("h_1", 1, name("h")), py::return_({name("h_1")})});
  EXPECT_EQ(py::print({loop_over_layers(body)[1]}),
            "def __call__(self, x, mask):\n"
            "    for layer in self.layers:\n"
            "        x = layer(x, mask)\n"
            "    return x\n");
}

TEST(LoopOverLayers, LeavesEverythingElse) {
  const py::Expr block = py::call("Block");
  const py::Expr other = py::call("Block", {py::integer(2)});
  // Items that differ; an intermediate value read twice; a call out of order; a list not
  // called as a chain.
  const std::vector<std::vector<py::Stmt>> bodies{
      body_of({block, other}, {layer_call("h", 0, name("x")), layer_call("h_1", 1, name("h")),
                               py::return_({name("h_1")})}),
      body_of({block, block}, {layer_call("h", 0, name("x")), layer_call("h_1", 1, name("h")),
                               py::return_({name("h_1") + name("h")})}),
      body_of({block, block}, {layer_call("h", 1, name("x")), layer_call("h_1", 0, name("h")),
                               py::return_({name("h_1")})}),
      body_of({block, block}, {layer_call("h", 0, name("x")), layer_call("h_1", 1, name("x")),
                               py::return_({name("h_1") + name("h")})}),
  };
  for (const auto& body : bodies) {
    EXPECT_EQ(py::print(loop_over_layers(body)), py::print(body));
  }
}

}  // namespace
}  // namespace torch2mlx
