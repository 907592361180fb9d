// The fusion passes of passes.h on the subgraphs that transformers' Llama writes out, and
// on near misses that must stay as they are.
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

// x * rsqrt(mean(x ** 2, -1, keepdim) + 1e-6) * w, as LlamaRMSNorm computes it, over x of
// `dtype` ([2, 4]); half-precision inputs go through float32 and back as in transformers.
Builder rms_norm_program(const std::string& dtype = "float32", std::int64_t mean_dim = -1) {
  Builder builder(meta({2, 4}, dtype));
  builder.input("w", meta({4}, dtype), InputKind::Parameter, "norm.weight");
  std::string x = "x";
  if (dtype != "float32") {
    builder.node("up", "aten._to_copy.default", {{"self", tensor("x")}}, meta({2, 4}));
    x = "up";
  }
  builder
      .node("pow", "aten.pow.Tensor_Scalar", {{"self", tensor(x)}, {"exponent", integer(2)}},
            meta({2, 4}))
      .node("mean", "aten.mean.dim",
            {{"self", tensor("pow")}, {"dim", integers({mean_dim})}, {"keepdim", flag(true)}},
            meta({2, 1}))
      .node("add", "aten.add.Tensor", {{"self", tensor("mean")}, {"other", number(1e-6)}},
            meta({2, 1}))
      .node("rsqrt", "aten.rsqrt.default", {{"self", tensor("add")}}, meta({2, 1}))
      .node("mul", "aten.mul.Tensor", {{"self", tensor(x)}, {"other", tensor("rsqrt")}},
            meta({2, 4}));
  std::string normed = "mul";
  if (dtype != "float32") {
    builder.node("down", "aten._to_copy.default", {{"self", tensor("mul")}}, meta({2, 4}, dtype));
    normed = "down";
  }
  builder.node("scaled", "aten.mul.Tensor", {{"self", tensor("w")}, {"other", tensor(normed)}},
               meta({2, 4}, dtype));
  return builder;
}

TEST(FuseRmsNorm, FusesLlamaRmsNormIntoOneNode) {
  ExportedProgram program = rms_norm_program().returning({"scaled"});
  EXPECT_EQ(fuse_rms_norm(program), 1U);
  eliminate_dead_code(program);
  ASSERT_EQ(targets(program), std::vector<std::string>{"aten.rms_norm.default"});
  const Node& norm = program.nodes[0];
  EXPECT_EQ(reads(norm, "input"), "x");
  EXPECT_EQ(reads(norm, "weight"), "w");
  EXPECT_EQ(norm.input("normalized_shape")->ints, std::vector<std::int64_t>{4});
  EXPECT_DOUBLE_EQ(norm.input("eps")->floats[0], 1e-6);
  // Named after what it computes now, and what read the last op reads the norm.
  EXPECT_EQ(norm.outputs[0].names[0], "rms_norm");
  EXPECT_EQ(program.outputs[0].value.names[0], "rms_norm");
  EXPECT_TRUE(program.tensors.contains("rms_norm"));
}

TEST(FuseRmsNorm, FusesTheFloat32RoundTripOfHalfPrecision) {
  ExportedProgram program = rms_norm_program("float16").returning({"scaled"});
  EXPECT_EQ(fuse_rms_norm(program), 1U);
  eliminate_dead_code(program);
  ASSERT_EQ(targets(program), std::vector<std::string>{"aten.rms_norm.default"});
  EXPECT_EQ(reads(program.nodes[0], "input"), "x");  // the float16 input itself
}

TEST(FuseRmsNorm, LeavesNearMissesAsTheyAre) {
  // Statistics over the first axis, not the normalised one.
  ExportedProgram other_axis = rms_norm_program("float32", 0).returning({"scaled"});
  EXPECT_EQ(fuse_rms_norm(other_axis), 0U);
  // An intermediate that something else reads (here the graph's outputs) must stay.
  ExportedProgram shared = rms_norm_program().returning({"scaled", "rsqrt"});
  EXPECT_EQ(fuse_rms_norm(shared), 0U);
}

