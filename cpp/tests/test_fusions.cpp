// The fusion passes of passes.h on the subgraphs that transformers' Llama writes out, and
// on near misses that must stay as they are.
#include <gtest/gtest.h>

#include <cmath>
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

// How an interleaved rotary embedding is written: GPT-J's rotate_every_two with tables
// repeated per pair, or the halves rotated and stacked back.
enum class Interleaving : std::uint8_t { EveryTwo, Stacked };

// x [1, 2, 3, 4] rotated pair by pair by cos and sin of arange(3) * inv_freq ([3, 2]).
// `swapped` writes the rotation the wrong way round (a near miss).
Builder interleaved_rope_program(Interleaving form, const std::vector<float>& inverse_frequencies,
                                 bool swapped = false) {
  constexpr std::int64_t kHalf = 2;
  constexpr std::int64_t kDims = 4;
  Builder builder(meta({1, 2, 3, kDims}));
  builder.input("inv_freq", meta({kHalf}), InputKind::Buffer, "rotary.inv_freq");
  std::vector<std::byte> bytes(inverse_frequencies.size() * sizeof(float));
  std::memcpy(bytes.data(), inverse_frequencies.data(), bytes.size());
  builder.program.weights.push_back(
      {"rotary.inv_freq", make_owned_tensor(DType::F32, {kHalf}, std::move(bytes))});
  const auto half_slice = [&](const std::string& out, std::int64_t start) {
    builder.node(out, "aten.slice.Tensor",
                 {{"self", tensor("x")},
                  {"dim", integer(3)},
                  {"start", integer(start)},
                  {"end", integer(INT64_MAX)},
                  {"step", integer(2)}},
                 meta({1, 2, 3, kHalf}));
  };
  const auto multiply = [&](const std::string& out, const std::string& a, const std::string& b,
                            const std::vector<std::int64_t>& shape) {
    builder.node(out, "aten.mul.Tensor", {{"self", tensor(a)}, {"other", tensor(b)}}, meta(shape));
  };
  builder.node("arange", "aten.arange.default", {{"end", integer(3)}}, meta({3}, "int64"))
      .node("pos", "aten.unsqueeze.default", {{"self", tensor("arange")}, {"dim", integer(1)}},
            meta({3, 1}, "int64"))
      .node("posf", "aten.to.dtype", {{"self", tensor("pos")}}, meta({3, 1}));
  multiply("freqs", "posf", "inv_freq", {3, kHalf});
  builder.node("cos", "aten.cos.default", {{"self", tensor("freqs")}}, meta({3, kHalf}))
      .node("sin", "aten.sin.default", {{"self", tensor("freqs")}}, meta({3, kHalf}));
  half_slice("even", 0);
  half_slice("odd", 1);
  const auto interleave = [&](const std::string& out, const std::string& a, const std::string& b) {
    builder
        .node("stacked_" + out, "aten.stack.default",
              {{"tensors", tensors({a, b})}, {"dim", integer(-1)}}, meta({1, 2, 3, kHalf, 2}))
        .node(out, "aten.flatten.using_ints",
              {{"self", tensor("stacked_" + out)}, {"start_dim", integer(-2)}},
              meta({1, 2, 3, kDims}));
  };
  if (form == Interleaving::EveryTwo) {
    for (const std::string table : {"cos", "sin"}) {
      builder.node(table + "2", "aten.repeat_interleave.self_int",
                   {{"self", tensor(table)}, {"repeats", integer(2)}, {"dim", integer(-1)}},
                   meta({3, kDims}));
    }
    builder.node("neg", "aten.neg.default", {{"self", tensor(swapped ? "even" : "odd")}},
                 meta({1, 2, 3, kHalf}));
    interleave("rotated", "neg", swapped ? "odd" : "even");
    multiply("x_cos", "x", "cos2", {1, 2, 3, kDims});
    multiply("rot_sin", "rotated", "sin2", {1, 2, 3, kDims});
    builder.node("embedded", "aten.add.Tensor",
                 {{"self", tensor("x_cos")}, {"other", tensor("rot_sin")}}, meta({1, 2, 3, kDims}));
    return builder;
  }
  multiply("a", "even", "cos", {1, 2, 3, kHalf});
  multiply("b", "odd", swapped ? "cos" : "sin", {1, 2, 3, kHalf});
  multiply("c", "even", "sin", {1, 2, 3, kHalf});
  multiply("d", "cos", "odd", {1, 2, 3, kHalf});  // factors in either order
  builder
      .node("first", "aten.sub.Tensor", {{"self", tensor("a")}, {"other", tensor("b")}},
            meta({1, 2, 3, kHalf}))
      .node("second", "aten.add.Tensor", {{"self", tensor("d")}, {"other", tensor("c")}},
            meta({1, 2, 3, kHalf}));
  interleave("embedded", "first", "second");
  return builder;
}

