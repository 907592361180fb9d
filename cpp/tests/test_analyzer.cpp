// The analyzer's graph rules on small programs built here: op coverage, custom kernels,
// mutation that aliases, custom objects, quantizable parameters, and the user's frame.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "torch2mlx/analyzer.h"
#include "torch2mlx/graph.h"

namespace torch2mlx {
namespace {

Arg tensor(const std::string& name) {
  Arg arg;
  arg.kind = ArgKind::Tensor;
  arg.names = {name};
  return arg;
}

TensorMeta meta(const std::vector<std::int64_t>& shape, std::string dtype = "float32") {
  TensorMeta result;
  result.dtype = std::move(dtype);
  for (const std::int64_t size : shape) result.shape.push_back({size, ""});
  return result;
}

// The stack trace torch.export records: torch's frames around the user's.
std::string trace(const std::string& file, int line, const std::string& code) {
  return "  File \"/venv/lib/python3.11/site-packages/torch/nn/modules/module.py\", line 1775, "
         "in _call_impl\n    return forward_call(*args, **kwargs)\n  File \"" +
         file + "\", line " + std::to_string(line) + ", in forward\n    " + code +
         "\n  File \"/venv/lib/python3.11/site-packages/torch/_ops.py\", line 841, in "
         "__call__\n    return self._op(*args, **kwargs)\n";
}

struct Builder {
  ExportedProgram program;

  Builder() { input("x", InputKind::UserInput, "", meta({2, 64})); }

  Builder& input(const std::string& name, InputKind kind, const std::string& target,
                 TensorMeta type) {
    InputSpec spec;
    spec.kind = kind;
    spec.name = name;
    spec.target = target;
    spec.value = tensor(name);
    program.inputs.push_back(spec);
    program.tensors[name] = std::move(type);
    return *this;
  }

  Builder& node(const std::string& out, const std::string& target, std::vector<NamedArg> inputs,
                const std::string& stack = "", const std::string& path = "") {
    Node node;
    node.name = out;
    node.target = target;
    node.inputs = std::move(inputs);
    node.outputs.push_back(tensor(out));
    node.stack_trace = stack;
    if (!path.empty()) node.module_stack.push_back({"L__self___" + path, path, "pkg.Block"});
    program.nodes.push_back(node);
    program.tensors[out] = meta({2, 64});
    return *this;
  }