// q [1, 2, 3, 4] (batch, heads, positions, head dim) rotated by tables that LlamaRotaryEmbedding
// computes from arange(3) and the buffer inv_freq, as apply_rotary_pos_emb applies them.
// Positions are arange(3), or arange(3) + past with `past` a symbolic size when `shifted`
// (a decode step after `past` cached positions).
Builder rope_program(const std::vector<float>& inverse_frequencies, bool shifted = false) {
  const auto half = static_cast<std::int64_t>(inverse_frequencies.size());
  const std::int64_t dims = 2 * half;
  Builder builder(meta({1, 2, 3, dims}));
  builder.input("inv_freq", meta({half}), InputKind::Buffer, "rotary.inv_freq");
  std::vector<std::byte> bytes(inverse_frequencies.size() * sizeof(float));
  std::memcpy(bytes.data(), inverse_frequencies.data(), bytes.size());
  builder.program.weights.push_back(
      {"rotary.inv_freq", make_owned_tensor(DType::F32, {half}, std::move(bytes))});
  builder.node("arange", "aten.arange.default", {{"end", integer(3)}}, meta({3}, "int64"));
  if (shifted) {
    Arg past;
    past.kind = ArgKind::Int;
    past.names = {"past"};
    builder.node("shifted", "aten.add.Tensor", {{"self", tensor("arange")}, {"other", past}},
                 meta({3}, "int64"));
  }
  builder
      .node("pos", "aten.unsqueeze.default",
            {{"self", tensor(shifted ? "shifted" : "arange")}, {"dim", integer(0)}},
            meta({1, 3}, "int64"))
      .node("pos3", "aten.unsqueeze.default", {{"self", tensor("pos")}, {"dim", integer(2)}},
            meta({1, 3, 1}, "int64"))
      .node("posf", "aten.to.dtype", {{"self", tensor("pos3")}}, meta({1, 3, 1}))
      .node("freqs", "aten.mul.Tensor", {{"self", tensor("posf")}, {"other", tensor("inv_freq")}},
            meta({1, 3, half}))
      .node("emb", "aten.cat.default",
            {{"tensors", tensors({"freqs", "freqs"})}, {"dim", integer(-1)}}, meta({1, 3, dims}))
      .node("cos", "aten.cos.default", {{"self", tensor("emb")}}, meta({1, 3, dims}))
      .node("sin", "aten.sin.default", {{"self", tensor("emb")}}, meta({1, 3, dims}))
      .node("cos4", "aten.unsqueeze.default", {{"self", tensor("cos")}, {"dim", integer(1)}},
            meta({1, 1, 3, dims}))
      .node("sin4", "aten.unsqueeze.default", {{"self", tensor("sin")}, {"dim", integer(1)}},
            meta({1, 1, 3, dims}))
      .node("x_cos", "aten.mul.Tensor", {{"self", tensor("x")}, {"other", tensor("cos4")}},
            meta({1, 2, 3, dims}))
      .node("x1", "aten.slice.Tensor",
            {{"self", tensor("x")},
             {"dim", integer(3)},
             {"start", integer(0)},
             {"end", integer(half)}},
            meta({1, 2, 3, half}))
      .node("x2", "aten.slice.Tensor",
            {{"self", tensor("x")},
             {"dim", integer(3)},
             {"start", integer(half)},
             {"end", integer(INT64_MAX)}},
            meta({1, 2, 3, half}))
      .node("neg", "aten.neg.default", {{"self", tensor("x2")}}, meta({1, 2, 3, half}))
      .node("rotated", "aten.cat.default",
            {{"tensors", tensors({"neg", "x1"})}, {"dim", integer(-1)}}, meta({1, 2, 3, dims}))
      .node("rot_sin", "aten.mul.Tensor", {{"self", tensor("rotated")}, {"other", tensor("sin4")}},
            meta({1, 2, 3, dims}))
      .node("embedded", "aten.add.Tensor",
            {{"self", tensor("x_cos")}, {"other", tensor("rot_sin")}}, meta({1, 2, 3, dims}));
  return builder;
}