TEST(FuseRope, FusesInterleavedRotationsIntoTraditionalRope) {
  for (const Interleaving form : {Interleaving::EveryTwo, Interleaving::Stacked}) {
    ExportedProgram program = interleaved_rope_program(form, {1.0F, 0.01F}).returning({"embedded"});
    EXPECT_EQ(fuse_rope(program), 1U);
    eliminate_dead_code(program);
    ASSERT_EQ(targets(program), std::vector<std::string>{"mlx.fast.rope"});
    const Node& rope = program.nodes[0];
    EXPECT_EQ(reads(rope, "input"), "x");
    EXPECT_EQ(rope.input("traditional")->ints[0], 1);
    EXPECT_EQ(rope.input("dims")->ints[0], 4);
    EXPECT_DOUBLE_EQ(rope.input("base")->floats[0], 10000.0);
    EXPECT_EQ(program.outputs[0].value.names[0], "rope");
  }
}

TEST(FuseRope, LeavesInterleavedNearMissesAsTheyAre) {
  for (const Interleaving form : {Interleaving::EveryTwo, Interleaving::Stacked}) {
    // Rotated the other way, or with one table where the other belongs.
    ExportedProgram swapped =
        interleaved_rope_program(form, {1.0F, 0.01F}, true).returning({"embedded"});
    EXPECT_EQ(fuse_rope(swapped), 0U);
    // Frequencies scaled down (linear rope scaling) are not base ** (-2i / d).
    ExportedProgram scaled = interleaved_rope_program(form, {0.5F, 0.005F}).returning({"embedded"});
    EXPECT_EQ(fuse_rope(scaled), 0U);
    // A half that something else reads.
    ExportedProgram shared =
        interleaved_rope_program(form, {1.0F, 0.01F}).returning({"embedded", "even"});
    EXPECT_EQ(fuse_rope(shared), 0U);
  }
}

// GPT-J's embed_positions: `rows` positions of angles p * base ** (-2i / 4), i < 2, their
// sines then their cosines; `function` replaces the sine (a near miss when not std::sin), and
// `cos_base` gives the cosines another base.
std::vector<float> sinusoid_table(std::int64_t rows, double base, double (*function)(double),
                                  double cos_base) {
  // float32 angles, as torch computes the table.
  const auto angle = [](std::int64_t p, double b, std::int64_t i) {
    const auto frequency = static_cast<float>(std::pow(b, -2.0 * static_cast<double>(i) / 4));
    return static_cast<double>(static_cast<float>(p) * frequency);
  };
  std::vector<float> table;
  for (std::int64_t p = 0; p < rows; ++p) {
    for (std::int64_t i = 0; i < 2; ++i)
      table.push_back(static_cast<float>(function(angle(p, base, i))));
    for (std::int64_t i = 0; i < 2; ++i) {
      table.push_back(static_cast<float>(std::cos(angle(p, cos_base, i))));
    }
  }
  return table;
}

