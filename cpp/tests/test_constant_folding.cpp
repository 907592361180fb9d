// fold_constants (passes.h): what is known before run time is evaluated, and what is not
// stays as it is.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "ir_builder.h"
#include "torch2mlx/graph.h"
#include "torch2mlx/passes.h"
#include "torch2mlx/tensor.h"

namespace torch2mlx {
namespace {

using namespace torch2mlx::testing;  // NOLINT(google-build-using-namespace)

Arg symbolic(const std::string& name) {
  Arg arg;
  arg.kind = ArgKind::Int;
  arg.names = {name};
  arg.ints = {0};
  return arg;
}

TEST(FoldConstants, EvaluatesArithmeticOnAStaticRangeIntoALiteral) {
  // x + (arange(4) * 2 + 1)[None]: the table is known before run time.
  ExportedProgram program =
      Builder(meta({2, 4}, "int64"))
          .node("range", "aten.arange.default", {{"end", integer(4)}}, meta({4}, "int64"))
          .node("doubled", "aten.mul.Tensor", {{"self", tensor("range")}, {"other", integer(2)}},
                meta({4}, "int64"))
          .node("odd", "aten.add.Tensor", {{"self", tensor("doubled")}, {"other", integer(1)}},
                meta({4}, "int64"))
          .node("row", "aten.unsqueeze.default", {{"self", tensor("odd")}, {"dim", integer(0)}},
                meta({1, 4}, "int64"))
          .node("y", "aten.add.Tensor", {{"self", tensor("x")}, {"other", tensor("row")}},
                meta({2, 4}, "int64"))
          .returning({"y"});
  EXPECT_GT(fold_constants(program), 0U);
  eliminate_dead_code(program);
  ASSERT_EQ(targets(program), (std::vector<std::string>{"mlx.array", "aten.add.Tensor"}));
  const Node& literal = program.nodes[0];
  EXPECT_EQ(literal.outputs[0].names[0], "row");  // the value the run-time node reads
  EXPECT_EQ(literal.input("values")->floats, (std::vector<double>{1, 3, 5, 7}));
  EXPECT_EQ(literal.input("shape")->ints, (std::vector<std::int64_t>{1, 4}));
}

TEST(FoldConstants, WritesAUniformValueAsAFill) {
  // ones([3]) * 0.5 > 0 is all True: one fill, whatever its size.
  ExportedProgram program =
      Builder(meta({3}, "bool"))
          .node("ones", "aten.ones.default", {{"size", integers({3})}}, meta({3}))
          .node("half", "aten.mul.Tensor", {{"self", tensor("ones")}, {"other", number(0.5)}},
                meta({3}))
          .node("positive", "aten.gt.Scalar", {{"self", tensor("half")}, {"other", integer(0)}},
                meta({3}, "bool"))
          .node("y", "aten.logical_xor.default",
                {{"self", tensor("x")}, {"other", tensor("positive")}}, meta({3}, "bool"))
          .returning({"y"});
  fold_constants(program);
  eliminate_dead_code(program);
  ASSERT_EQ(targets(program),
            (std::vector<std::string>{"aten.full.default", "aten.logical_xor.default"}));
  EXPECT_EQ(program.nodes[0].input("fill_value")->kind, ArgKind::Bool);
  EXPECT_EQ(program.nodes[0].input("fill_value")->ints[0], 1);
}

TEST(FoldConstants, RoundsFloat32AsTorchDoes) {
  // 0.1 meets a float32 tensor as float32(0.1); the product is rounded to float32.
  ExportedProgram program =
      Builder(meta({2}))
          .node("ones", "aten.ones.default", {{"size", integers({2})}}, meta({2}))
          .node("tenth", "aten.mul.Tensor", {{"self", tensor("ones")}, {"other", number(0.1)}},
                meta({2}))
          .node("y", "aten.add.Tensor", {{"self", tensor("x")}, {"other", tensor("tenth")}},
                meta({2}))
          .returning({"y"});
  fold_constants(program);
  ASSERT_EQ(program.nodes[1].target, "aten.full.default");
  EXPECT_EQ(program.nodes[1].input("fill_value")->floats[0],
            static_cast<double>(static_cast<float>(0.1)));
}

TEST(FoldConstants, ReadsSmallLiftedConstants) {
  // torch.tensor([2, 3]) in forward, lifted by export, then negated.
  Builder builder(meta({2}, "int64"));
  builder.input("c", meta({2}, "int64"), InputKind::Constant, "lifted_tensor_0");
  std::vector<std::byte> bytes(2 * sizeof(std::int64_t));
  const std::int64_t values[] = {2, 3};
  std::memcpy(bytes.data(), values, bytes.size());
  builder.program.weights.push_back(
      {"lifted_tensor_0", make_owned_tensor(DType::I64, {2}, std::move(bytes))});
  ExportedProgram program =
      builder.node("minus", "aten.neg.default", {{"self", tensor("c")}}, meta({2}, "int64"))
          .node("y", "aten.mul.Tensor", {{"self", tensor("x")}, {"other", tensor("minus")}},
                meta({2}, "int64"))
          .returning({"y"});
  fold_constants(program);
  ASSERT_EQ(program.nodes[0].target, "mlx.array");
  EXPECT_EQ(program.nodes[0].input("values")->floats, (std::vector<double>{-2, -3}));
}

TEST(FoldConstants, StaticSizesBecomeLiteralArguments) {
  // x.shape[1] // 2 where dim 1 is static (4): the reshape reads 2.
  ExportedProgram program =
      Builder(meta({2, 4}))
          .node("", "aten.sym_size.int", {{"self", tensor("x")}, {"dim", integer(1)}})
          .node("", "_operator.floordiv", {{"a", symbolic("width")}, {"b", integer(2)}})
          .node("y", "aten.reshape.default",
                {{"self", tensor("x")}, {"shape", integers({2, 2, 2})}}, meta({2, 2, 2}))
          .returning({"y"});
  program.nodes[0].outputs = {symbolic("width")};
  program.nodes[1].outputs = {symbolic("half")};
  program.nodes[2].inputs[1].arg.names[2] = "half";
  program.nodes[2].inputs[1].arg.ints[2] = 0;
  EXPECT_GT(fold_constants(program), 0U);
  eliminate_dead_code(program);
  ASSERT_EQ(targets(program), std::vector<std::string>{"aten.reshape.default"});
  const Arg* shape = program.nodes[0].input("shape");
  EXPECT_EQ(shape->ints, (std::vector<std::int64_t>{2, 2, 2}));
  EXPECT_EQ(shape->names, (std::vector<std::string>{"", "", ""}));
}

TEST(FoldConstants, DropsAnOperandThatAConstantIdentityLeavesUnchanged) {
  // transformers' causal mask: new_ones([], bool) & mask is the mask.
  ExportedProgram program =
      Builder(meta({1, 1, 3, 3}, "bool"))
          .node("yes", "aten.new_ones.default", {{"self", tensor("x")}, {"size", integers({})}},
                meta({}, "bool"))
          .node("y", "aten.__and__.Tensor", {{"self", tensor("yes")}, {"other", tensor("x")}},
                meta({1, 1, 3, 3}, "bool"))
          .returning({"y"});
  fold_constants(program);
  eliminate_dead_code(program);
  EXPECT_TRUE(program.nodes.empty());
  EXPECT_EQ(program.outputs[0].value.names[0], "x");
}

TEST(FoldConstants, LeavesWhatIsNotKnownAsItIs) {
  // A range of dynamic length, a random draw, a half-precision fill, an identity that would
  // broadcast, and bitwise_and on integers (not a logical and).
  Builder builder(meta({2, 3}, "int64"));
  builder.program.tensors["x"].shape[0] = {2, "s0"};
  ExportedProgram program =
      builder.node("range", "aten.arange.default", {{"end", symbolic("s0")}}, meta({2}, "int64"))
          .node("noise", "aten.rand.default", {{"size", integers({3})}}, meta({3}))
          .node("halfs", "aten.ones.default", {{"size", integers({3})}}, meta({3}, "float16"))
          .node("ones", "aten.ones.default", {{"size", integers({2, 3})}}, meta({2, 3}, "int64"))
          .node("wide", "aten.mul.Tensor", {{"self", tensor("range")}, {"other", tensor("ones")}},
                meta({2, 3}, "int64"))
          .node("masked", "aten.bitwise_and.Tensor",
                {{"self", tensor("x")}, {"other", tensor("ones")}}, meta({2, 3}, "int64"))
          .returning({"wide", "masked", "noise", "halfs"});
  const std::vector<std::string> before = targets(program);
  EXPECT_EQ(fold_constants(program), 0U);
  EXPECT_EQ(targets(program), before);
}

}  // namespace
}  // namespace torch2mlx