TEST(FuseRope, FusesLlamaRotaryEmbeddingIntoMxFastRope) {
  ExportedProgram program = rope_program({1.0F, 0.01F}).returning({"embedded"});  // base 1e4
  EXPECT_EQ(fuse_rope(program), 1U);
  eliminate_dead_code(program);
  ASSERT_EQ(targets(program), std::vector<std::string>{"mlx.fast.rope"});
  const Node& rope = program.nodes[0];
  EXPECT_EQ(reads(rope, "input"), "x");
  EXPECT_EQ(rope.input("dims")->ints[0], 4);
  EXPECT_DOUBLE_EQ(rope.input("base")->floats[0], 10000.0);
  EXPECT_EQ(rope.input("offset")->ints[0], 0);
  EXPECT_EQ(rope.input("traditional")->ints[0], 0);
}

TEST(FuseRope, PositionsAfterACachedPrefixBecomeTheOffset) {
  ExportedProgram program = rope_program({1.0F, 0.01F}, true).returning({"embedded"});
  EXPECT_EQ(fuse_rope(program), 1U);
  eliminate_dead_code(program);
  ASSERT_EQ(targets(program), std::vector<std::string>{"mlx.fast.rope"});
  EXPECT_EQ(program.nodes[0].input("offset")->names, std::vector<std::string>{"past"});
}

TEST(FuseRope, LeavesOtherFrequencyTablesAsTheyAre) {
  // Scaled frequencies (as Llama 3's or YaRN's) are not base ** (-2i / d): mx.fast.rope's
  // base cannot express them, so the ops stay.
  ExportedProgram program = rope_program({1.0F, 0.1F, 0.01F, 0.0002F}).returning({"embedded"});
  EXPECT_EQ(fuse_rope(program), 0U);
}

// Attention of 4 query heads over 2 key/value heads repeated twice (transformers' repeat_kv).
Builder grouped_attention_program() {
  Builder builder(meta({1, 4, 3, 8}));
  builder.input("k", meta({1, 2, 3, 8})).input("v", meta({1, 2, 3, 8}));
  for (const std::string name : {"k", "v"}) {
    builder
        .node(name + "5", "aten.unsqueeze.default", {{"self", tensor(name)}, {"dim", integer(2)}},
              meta({1, 2, 1, 3, 8}))
        .node(name + "x", "aten.expand.default",
              {{"self", tensor(name + "5")}, {"size", integers({1, 2, 2, 3, 8})}},
              meta({1, 2, 2, 3, 8}))
        .node(name + "r", "aten.reshape.default",
              {{"self", tensor(name + "x")}, {"shape", integers({1, 4, 3, 8})}},
              meta({1, 4, 3, 8}));
  }
  builder.node("attn", "aten.scaled_dot_product_attention.default",
               {{"query", tensor("x")}, {"key", tensor("kr")}, {"value", tensor("vr")}},
               meta({1, 4, 3, 8}));
  return builder;
}

TEST(FuseGroupedQueryAttention, ReadsTheUnrepeatedKeysAndValues) {
  ExportedProgram program = grouped_attention_program().returning({"attn"});
  EXPECT_EQ(fuse_grouped_query_attention(program), 1U);
  eliminate_dead_code(program);
  ASSERT_EQ(targets(program),
            std::vector<std::string>{"aten.scaled_dot_product_attention.default"});
  const Node& attention = program.nodes[0];
  EXPECT_EQ(reads(attention, "key"), "k");
  EXPECT_EQ(reads(attention, "value"), "v");
  EXPECT_EQ(attention.input("enable_gqa")->ints[0], 1);
}

TEST(FuseGroupedQueryAttention, KeepsRepeatsThatOtherNodesRead) {
  ExportedProgram program = grouped_attention_program().returning({"attn", "kr"});
  EXPECT_EQ(fuse_grouped_query_attention(program), 0U);
}

}  // namespace
}  // namespace torch2mlx