// GPT-J's rotation of x [1, 3, 2, 4] ([batch, length, heads, dims], heads after length): the
// tables are embed_positions[arange(3)[None]] split in sin and cos, [1, 3, 1, 2] repeated per
// pair. `positions` is "arange", or "ids" for position ids the user passes.
Builder gathered_rope_program(const std::vector<float>& table, const std::string& positions) {
  constexpr std::int64_t kRows = 16;
  Builder builder(meta({1, 3, 2, 4}));
  builder.input("embed_positions", meta({kRows, 4}), InputKind::Buffer, "rotary.embed_positions");
  builder.input("ids", meta({1, 3}, "int64"));
  std::vector<std::byte> bytes(table.size() * sizeof(float));
  std::memcpy(bytes.data(), table.data(), bytes.size());
  builder.program.weights.push_back(
      {"rotary.embed_positions", make_owned_tensor(DType::F32, {kRows, 4}, std::move(bytes))});
  builder.node("arange", "aten.arange.default", {{"end", integer(3)}}, meta({3}, "int64"))
      .node("arange2", "aten.unsqueeze.default", {{"self", tensor("arange")}, {"dim", integer(0)}},
            meta({1, 3}, "int64"))
      .node("sincos", "aten.index.Tensor",
            {{"self", tensor("embed_positions")},
             {"indices", tensors({positions == "ids" ? "ids" : "arange2"})}},
            meta({1, 3, 4}))
      .node("split", "aten.split.Tensor",
            {{"self", tensor("sincos")}, {"split_size", integer(2)}, {"dim", integer(-1)}});
  builder.program.nodes.back().outputs = {tensors({"sin", "cos"})};
  builder.program.tensors.erase("split");
  builder.program.tensors["sin"] = meta({1, 3, 2});
  builder.program.tensors["cos"] = meta({1, 3, 2});
  for (const std::string table_name : {"sin", "cos"}) {
    builder
        .node(table_name + "4", "aten.unsqueeze.default",
              {{"self", tensor(table_name)}, {"dim", integer(2)}}, meta({1, 3, 1, 2}))
        .node(table_name + "2", "aten.repeat_interleave.self_int",
              {{"self", tensor(table_name + "4")}, {"repeats", integer(2)}, {"dim", integer(3)}},
              meta({1, 3, 1, 4}));
  }
  for (const auto& [out, start] : {std::make_pair("even", 0), std::make_pair("odd", 1)}) {
    builder.node(out, "aten.slice.Tensor",
                 {{"self", tensor("x")},
                  {"dim", integer(3)},
                  {"start", integer(start)},
                  {"end", integer(INT64_MAX)},
                  {"step", integer(2)}},
                 meta({1, 3, 2, 2}));
  }
  builder.node("neg", "aten.neg.default", {{"self", tensor("odd")}}, meta({1, 3, 2, 2}))
      .node("stacked", "aten.stack.default",
            {{"tensors", tensors({"neg", "even"})}, {"dim", integer(-1)}}, meta({1, 3, 2, 2, 2}))
      .node("rotated", "aten.flatten.using_ints",
            {{"self", tensor("stacked")}, {"start_dim", integer(-2)}}, meta({1, 3, 2, 4}))
      .node("x_cos", "aten.mul.Tensor", {{"self", tensor("x")}, {"other", tensor("cos2")}},
            meta({1, 3, 2, 4}))
      .node("rot_sin", "aten.mul.Tensor", {{"self", tensor("rotated")}, {"other", tensor("sin2")}},
            meta({1, 3, 2, 4}))
      .node("embedded", "aten.add.Tensor",
            {{"self", tensor("x_cos")}, {"other", tensor("rot_sin")}}, meta({1, 3, 2, 4}));
  return builder;
}

double sine(double angle) { return std::sin(angle); }
double tangent(double angle) { return std::tanh(angle); }

TEST(FuseRope, FusesGptJTablesGatheredFromASinusoidBuffer) {
  for (const double base : {10000.0, 500.0}) {
    ExportedProgram program = gathered_rope_program(sinusoid_table(16, base, sine, base), "arange")
                                  .returning({"embedded"});
    EXPECT_EQ(fuse_rope(program), 1U);
    eliminate_dead_code(program);
    ASSERT_EQ(targets(program), std::vector<std::string>{"mlx.fast.rope"});
    const Node& rope = program.nodes[0];
    EXPECT_EQ(reads(rope, "input"), "x");
    EXPECT_EQ(rope.input("traditional")->ints[0], 1);
    EXPECT_EQ(rope.input("dims")->ints[0], 4);
    EXPECT_DOUBLE_EQ(rope.input("base")->floats[0], base);
    EXPECT_EQ(rope.input("offset")->ints[0], 0);
    EXPECT_EQ(rope.input("axis")->ints[0], -3);  // positions run along x's axis -3
  }
}

