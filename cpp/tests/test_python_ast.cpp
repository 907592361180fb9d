// The Python syntax tree and its printer: precedence, escaping, names, line breaking.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "torch2mlx/error.h"
#include "torch2mlx/python_ast.h"

namespace torch2mlx::py {
namespace {

TEST(PythonAst, PrintsCallsAttributesAndLiterals) {
  const Expr x = name("x");
  EXPECT_EQ(print(call("mx.reshape", {x, ints({2, -1})})), "mx.reshape(x, (2, -1))");
  EXPECT_EQ(print(call("mx.sum", {x}, {{"axis", ints({1})}, {"keepdims", boolean(true)}})),
            "mx.sum(x, axis=(1,), keepdims=True)");
  EXPECT_EQ(print(x.method("astype", {dotted("mx.float16")})), "x.astype(mx.float16)");
  EXPECT_EQ(print(x.attr("shape")[integer(0)]), "x.shape[0]");
  EXPECT_EQ(print(tuple({})), "()");
  EXPECT_EQ(print(list({integer(1), none()})), "[1, None]");
  EXPECT_EQ(print(dict({{string("logits"), x}})), "{\"logits\": x}");
  EXPECT_EQ(print(number(1e-5)), "1e-05");
  EXPECT_EQ(print(number(2)), "2.0");
  EXPECT_EQ(print(number(-INFINITY)), "float(\"-inf\")");
  EXPECT_EQ(print(integer(2).attr("real")), "(2).real");
}

TEST(PythonAst, SubscriptsPrintSlicesAndTuplesBare) {
  const Expr x = name("x");
  EXPECT_EQ(print(x[tuple({slice({}, {}), integer(0)})]), "x[:, 0]");
  EXPECT_EQ(print(x[slice(integer(1), {}, integer(2))]), "x[1::2]");
  EXPECT_EQ(print(x[tuple({integer(0)})]), "x[0,]");
  EXPECT_EQ(print(x[starred(name("key"))]), "x[*key]");
  EXPECT_EQ(print(call("f", {starred(x)})), "f(*x)");
  EXPECT_EQ(print(tuple({starred(x), integer(1)})), "(*x, 1)");
  EXPECT_THROW((void)print(starred(x) + x), Error);
  EXPECT_THROW((void)print(tuple({slice(integer(1), {})})), Error);
  EXPECT_THROW((void)print(call("f", {}, {{"k", starred(x)}})), Error);
}

TEST(PythonAst, ParenthesisesOnlyWherePrecedenceNeedsIt) {
  const Expr a = name("a");
  const Expr b = name("b");
  const Expr c = name("c");
  EXPECT_EQ(print(a + b * c), "a + b * c");
  EXPECT_EQ(print((a + b) * c), "(a + b) * c");
  EXPECT_EQ(print(a - (b - c)), "a - (b - c)");
  EXPECT_EQ(print((a - b) - c), "a - b - c");
  EXPECT_EQ(print(binary(-a, Op::Pow, b)), "(-a) ** b");
  EXPECT_EQ(print(binary(a, Op::Pow, -b)), "a**-b");
  EXPECT_EQ(print(binary(binary(a, Op::Pow, b), Op::Pow, c)), "(a**b) ** c");
  EXPECT_EQ(print(binary(integer(-1), Op::Pow, a)), "(-1) ** a");
  EXPECT_EQ(print((a + b).method("astype", {c})), "(a + b).astype(c)");
  EXPECT_EQ(print(binary(binary(a, Op::Lt, b), Op::Lt, c)), "(a < b) < c");
  EXPECT_EQ(print(binary(a, Op::BitAnd, binary(b, Op::Eq, c))), "a & (b == c)");
  EXPECT_EQ(print(unary(UnaryOp::Not, binary(a, Op::And, b))), "not (a and b)");
  EXPECT_EQ(print(conditional(a, b, conditional(c, a, b))), "a if b else c if a else b");
  EXPECT_EQ(print(conditional(a, b, c) + a), "(a if b else c) + a");
  EXPECT_EQ(print(-(a + b)), "-(a + b)");
}

TEST(PythonAst, StringsAndCommentsAreEscaped) {
  EXPECT_EQ(print(string("a\"\n")), "\"a\\\"\\n\"");
  const std::string source = print({comment("line one\nimport os"), pass()});
  EXPECT_EQ(source, "# line one import os\npass\n");
  const std::string trailing = print({commented(expression(call("f")), "done\rimport os")});
  EXPECT_EQ(trailing, "f()  # done import os\n");
}

TEST(PythonAst, RefusesWhatPythonWouldNotParse) {
  EXPECT_THROW((void)name("class"), Error);
  EXPECT_THROW((void)name("a-b"), Error);
  EXPECT_THROW((void)name(""), Error);
  EXPECT_THROW((void)dotted("mx..exp"), Error);
  EXPECT_THROW((void)name("x").attr("0"), Error);
  EXPECT_THROW((void)call("f", {}, {{"lambda", integer(1)}}), Error);
  EXPECT_THROW((void)function("f", {{"x y", {}}}, {}), Error);
  EXPECT_THROW((void)class_("1A", {}, {}), Error);
  EXPECT_THROW((void)string("\xff"), Error);
}

TEST(PythonAst, PrintsModulesWithRuffSpacing) {
  const std::vector<Stmt> module{
      comment("Generated."),
      import("math"),
      blank(),
      import("mlx.core", "mx"),
      commented(class_("Block", {dotted("nn.Module")},
                       {function("__init__", {{"self", {}}}, {}),
                        function("__call__", {{"self", {}}, {"x", {}}, {"flag", boolean(false)}},
                                 {unpack(name("a"), call("f", {name("x")})),
                                  assign({name("b"), name("_")}, call("g")),
                                  return_({name("a"), name("b")})})}),
                "torch: Block"),
  };
  EXPECT_EQ(print(module),
            "# Generated.\n"
            "import math\n"
            "\n"
            "import mlx.core as mx\n"
            "\n"
            "\n"
            "# torch: Block\n"
            "class Block(nn.Module):\n"
            "    def __init__(self):\n"
            "        pass\n"
            "\n"
            "    def __call__(self, x, flag=False):\n"
            "        a, = f(x)\n"
            "        b, _ = g()\n"
            "        return a, b\n");
}

TEST(PythonAst, BreaksLongLinesAtTheirLastBrackets) {
  std::vector<Expr> names;
  for (int index = 0; index < 12; ++index) {
    names.push_back(name("argument_number_" + std::to_string(index)));
  }
  const std::vector<Expr> few(names.begin(), names.begin() + 4);
  EXPECT_EQ(
      print({assign(name("value"), call("mx.concatenate", {list(few)}, {{"axis", integer(1)}}))}),
      "value = mx.concatenate(\n"
      "    [argument_number_0, argument_number_1, argument_number_2, argument_number_3], "
      "axis=1\n"
      ")\n");
  const std::string many = print({assign(name("value"), call("f", names))});
  EXPECT_EQ(many.substr(0, 28), "value = f(\n    argument_numb");
  EXPECT_NE(many.find("    argument_number_11,\n)\n"), std::string::npos);
  for (std::size_t start = 0, end = 0; start < many.size(); start = end + 1) {
    end = many.find('\n', start);
    EXPECT_LE(end - start, 100U);
  }
  EXPECT_EQ(print({assign(name("layers"), list({call("Block"), call("Block")}, true))}),
            "layers = [\n    Block(),\n    Block(),\n]\n");
}

TEST(PythonAst, RewriteReplacesPartsAndKeepsTheRest) {
  const Expr seven = integer(7);
  const Expr tree = call("nn.Linear", {seven, integer(3)});
  const Expr rewritten = rewrite(tree, [&](const Expr& part) -> std::optional<Expr> {
    if (part.is(seven)) return name("dims");
    return std::nullopt;
  });
  EXPECT_EQ(print(rewritten), "nn.Linear(dims, 3)");
  EXPECT_EQ(print(tree), "nn.Linear(7, 3)");
  int literals = 0;
  walk(rewritten, [&](const Expr& part) { literals += part.kind() == Expr::Kind::Int ? 1 : 0; });
  EXPECT_EQ(literals, 1);
}

TEST(PythonAst, HugsPowerBetweenSimpleOperandsAsRuffDoes) {
  const Expr x = name("x");
  EXPECT_EQ(print(binary(x.attr("head_dim"), Op::Pow, number(-0.5))), "x.head_dim**-0.5");
  EXPECT_EQ(print(binary(x, Op::Pow, integer(2))), "x**2");
  EXPECT_EQ(print(binary(x + integer(1), Op::Pow, integer(2))), "(x + 1) ** 2");
  EXPECT_EQ(print(binary(x, Op::Pow, call("f", {x}))), "x ** f(x)");
}

TEST(PythonAst, PrintsLoopsComprehensionsAndDataclasses) {
  const Expr self = name("self");
  const Expr h = name("h");
  const Expr layer = name("layer");
  EXPECT_EQ(print(comprehension(call("Block", {name("args")}), name("_"),
                                call("range", {name("args").attr("num_layers")}))),
            "[Block(args) for _ in range(args.num_layers)]");
  const std::vector<Stmt> module{
      import_from("dataclasses", "dataclass"),
      decorated(class_("ModelArgs", {},
                       {annotated(name("hidden_size"), name("int")),
                        annotated(name("eps"), name("float"))}),
                name("dataclass")),
      function("run",
               {{"self", {}}, {"args", {}, name("ModelArgs")}, {"n", integer(2), name("int")}},
               {for_(layer, self.attr("layers"), {assign(h, layer({h}))}), return_({h})}),
  };
  EXPECT_EQ(print(module),
            "from dataclasses import dataclass\n"
            "\n\n"
            "@dataclass\n"
            "class ModelArgs:\n"
            "    hidden_size: int\n"
            "    eps: float\n"
            "\n\n"
            "def run(self, args: ModelArgs, n: int = 2):\n"
            "    for layer in self.layers:\n"
            "        h = layer(h)\n"
            "    return h\n");
  EXPECT_THROW((void)for_(layer[integer(0)], h, {}), Error);
  EXPECT_THROW((void)decorated(assign(h, h), name("dataclass")), Error);
  EXPECT_THROW((void)import_from("dataclasses", "class"), Error);
  int names = 0;
  walk(module, [&](const Expr& part) { names += part.text() == "ModelArgs" ? 1 : 0; });
  EXPECT_EQ(names, 1);  // the annotation of a parameter is walked
}

}  // namespace
}  // namespace torch2mlx::py
