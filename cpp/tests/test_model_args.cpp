// ModelArgs: literals explained by probes become expressions of config fields.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include "ir_builder.h"
#include "torch2mlx/codegen.h"
#include "torch2mlx/model_args.h"
#include "torch2mlx/python_ast.h"

namespace torch2mlx {
namespace {

using py::integer;
using py::name;

// A tiny attention model with hidden size `hidden`, `heads` heads of `head_dim`, `layers`
// blocks and an eps, as the code generator writes it (the root class "Model" last).
std::vector<py::Stmt> attention_model(int hidden, int heads, int layers, double eps) {
  const py::Expr self = name("self");
  const py::Stmt super_init = py::expression(py::call("super").method("__init__"));
  const int head_dim = hidden / heads;
  py::Stmt block = py::class_(
      "Block", {py::dotted("nn.Module")},
      {py::function(
           "__init__", {{"self", {}}},
           {super_init,
            py::assign(self.attr("q"), py::call("nn.Linear", {integer(hidden), integer(hidden)}))}),
       py::function(
           "__call__", {{"self", {}}, {"x", {}}},
           {py::assign(name("q"), py::call("mx.reshape", {self.attr("q")({name("x")}),
                                                          py::ints({1, -1, heads, head_dim})})),
            py::return_({py::call("attention", {name("q"), py::number(1.0 / std::sqrt(head_dim)),
                                                py::number(eps)})})})});
  py::Stmt root = py::class_(
      "Model", {py::dotted("nn.Module")},
      {py::function(
           "__init__", {{"self", {}}},
           {super_init, py::assign(self.attr("layers"),
                                   py::comprehension(py::call("Block"), name("_"),
                                                     py::call("range", {integer(layers)})))}),
       py::function("__call__", {{"self", {}}, {"x", {}}}, {py::return_({name("x")})})});
  return {block, root};
}

const std::vector<ConfigField> kFields{{"hidden_size", 64, true},
                                       {"num_heads", 4, true},
                                       {"num_layers", 2, true},
                                       {"eps", 1e-6, false},
                                       {"vocab_size", 100, true}};

TEST(ModelArgs, LiteralsBecomeExpressionsOfTheFieldsThatMoveThem) {
  const auto code = parameterize(attention_model(64, 4, 2, 1e-6), kFields,
                                 {"hidden_size", "num_heads", "num_layers", "eps", "vocab_size"},
                                 {128, 8, 4, 2e-6, 200},
                                 {attention_model(128, 4, 2, 1e-6), attention_model(64, 8, 2, 1e-6),
                                  attention_model(64, 4, 4, 1e-6), attention_model(64, 4, 2, 2e-6),
                                  attention_model(64, 4, 2, 1e-6)});
  EXPECT_TRUE(code.notes.empty());
  ASSERT_EQ(code.fields.size(), 4U);  // the vocabulary moves nothing
  EXPECT_EQ(py::print(code.classes),
            "# The config fields the model's sizes come from (config.json's \"model_args\").\n"
            "@dataclass\n"
            "class ModelArgs:\n"
            "    hidden_size: int\n"
            "    num_heads: int\n"
            "    num_layers: int\n"
            "    eps: float\n"
            "\n\n"
            "class Block(nn.Module):\n"
            "    def __init__(self, args):\n"
            "        super().__init__()\n"
            "        self.args = args\n"
            "        self.q = nn.Linear(args.hidden_size, args.hidden_size)\n"
            "\n"
            "    def __call__(self, x):\n"
            "        args = self.args\n"
            "        q = mx.reshape(self.q(x), (1, -1, args.num_heads, args.hidden_size // "
            "args.num_heads))\n"
            "        return attention(q, (args.hidden_size // args.num_heads) ** -0.5, args.eps)\n"
            "\n\n"
            "class Model(nn.Module):\n"
            "    def __init__(self, args: ModelArgs):\n"
            "        super().__init__()\n"
            "        self.args = args\n"
            "        self.layers = [Block(args) for _ in range(args.num_layers)]\n"
            "\n"
            "    def __call__(self, x):\n"
            "        return x\n");
}

// A deep model is probed on a copy of its first layers: each probe changes one field of
// that copy and is compared with the copy itself, the layer count's probe.
TEST(ModelArgs, ProbesOfAShallowCopyAreComparedWithThatCopy) {
  std::vector<ConfigField> fields = kFields;
  fields[2].value = 30;  // num_layers
  const ProbeBase shallow{{"num_layers", 2}};
  const auto code = parameterize(attention_model(64, 4, 30, 1e-6), fields,
                                 {"num_layers", "hidden_size", "num_heads", "eps", "vocab_size"},
                                 {2, 128, 8, 2e-6, 200},
                                 {attention_model(64, 4, 2, 1e-6), attention_model(128, 4, 2, 1e-6),
                                  attention_model(64, 8, 2, 1e-6), attention_model(64, 4, 2, 2e-6),
                                  attention_model(64, 4, 2, 1e-6)},
                                 {{}, shallow, shallow, shallow, shallow});
  EXPECT_TRUE(code.notes.empty());
  ASSERT_EQ(code.fields.size(), 4U);
  const std::string text = py::print(code.classes);
  EXPECT_NE(text.find("range(args.num_layers)"), std::string::npos) << text;
  EXPECT_NE(text.find("nn.Linear(args.hidden_size, args.hidden_size)"), std::string::npos);
  EXPECT_NE(text.find("args.hidden_size // args.num_heads"), std::string::npos);
}

TEST(ModelArgs, AProbeWithoutItsBaseStaysFixed) {
  std::vector<ConfigField> fields = kFields;
  fields[2].value = 30;
  const auto code =
      parameterize(attention_model(64, 4, 30, 1e-6), fields, {"hidden_size"}, {128},
                   {attention_model(128, 4, 2, 1e-6)}, {ProbeBase{{"num_layers", 2}}});
  EXPECT_TRUE(code.fields.empty());
  ASSERT_EQ(code.notes.size(), 1U);
  EXPECT_NE(code.notes[0].find("'hidden_size' stays fixed"), std::string::npos);
}

TEST(ModelArgs, AFieldThatChangesTheStructureStaysFixed) {
  std::vector<py::Stmt> other = attention_model(64, 4, 2, 1e-6);
  other[0].body.pop_back();  // no __call__: another structure
  const auto code =
      parameterize(attention_model(64, 4, 2, 1e-6), kFields, {"hidden_size", "num_layers"},
                   {128, 4}, {other, attention_model(64, 4, 4, 1e-6)});
  ASSERT_EQ(code.fields.size(), 1U);
  EXPECT_EQ(code.fields[0].name, "num_layers");
  ASSERT_EQ(code.notes.size(), 1U);
  EXPECT_NE(code.notes[0].find("'hidden_size' stays fixed"), std::string::npos);
  EXPECT_NE(py::print(code.classes).find("nn.Linear(64, 64)"), std::string::npos);
}

TEST(ModelArgs, ANumberNoProductExplainsFixesItsFields) {
  // 64 -> 100 when hidden doubles: not a power of it. The heads still explain theirs.
  std::vector<py::Stmt> odd = attention_model(64, 4, 2, 1e-6);
  odd = py::rewrite(std::move(odd), [](const py::Expr& part) -> std::optional<py::Expr> {
    if (part.kind() == py::Expr::Kind::Int && part.integer() == 64) return integer(100);
    return std::nullopt;
  });
  const auto code =
      parameterize(attention_model(64, 4, 2, 1e-6), kFields, {"hidden_size", "num_layers"},
                   {128, 4}, {odd, attention_model(64, 4, 4, 1e-6)});
  ASSERT_EQ(code.fields.size(), 1U);
  EXPECT_EQ(code.fields[0].name, "num_layers");
  ASSERT_EQ(code.notes.size(), 1U);
  EXPECT_NE(code.notes[0].find("hidden_size"), std::string::npos);
}

TEST(ModelArgs, AnIntegerFromAFloatFieldIsTruncatedAsTorchDoes) {
  // Swin's MLP width: int(dim * mlp_ratio), a float field.
  const auto mlp = [](int dim, double ratio) {
    const py::Stmt super_init = py::expression(py::call("super").method("__init__"));
    return std::vector<py::Stmt>{py::class_(
        "Model", {py::dotted("nn.Module")},
        {py::function(
            "__init__", {{"self", {}}},
            {super_init, py::assign(name("self").attr("fc"),
                                    py::call("nn.Linear", {integer(dim), integer(static_cast<int>(
                                                                             dim * ratio))}))})})};
  };
  const std::vector<ConfigField> fields{{"dim", 48, true}, {"mlp_ratio", 4.0, false}};
  const auto code = parameterize(mlp(48, 4.0), fields, {"dim", "mlp_ratio"}, {96, 8.0},
                                 {mlp(96, 4.0), mlp(48, 8.0)});
  ASSERT_EQ(code.fields.size(), 2U);
  EXPECT_NE(py::print(code.classes).find("nn.Linear(args.dim, int(args.dim * args.mlp_ratio))"),
            std::string::npos)
      << py::print(code.classes);
}

TEST(ModelArgs, AScaleIsCheckedWithTheFloorDivisionItIsWrittenWith) {
  // A scale of true division, (hidden / heads) ** -0.5: written as (hidden // heads) ** -0.5,
  // it is wrong where heads does not divide hidden, and the check at that probe says so.
  const auto scaled = [](double hidden, double heads) {
    const py::Stmt super_init = py::expression(py::call("super").method("__init__"));
    return std::vector<py::Stmt>{py::class_(
        "Model", {py::dotted("nn.Module")},
        {py::function("__init__", {{"self", {}}}, {super_init}),
         py::function("__call__", {{"self", {}}, {"x", {}}},
                      {py::return_({name("x") * py::number(std::pow(hidden / heads, -0.5))})})})};
  };
  const std::vector<ConfigField> fields{{"hidden_size", 48, true}, {"num_heads", 4, true}};
  const auto whole = parameterize(scaled(48, 4), fields, {"hidden_size", "num_heads"}, {96, 8},
                                  {scaled(96, 4), scaled(48, 8)});
  EXPECT_EQ(whole.fields.size(), 2U);
  const auto broken = parameterize(scaled(48, 4), fields, {"hidden_size", "num_heads"}, {96, 5},
                                   {scaled(96, 4), scaled(48, 5)});
  EXPECT_TRUE(broken.fields.empty());
  EXPECT_EQ(broken.notes.size(), 1U);
}

TEST(ModelArgs, NoMovingLiteralLeavesTheCodeAsItIs) {
  const auto model = attention_model(64, 4, 2, 1e-6);
  const auto code =
      parameterize(model, kFields, {"vocab_size"}, {200}, {attention_model(64, 4, 2, 1e-6)});
  EXPECT_TRUE(code.fields.empty());
  EXPECT_EQ(py::print(code.classes), py::print(model));
}

TEST(ModelArgs, AProbeTheCoreCannotUseLeavesItsFieldFixedAndTheModelConverts) {
  // One probe's program was refused when it was read (as a size expression past 4096 bytes
  // is), another has an op no translation knows: each is dropped with a note naming its
  // field, and the model is generated from the probes that remain.
  const auto relu = [](const std::string& target) {
    testing::Builder builder;
    return builder.node("y", target, {{"self", testing::tensor("x"), false}}).returning({"y"});
  };
  CodegenOptions options;
  options.model_args.fields = {{"hidden_size", 64, true}, {"num_layers", 2, true}};
  options.model_args.probes.push_back(
      {"hidden_size",
       128,
       {},
       {},
       "[graph] probe of hidden_size: a size expression too long\nmore"});
  options.model_args.probes.push_back({"num_layers", 4, relu("aten.not_an_op.default"), {}, ""});
  const GeneratedModel generated = generate_model(relu("aten.relu.default"), options);
  EXPECT_NE(generated.source.find("nn.relu(x)"), std::string::npos) << generated.source;
  ASSERT_EQ(generated.notes.size(), 2U);
  EXPECT_EQ(generated.notes[0],
            "ModelArgs: 'hidden_size' stays fixed: the model captured with hidden_size = 128 "
            "cannot be used ([graph] probe of hidden_size: a size expression too long)");
  EXPECT_NE(generated.notes[1].find("ModelArgs: 'num_layers' stays fixed: the model captured "
                                    "with num_layers = 4 cannot be used ([codegen] "),
            std::string::npos)
      << generated.notes[1];
  EXPECT_TRUE(generated.model_args.empty());
}

}  // namespace
}  // namespace torch2mlx