TEST(FuseRope, LeavesGatheredNearMissesAsTheyAre) {
  // Cosines of another base than the sines: no one base describes the table.
  ExportedProgram two_bases =
      gathered_rope_program(sinusoid_table(16, 10000.0, sine, 5000.0), "arange")
          .returning({"embedded"});
  EXPECT_EQ(fuse_rope(two_bases), 0U);
  // Not sines: tanh of the angles.
  ExportedProgram not_sine =
      gathered_rope_program(sinusoid_table(16, 10000.0, tangent, 10000.0), "arange")
          .returning({"embedded"});
  EXPECT_EQ(fuse_rope(not_sine), 0U);
  // One value off by 1e-3 (a table someone edited).
  std::vector<float> edited = sinusoid_table(16, 10000.0, sine, 10000.0);
  edited[4 * 9 + 1] += 1e-3F;
  ExportedProgram off = gathered_rope_program(edited, "arange").returning({"embedded"});
  EXPECT_EQ(fuse_rope(off), 0U);
  // Positions the user passes: no offset says where they start.
  ExportedProgram user_positions =
      gathered_rope_program(sinusoid_table(16, 10000.0, sine, 10000.0), "ids")
          .returning({"embedded"});
  EXPECT_EQ(fuse_rope(user_positions), 0U);
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

// How a written-out layer norm computes its variance.
enum class Variance : std::uint8_t { MeanOfSquares, Var, VarMean, Unbiased };

// (x - mean(x)) / sqrt(var + 1e-5) * w + b over x [2, 3, 3] with C = 4 channels at `axis`
// (ConvNeXt's channels-first norm along 1, a transformer's along 2), the weight unsqueezed
// to broadcast.
Builder layer_norm_program(std::int64_t axis, Variance variance, bool affine = true) {
  constexpr std::int64_t kChannels = 4;
  std::vector<std::int64_t> shape = {2, 3, 3};
  shape[static_cast<std::size_t>(axis)] = kChannels;
  std::vector<std::int64_t> kept = shape;
  kept[static_cast<std::size_t>(axis)] = 1;
  Builder builder(meta(shape));
  builder.input("w", meta({kChannels}), InputKind::Parameter, "norm.weight")
      .input("b", meta({kChannels}), InputKind::Parameter, "norm.bias");
  const auto statistic = [&](const std::string& out, const std::string& target,
                             const std::string& in, bool unbiased) {
    std::vector<NamedArg> inputs = {{"self", tensor(in)}, {"dim", integers({axis})}};
    if (target == "aten.var.correction") inputs.push_back({"correction", integer(unbiased)});
    inputs.push_back({"keepdim", flag(true)});
    builder.node(out, target, inputs, meta(kept));
  };
  if (variance == Variance::VarMean) {
    builder.node("", "aten.var_mean.correction",
                 {{"self", tensor("x")},
                  {"dim", integers({axis})},
                  {"correction", integer(0)},
                  {"keepdim", flag(true)}},
                 meta(kept));
    Node& joint = builder.program.nodes.back();
    joint.outputs = {tensor("var"), tensor("mean")};
    builder.program.tensors.erase("");
    builder.program.tensors["var"] = meta(kept);
    builder.program.tensors["mean"] = meta(kept);
  } else {
    statistic("mean", "aten.mean.dim", "x", false);
  }
  builder.node("centered", "aten.sub.Tensor", {{"self", tensor("x")}, {"other", tensor("mean")}},
               meta(shape));
  if (variance == Variance::MeanOfSquares) {
    builder.node("squares", "aten.pow.Tensor_Scalar",
                 {{"self", tensor("centered")}, {"exponent", integer(2)}}, meta(shape));
    statistic("var", "aten.mean.dim", "squares", false);
  } else if (variance != Variance::VarMean) {
    statistic("var", "aten.var.correction", "x", variance == Variance::Unbiased);
  }
  builder
      .node("shifted", "aten.add.Tensor", {{"self", tensor("var")}, {"other", number(1e-5)}},
            meta(kept))
      .node("std", "aten.sqrt.default", {{"self", tensor("shifted")}}, meta(kept))
      .node("normed", "aten.div.Tensor", {{"self", tensor("centered")}, {"other", tensor("std")}},
            meta(shape));
  if (!affine) return builder;
  std::vector<std::int64_t> channel_shape(shape.size() - static_cast<std::size_t>(axis), 1);
  channel_shape[0] = kChannels;
  for (const std::string name : {"w", "b"}) {
    std::string value = name;
    for (std::size_t rank = 1; rank < channel_shape.size(); ++rank) {
      const std::vector<std::int64_t> partial(channel_shape.begin(),
                                              channel_shape.begin() + static_cast<long>(rank) + 1);
      builder.node(value + "u", "aten.unsqueeze.default",
                   {{"self", tensor(value)}, {"dim", integer(static_cast<std::int64_t>(rank))}},
                   meta(partial));
      value += "u";
    }
    if (name == "w") {
      builder.node("scaled", "aten.mul.Tensor",
                   {{"self", tensor(value)}, {"other", tensor("normed")}}, meta(shape));
    } else {
      builder.node("out", "aten.add.Tensor", {{"self", tensor("scaled")}, {"other", tensor(value)}},
                   meta(shape));
    }
  }
  return builder;
}

TEST(FuseLayerNorm, FusesATransformersLayerNormIntoAtenLayerNorm) {
  ExportedProgram program = layer_norm_program(2, Variance::MeanOfSquares).returning({"out"});
  EXPECT_EQ(fuse_layer_norm(program), 1U);
  eliminate_dead_code(program);
  ASSERT_EQ(targets(program), std::vector<std::string>{"aten.layer_norm.default"});
  const Node& norm = program.nodes[0];
  EXPECT_EQ(reads(norm, "input"), "x");
  EXPECT_EQ(reads(norm, "weight"), "w");
  EXPECT_EQ(reads(norm, "bias"), "b");
  EXPECT_EQ(norm.input("normalized_shape")->ints, std::vector<std::int64_t>{4});
  EXPECT_DOUBLE_EQ(norm.input("eps")->floats[0], 1e-5);
  EXPECT_EQ(program.outputs[0].value.names[0], "layer_norm");
}

TEST(FuseLayerNorm, FusesAChannelsFirstNormAlongItsAxis) {
  // ConvNeXt's LayerNorm(data_format="channels_first"), its weight as w[:, None].
  for (const Variance variance : {Variance::MeanOfSquares, Variance::Var, Variance::VarMean}) {
    ExportedProgram program = layer_norm_program(1, variance).returning({"out"});
    EXPECT_EQ(fuse_layer_norm(program), 1U);
    eliminate_dead_code(program);
    ASSERT_EQ(targets(program), std::vector<std::string>{"mlx.fast.layer_norm"});
    const Node& norm = program.nodes[0];
    EXPECT_EQ(norm.input("axis")->ints[0], 1);
    EXPECT_EQ(reads(norm, "weight"), "w");  // the 1-d parameter, not its unsqueezed view
    EXPECT_EQ(reads(norm, "bias"), "b");
  }
}

TEST(FuseLayerNorm, FusesANormWithoutWeightOrBias) {
  ExportedProgram program = layer_norm_program(2, Variance::Var, false).returning({"normed"});
  EXPECT_EQ(fuse_layer_norm(program), 1U);
  eliminate_dead_code(program);
  ASSERT_EQ(targets(program), std::vector<std::string>{"aten.layer_norm.default"});
  EXPECT_EQ(program.nodes[0].input("weight")->kind, ArgKind::None);
  EXPECT_EQ(program.nodes[0].input("bias")->kind, ArgKind::None);
}

TEST(FuseLayerNorm, LeavesNearMissesAsTheyAre) {
  // The unbiased variance (x.var() by default) is not a layer norm's.
  ExportedProgram unbiased = layer_norm_program(2, Variance::Unbiased).returning({"out"});
  EXPECT_EQ(fuse_layer_norm(unbiased), 0U);
  // Centred values that something else reads must stay.
  ExportedProgram shared =
      layer_norm_program(2, Variance::MeanOfSquares).returning({"out", "centered"});
  EXPECT_EQ(fuse_layer_norm(shared), 0U);
  // Statistics along one axis, centred along another.
  ExportedProgram mixed = layer_norm_program(2, Variance::MeanOfSquares).returning({"out"});
  for (Node& node : mixed.nodes) {
    if (node.name == "mean") node.inputs[1].arg = integers({1});
  }
  EXPECT_EQ(fuse_layer_norm(mixed), 0U);
}

TEST(FuseLayerNorm, NativeLayerNormWithUnreadStatisticsBecomesLayerNorm) {
  Builder builder(meta({2, 4}));
  builder.input("w", meta({4}), InputKind::Parameter, "norm.weight");
  builder.node("y", "aten.native_layer_norm.default",
               {{"input", tensor("x")},
                {"normalized_shape", integers({4})},
                {"weight", tensor("w")},
                {"bias", Arg{}},
                {"eps", number(1e-5)}},
               meta({2, 4}));
  builder.program.nodes.back().outputs = {tensor("y"), tensor("mean"), tensor("rstd")};
  builder.program.tensors["mean"] = meta({2, 1});
  builder.program.tensors["rstd"] = meta({2, 1});
  ExportedProgram program = builder.returning({"y"});
  EXPECT_EQ(fuse_layer_norm(program), 1U);
  ASSERT_EQ(targets(program), std::vector<std::string>{"aten.layer_norm.default"});
  EXPECT_EQ(program.nodes[0].outputs.size(), 1U);
  // When training statistics are read, the op stays.
  ExportedProgram statistics = builder.returning({"y", "rstd"});
  EXPECT_EQ(fuse_layer_norm(statistics), 0U);
}

// Activations as model code writes them over x [2, 3]: each a list of (output, op, inputs).
Builder gelu_program(bool tanh_form) {
  Builder builder;
  builder.node("half", "aten.mul.Tensor", {{"self", tensor("x")}, {"other", number(0.5)}});
  if (tanh_form) {
    // GPT-2's NewGELU: 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x ** 3))).
    builder
        .node("cube", "aten.pow.Tensor_Scalar", {{"self", tensor("x")}, {"exponent", number(3.0)}})
        .node("cubic", "aten.mul.Tensor", {{"self", tensor("cube")}, {"other", number(0.044715)}})
        .node("inner", "aten.add.Tensor", {{"self", tensor("x")}, {"other", tensor("cubic")}})
        .node("scaled", "aten.mul.Tensor",
              {{"self", tensor("inner")}, {"other", number(0.7978845608028654)}})
        .node("curve", "aten.tanh.default", {{"self", tensor("scaled")}});
  } else {
    // 0.5 * x * (1 + erf(x / sqrt(2))).
    builder
        .node("scaled", "aten.div.Tensor",
              {{"self", tensor("x")}, {"other", number(1.4142135623730951)}})
        .node("curve", "aten.erf.default", {{"self", tensor("scaled")}});
  }
  builder.node("bracket", "aten.add.Tensor", {{"self", tensor("curve")}, {"other", integer(1)}})
      .node("gelu_out", "aten.mul.Tensor",
            {{"self", tensor("half")}, {"other", tensor("bracket")}});
  return builder;
}

TEST(FuseActivations, FusesExactGeluIntoAtenGelu) {
  ExportedProgram program = gelu_program(false).returning({"gelu_out"});
  EXPECT_EQ(fuse_activations(program), 1U);
  eliminate_dead_code(program);
  ASSERT_EQ(targets(program), std::vector<std::string>{"aten.gelu.default"});
  EXPECT_EQ(reads(program.nodes[0], "self"), "x");
  EXPECT_EQ(program.nodes[0].input("approximate")->strings[0], "none");
  EXPECT_EQ(program.outputs[0].value.names[0], "gelu");
}

TEST(FuseActivations, FusesGpt2NewGeluIntoTheTanhApproximation) {
  ExportedProgram program = gelu_program(true).returning({"gelu_out"});
  EXPECT_EQ(fuse_activations(program), 1U);
  eliminate_dead_code(program);
  ASSERT_EQ(targets(program), std::vector<std::string>{"aten.gelu.default"});
  EXPECT_EQ(program.nodes[0].input("approximate")->strings[0], "tanh");
}

TEST(FuseActivations, FusesXTimesSigmoidXIntoSilu) {
  ExportedProgram program =
      Builder()
          .node("gate", "aten.sigmoid.default", {{"self", tensor("x")}})
          .node("y", "aten.mul.Tensor", {{"self", tensor("gate")}, {"other", tensor("x")}})
          .returning({"y"});
  EXPECT_EQ(fuse_activations(program), 1U);
  eliminate_dead_code(program);
  ASSERT_EQ(targets(program), std::vector<std::string>{"aten.silu.default"});
  EXPECT_EQ(reads(program.nodes[0], "self"), "x");
}

TEST(FuseActivations, LeavesNearMissesAsTheyAre) {
  // Another coefficient: x * (1 + erf(x / sqrt(2))) is twice GELU.
  ExportedProgram doubled = gelu_program(false).returning({"gelu_out"});
  doubled.nodes[0].inputs[1].arg = number(1.0);
  EXPECT_EQ(fuse_activations(doubled), 0U);
  // erf of another scale.
  ExportedProgram scaled = gelu_program(false).returning({"gelu_out"});
  scaled.nodes[1].inputs[1].arg = number(2.0);
  EXPECT_EQ(fuse_activations(scaled), 0U);
  // An intermediate read elsewhere.
  ExportedProgram shared = gelu_program(true).returning({"gelu_out", "curve"});
  EXPECT_EQ(fuse_activations(shared), 0U);
  // The sigmoid of another value: a gate (GLU), not SiLU.
  ExportedProgram gate =
      Builder()
          .input("g", meta({2, 3}))
          .node("gate", "aten.sigmoid.default", {{"self", tensor("g")}})
          .node("y", "aten.mul.Tensor", {{"self", tensor("gate")}, {"other", tensor("x")}})
          .returning({"y"});
  EXPECT_EQ(fuse_activations(gate), 0U);
}

}  // namespace
}  // namespace torch2mlx