  Builder& output(const std::string& name, OutputKind kind = OutputKind::UserOutput,
                  const std::string& target = "") {
    OutputSpec spec;
    spec.kind = kind;
    spec.value = tensor(name);
    spec.target = target;
    program.outputs.push_back(spec);
    return *this;
  }
};

TEST(UserFrame, IsTheInnermostFrameOutsideTorch) {
  const std::string stack = trace("/home/me/net.py", 12, "y = self.fc(x)") +
                            trace("/home/me/block.py", 40, "return torch.relu(y)");
  const SourceFrame frame = user_frame(stack);
  EXPECT_EQ(frame.file, "/home/me/block.py");
  EXPECT_EQ(frame.line, 40);
  EXPECT_EQ(frame.code, "return torch.relu(y)");
  EXPECT_EQ(user_source_line(stack), "block.py:40: return torch.relu(y)");
}

TEST(UserFrame, SkipsWrappersThatForwardEveryArgument) {
  const std::string stack = trace("/home/me/net.py", 12, "h = self.norm(x)") +
                            trace("/site/kernels/layer.py", 856, "return func(*args, **kwargs)");
  EXPECT_EQ(user_source_line(stack), "net.py:12: h = self.norm(x)");
}

TEST(UserFrame, IsEmptyWhenEveryFrameIsTorchs) {
  const std::string stack =
      "  File \"/x/torch/_ops.py\", line 841, in __call__\n    return self._op(*args)\n";
  EXPECT_TRUE(user_frame(stack).file.empty());
  EXPECT_EQ(user_source_line(stack), "");
  EXPECT_TRUE(user_frame("").file.empty());
}

TEST(AnalyzeGraph, CountsTranslatedOpsAndPlacesTheOthers) {
  Builder b;
  b.node("relu", "aten.relu.default", {{"self", tensor("x")}})
      .node("relu_1", "aten.relu_.default", {{"self", tensor("relu")}})
      .node("nonzero", "aten.nonzero.default", {{"self", tensor("relu_1")}},
            trace("/home/me/net.py", 7, "idx = torch.nonzero(y)"), "head")
      .node("fancy", "aten.not_an_op_torch2mlx_knows.default", {{"self", tensor("relu")}},
            trace("/home/me/net.py", 9, "z = torch.ops.aten.not_an_op(y)"))
      .output("nonzero")
      .output("fancy");
  const GraphReport report = analyze_graph(b.program);
  EXPECT_EQ(report.nodes, 4U);
  EXPECT_EQ(report.translated_nodes, 2U);
  ASSERT_EQ(report.ops.size(), 4U);
  EXPECT_EQ(report.ops[0].target, "aten.relu.default");
  EXPECT_EQ(report.ops[1].status, OpStatus::Translated);  // in-place normalises to relu
  EXPECT_EQ(report.ops[2].status, OpStatus::Unsupported);
  EXPECT_NE(report.ops[2].reason.find("depends on the data"), std::string::npos);
  EXPECT_EQ(report.ops[3].reason, "no MLX translation is registered for this op");
  ASSERT_EQ(report.findings.size(), 2U);
  const Finding& nonzero = report.findings[0];
  EXPECT_EQ(nonzero.kind, "unsupported_op");
  EXPECT_TRUE(nonzero.blocker);
  EXPECT_EQ(nonzero.target, "aten.nonzero.default");
  EXPECT_EQ(nonzero.node, "nonzero");
  EXPECT_EQ(nonzero.module_path, "head");
  EXPECT_EQ(nonzero.module_type, "pkg.Block");
  EXPECT_EQ(nonzero.source.file, "/home/me/net.py");
  EXPECT_EQ(nonzero.source.line, 7);
  EXPECT_NE(nonzero.fix.find("docs/ops.md"), std::string::npos);
  EXPECT_EQ(report.findings[1].source.line, 9);
  EXPECT_EQ(report.findings[1].module_path, "");
}

TEST(AnalyzeGraph, OpsOutsideTorchsNamespacesAreCustomKernels) {
  Builder b;
  b.node("fused", "mylib.fused_gelu.default", {{"x", tensor("x")}},
         trace("/home/me/ext.py", 3, "return torch.ops.mylib.fused_gelu(x)"))
      .node("cond", "higher_order.cond", {{"x", tensor("fused")}})
      .output("cond");
  const GraphReport report = analyze_graph(b.program);
  EXPECT_EQ(report.ops[0].status, OpStatus::CustomKernel);
  EXPECT_EQ(op_status_name(report.ops[0].status), "custom_kernel");
  EXPECT_EQ(report.ops[1].status, OpStatus::Unsupported);  // torch's own, not a kernel
  ASSERT_EQ(report.findings.size(), 2U);
  EXPECT_EQ(report.findings[0].kind, "custom_kernel");
  EXPECT_NE(report.findings[0].message.find("namespace 'mylib'"), std::string::npos);
  EXPECT_EQ(report.findings[0].source.line, 3);
  EXPECT_NE(report.findings[0].fix.find("pure-torch"), std::string::npos);
}

TEST(AnalyzeGraph, MutationsTheCallerSeesAreFlaggedWhereTheyAreComputed) {
  Builder b;
  b.input("b_steps", InputKind::Buffer, "steps", meta({1}))
      .node("add", "aten.add.Tensor", {{"self", tensor("b_steps")}, {"other", tensor("x")}},
            trace("/home/me/net.py", 21, "self.steps += 1"))
      .node("mul", "aten.mul.Tensor", {{"self", tensor("x")}, {"other", tensor("x")}},
            trace("/home/me/net.py", 22, "x.mul_(x)"))
      .output("add", OutputKind::BufferMutation, "steps")
      .output("mul", OutputKind::UserInputMutation, "x")
      .output("mul");
  const GraphReport report = analyze_graph(b.program);
  ASSERT_EQ(report.findings.size(), 2U);
  const Finding& buffer = report.findings[0];
  EXPECT_EQ(buffer.kind, "aliasing_mutation");
  EXPECT_TRUE(buffer.blocker);
  EXPECT_EQ(buffer.target, "steps");
  EXPECT_EQ(buffer.source.line, 21);
  EXPECT_NE(buffer.message.find("buffer 'steps'"), std::string::npos);
  EXPECT_NE(buffer.fix.find("return the new value"), std::string::npos);
  const Finding& input = report.findings[1];
  EXPECT_EQ(input.target, "x");
  EXPECT_EQ(input.source.line, 22);
  EXPECT_NE(input.message.find("input 'x'"), std::string::npos);
}

// torch.export's training IR keeps in-place ops: `self.steps += 1` is add_ on the buffer,
// `x[:, 0] = 0` on an input is fill_ on a slice of it, `y.relu_()` on a temporary is not a
// write anyone sees.
TEST(AnalyzeGraph, InPlaceWritesIntoInputsAliasAndIntoTemporariesAreHarmless) {
  Builder b;
  b.input("b_steps", InputKind::Buffer, "steps", meta({1}))
      .node("add_", "aten.add_.Tensor", {{"self", tensor("b_steps")}, {"other", tensor("x")}},
            trace("/home/me/net.py", 30, "self.steps += 1"))
      .node("copy_", "aten.copy_.default", {{"self", tensor("b_steps")}, {"src", tensor("add_")}},
            trace("/home/me/net.py", 30, "self.steps += 1"))
      .node("slice", "aten.slice.Tensor", {{"self", tensor("x")}})
      .node("select", "aten.select.int", {{"self", tensor("slice")}})
      .node("fill_", "aten.fill_.Scalar", {{"self", tensor("select")}},
            trace("/home/me/net.py", 31, "x[:, 0] = 0"))
      .node("mul", "aten.mul.Tensor", {{"self", tensor("x")}, {"other", tensor("x")}})
      .node("relu_", "aten.relu_.default", {{"self", tensor("mul")}},
            trace("/home/me/net.py", 32, "y.relu_()"))
      .output("relu_");
  const GraphReport report = analyze_graph(b.program);
  ASSERT_EQ(report.findings.size(), 2U);  // steps once (add_ and copy_), x once
  EXPECT_EQ(report.findings[0].target, "steps");
  EXPECT_EQ(report.findings[0].source.line, 30);
  EXPECT_NE(report.findings[0].message.find("buffer 'steps'"), std::string::npos);
  EXPECT_EQ(report.findings[1].target, "x");
  EXPECT_EQ(report.findings[1].node, "fill_");
  EXPECT_EQ(report.findings[1].source.line, 31);
  EXPECT_NE(report.findings[1].message.find("input 'x'"), std::string::npos);
  ASSERT_EQ(report.harmless.size(), 1U);
  EXPECT_EQ(report.harmless[0].target, "aten.relu_.default");
  EXPECT_EQ(report.harmless[0].source.line, 32);
  EXPECT_EQ(report.translated_nodes, report.nodes);  // in-place ops translate
}

TEST(AnalyzeGraph, CustomObjectsAreBlockers) {
  Builder b;
  b.input("obj", InputKind::CustomObject, "packed_params", meta({}));
  b.node("relu", "aten.relu.default", {{"self", tensor("x")}}).output("relu");
  const GraphReport report = analyze_graph(b.program);
  ASSERT_EQ(report.findings.size(), 1U);
  EXPECT_EQ(report.findings[0].kind, "custom_object");
  EXPECT_EQ(report.findings[0].target, "packed_params");
}

TEST(AnalyzeGraph, ListsLinearAndEmbeddingWeightsThatSplitIntoGroups) {
  Builder b;
  b.input("p_fc_weight", InputKind::Parameter, "fc.weight", meta({32, 64}))
      .input("p_odd_weight", InputKind::Parameter, "odd.weight", meta({32, 30}))
      .input("p_emb_weight", InputKind::Parameter, "emb.weight", meta({100, 128}))
      .input("p_half_weight", InputKind::Parameter, "half.weight", meta({8, 64}, "int8"))
      .input("b_table", InputKind::Buffer, "table", meta({32, 64}))
      .node("fc", "aten.linear.default",
            {{"input", tensor("x")}, {"weight", tensor("p_fc_weight")}})
      .node("fc2", "aten.linear.default",
            {{"input", tensor("fc")}, {"weight", tensor("p_fc_weight")}})
      .node("odd", "aten.linear.default",
            {{"input", tensor("x")}, {"weight", tensor("p_odd_weight")}})
      .node("half", "aten.linear.default",
            {{"input", tensor("x")}, {"weight", tensor("p_half_weight")}})
      .node("buf", "aten.linear.default", {{"input", tensor("x")}, {"weight", tensor("b_table")}})
      .node("emb", "aten.embedding.default",
            {{"weight", tensor("p_emb_weight")}, {"indices", tensor("x")}})
      .output("emb");
  const GraphReport report = analyze_graph(b.program, 64);
  ASSERT_EQ(report.quantizable.size(), 2U);  // fc once; odd, int8 and buffer weights left out
  EXPECT_EQ(report.quantizable[0].target, "fc.weight");
  EXPECT_EQ(report.quantizable[0].op, "aten.linear.default");
  EXPECT_EQ(report.quantizable[0].shape, (std::vector<std::int64_t>{32, 64}));
  EXPECT_EQ(report.quantizable[1].target, "emb.weight");
  EXPECT_EQ(analyze_graph(b.program, 128).quantizable.size(), 1U);
}

}  // namespace
}  // namespace torch2mlx
