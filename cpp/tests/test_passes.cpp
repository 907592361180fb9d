// The passes of passes.h, each on small programs built here, and the pass manager's dump.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "ir_builder.h"
#include "torch2mlx/error.h"
#include "torch2mlx/graph.h"
#include "torch2mlx/passes.h"

namespace torch2mlx {
namespace {

using namespace torch2mlx::testing;  // NOLINT(google-build-using-namespace)

TEST(EliminateNoops, DropsIdentitiesAndRewiresTheirUses) {
  ExportedProgram program =
      Builder()
          .node("alias", "aten.alias.default", {{"self", tensor("x")}})
          .node("add", "aten.add.Tensor", {{"self", tensor("alias")}, {"other", number(0)}})
          .node("mul", "aten.mul.Tensor", {{"self", tensor("add")}, {"other", number(1)}})
          .node("view", "aten.view.default", {{"self", tensor("mul")}, {"size", integers({2, 3})}})
          .node("relu", "aten.relu.default", {{"self", tensor("view")}})
          .node("clone", "aten.clone.default", {{"self", tensor("relu")}})
          .node("contiguous", "aten.contiguous.default", {{"self", tensor("clone")}})
          .returning({"contiguous"});
  EXPECT_EQ(eliminate_noops(program), 6U);
  EXPECT_EQ(targets(program), std::vector<std::string>{"aten.relu.default"});
  EXPECT_EQ(reads(program.nodes[0], "self"), "x");
  EXPECT_EQ(program.outputs[0].value.names[0], "relu");
}

TEST(EliminateNoops, KeepsWhatChangesTheValue) {
  ExportedProgram program =
      Builder()
          // + 1, * 2: not identities.
          .node("add", "aten.add.Tensor", {{"self", tensor("x")}, {"other", number(1)}})
          .node("mul", "aten.mul.Tensor", {{"self", tensor("add")}, {"other", number(2)}})
          // A reshape that changes the shape, a broadcast, a cast to another dtype.
          .node("view", "aten.view.default", {{"self", tensor("mul")}, {"size", integers({3, 2})}},
                meta({3, 2}))
          .node("expand", "aten.expand.default",
                {{"self", tensor("view")}, {"size", integers({2, 3, 2})}}, meta({2, 3, 2}))
          .node("cast", "aten._to_copy.default", {{"self", tensor("expand")}},
                meta({2, 3, 2}, "float16"))
          // + 0 that promotes float16 to float32 changes the dtype: kept.
          .node("add0", "aten.add.Tensor", {{"self", tensor("cast")}, {"other", number(0)}},
                meta({2, 3, 2}, "float32"))
          .returning({"add0"});
  EXPECT_EQ(eliminate_noops(program), 0U);
  EXPECT_EQ(program.nodes.size(), 6U);
}

TEST(EliminateNoops, ConcatenationSkipsLegacyEmptyInputsAsTorchDoes) {
  // A cache that starts as torch.tensor([]) and grows by cat along dim -2.
  ExportedProgram program =
      Builder()
          .input("empty", meta({0}), InputKind::Constant, "empty")
          .node("cat", "aten.cat.default",
                {{"tensors", tensors({"empty", "x"})}, {"dim", integer(-2)}})
          .node("relu", "aten.relu.default", {{"self", tensor("cat")}})
          .node("cat_1", "aten.cat.default",
                {{"tensors", tensors({"empty", "x", "relu"})}, {"dim", integer(0)}}, meta({4, 3}))
          .returning({"cat_1"});
  EXPECT_EQ(eliminate_noops(program), 3U);  // two inputs dropped, one single-input cat gone
  ASSERT_EQ(targets(program), (std::vector<std::string>{"aten.relu.default", "aten.cat.default"}));
  EXPECT_EQ(reads(program.nodes[0], "self"), "x");
  EXPECT_EQ(program.nodes[1].inputs[0].arg.names, (std::vector<std::string>{"x", "relu"}));
}

TEST(EliminateDeadCode, DropsWhatNoOutputReads) {
  ExportedProgram program =
      Builder()
          .node("unused", "aten.exp.default", {{"self", tensor("x")}})
          .node("unused_too", "aten.neg.default", {{"self", tensor("unused")}})
          .node("relu", "aten.relu.default", {{"self", tensor("x")}})
          .returning({"relu"});
  // An assert computes nothing but stays: it is there for its effect.
  Node check;
  check.target = "aten._assert_scalar.default";
  program.nodes.insert(program.nodes.begin(), check);
  EXPECT_EQ(eliminate_dead_code(program), 2U);
  EXPECT_EQ(targets(program),
            (std::vector<std::string>{"aten._assert_scalar.default", "aten.relu.default"}));
}

TEST(EliminateCommonSubexpressions, MergesTheSameOpOnTheSameInputs) {
  ExportedProgram program =
      Builder()
          .node("exp", "aten.exp.default", {{"self", tensor("x")}}, meta({2, 3}), "m0")
          .node("exp_1", "aten.exp.default", {{"self", tensor("x")}}, meta({2, 3}), "m0")
          .node("add", "aten.add.Tensor", {{"self", tensor("exp")}, {"other", tensor("exp_1")}},
                meta({2, 3}), "m0")
          .returning({"add"});
  EXPECT_EQ(eliminate_common_subexpressions(program), 1U);
  ASSERT_EQ(program.nodes.size(), 2U);
  EXPECT_EQ(reads(program.nodes[1], "other"), "exp");
}

TEST(EliminateCommonSubexpressions, KeepsRandomOpsAndOtherModuleCalls) {
  ExportedProgram program =
      Builder()
          .node("exp", "aten.exp.default", {{"self", tensor("x")}}, meta({2, 3}), "m0")
          .node("exp_1", "aten.exp.default", {{"self", tensor("x")}}, meta({2, 3}), "m1")
          .node("r", "aten.rand_like.default", {{"self", tensor("x")}})
          .node("r_1", "aten.rand_like.default", {{"self", tensor("x")}})
          .returning({"exp", "exp_1", "r", "r_1"});
  EXPECT_EQ(eliminate_common_subexpressions(program), 0U);
}

// `length + 1` computed in one module call and read in two others.
ExportedProgram shared_size() {
  Builder builder;
  builder.program.inputs.push_back({InputKind::UserInput, "length", "", true, {}, false});
  Node add;
  add.name = "add";
  add.target = "_operator.add";
  Arg length;
  length.kind = ArgKind::Int;
  length.names = {"length"};
  add.inputs = {{"a", length, false}, {"b", integer(1), false}};
  Arg out;
  out.kind = ArgKind::Int;
  out.names = {"add"};
  add.outputs = {out};
  add.module_stack = {{"m0", "layers.0", "pkg.Layer"}};
  builder.program.nodes.push_back(add);
  Arg end = length;
  end.names = {"add"};
  for (const char* call : {"m0", "m1", "m1", "m2"}) {
    builder.node("slice_" + std::to_string(builder.program.nodes.size()), "aten.slice.Tensor",
                 {{"self", tensor("x")}, {"end", end}}, meta({2, 3}), call);
  }
  return builder.returning({"slice_1", "slice_2", "slice_3", "slice_4"});
}

TEST(RematerializeSizes, EachModuleCallComputesTheSizeItReads) {
  ExportedProgram program = shared_size();
  EXPECT_EQ(rematerialize_sizes(program), 3U);  // the reads in m1 (twice) and m2
  ASSERT_EQ(program.nodes.size(), 7U);
  EXPECT_EQ(program.nodes[2].target, "_operator.add");
  EXPECT_EQ(program.nodes[2].module_stack.back().key, "m1");
  const std::string m1_size = program.nodes[2].outputs[0].names[0];
  EXPECT_NE(m1_size, "add");
  EXPECT_EQ(program.nodes[3].input("end")->names[0], m1_size);
  EXPECT_EQ(program.nodes[4].input("end")->names[0], m1_size);
  EXPECT_EQ(program.nodes[5].module_stack.back().key, "m2");
  EXPECT_EQ(program.nodes[6].input("end")->names[0], program.nodes[5].outputs[0].names[0]);
  EXPECT_EQ(program.nodes[1].input("end")->names[0], "add");  // m0's own read is unchanged
}

TEST(RematerializeSizes, LeavesTensorOpsShared) {
  ExportedProgram program =
      Builder()
          .node("exp", "aten.exp.default", {{"self", tensor("x")}}, meta({2, 3}), "m0")
          .node("neg", "aten.neg.default", {{"self", tensor("exp")}}, meta({2, 3}), "m1")
          .returning({"neg"});
  EXPECT_EQ(rematerialize_sizes(program), 0U);
  EXPECT_EQ(program.nodes.size(), 2U);
}

TEST(PassManager, DumpsTheIrAfterTheNamedPass) {
  ExportedProgram program = Builder()
                                .node("alias", "aten.alias.default", {{"self", tensor("x")}})
                                .node("relu", "aten.relu.default", {{"self", tensor("alias")}})
                                .returning({"relu"});
  std::string before;
  std::string after;
  ExportedProgram copy = program;
  run_passes(copy, default_passes(), "input", [&](const std::string& text) { before = text; });
  run_passes(program, default_passes(), "noops", [&](const std::string& text) { after = text; });
  EXPECT_NE(before.find("%alias = aten.alias.default(self=%x) : float32[2, 3]"), std::string::npos)
      << before;
  EXPECT_EQ(after.find("aten.alias"), std::string::npos) << after;
  EXPECT_NE(after.find("%relu = aten.relu.default(self=%x)"), std::string::npos) << after;
  EXPECT_NE(after.find("output %relu  (user output)"), std::string::npos) << after;
  EXPECT_NE(after.find("input  %x : float32[2, 3]  (user input)"), std::string::npos) << after;
}

TEST(PassManager, AnUnknownPassNameListsThePasses) {
  ExportedProgram program = Builder().returning({"x"});
  try {
    run_passes(program, default_passes(), "fusion-of-everything", [](const std::string&) {});
    FAIL() << "no error";
  } catch (const Error& error) {
    EXPECT_NE(std::string(error.what())
                  .find("input, noops, cse, fuse-layer-norm, fuse-rms-norm, fuse-rope, "
                        "fuse-activations, fuse-gqa, fold-constants, rematerialize-sizes, "
                        "dead-code"),
              std::string::npos)
        << error.what();
  }
}

TEST(PassManager, ABugInAPassIsACoreErrorNamingThePass) {
  // A std::exception out of a pass (a missing map entry) reaches the user as an Error that
  // names the pass and says it is ours, never as a bare "map::at".
  const Pass buggy{"buggy",
                   [](ExportedProgram&) -> std::size_t { throw std::out_of_range("map::at"); }};
  ExportedProgram program = Builder().returning({"x"});
  try {
    run_passes(program, {buggy}, "", {});
    FAIL() << "no error";
  } catch (const Error& error) {
    const std::string message = error.what();
    EXPECT_EQ(message.rfind("[passes] internal error (map::at) in pass 'buggy'", 0), 0U) << message;
    EXPECT_NE(message.find("torch2mlx bug"), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace torch2mlx
