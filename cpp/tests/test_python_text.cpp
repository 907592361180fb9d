// The escaping rule for generated code, and the reader's checks on names and size
// expressions that torch's loader would evaluate.
#include <gtest/gtest.h>

#include <string>

#include "torch2mlx/error.h"
#include "torch2mlx/graph.h"
#include "torch2mlx/python_text.h"

namespace torch2mlx {
namespace {

TEST(PythonString, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(python_string("ij,jk->ik"), "\"ij,jk->ik\"");
  EXPECT_EQ(python_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(python_string("a\nb\rc\td"), "\"a\\nb\\rc\\td\"");
  EXPECT_EQ(python_string(std::string("\x00\x0c\x1c\x7f", 4)), "\"\\x00\\x0c\\x1c\\x7f\"");
}

TEST(PythonString, IsPureAsciiForEveryCodePoint) {
  EXPECT_EQ(python_string("\xc2\x85"), "\"\\x85\"");                // U+0085
  EXPECT_EQ(python_string("\xe2\x80\xa8"), "\"\\u2028\"");          // U+2028
  EXPECT_EQ(python_string("\xc3\xa9"), "\"\\xe9\"");                // é
  EXPECT_EQ(python_string("\xf0\x9f\x98\x80"), "\"\\U0001f600\"");  // an emoji
}

TEST(PythonString, RefusesBytesThatAreNotUtf8) {
  for (const std::string bad :
       {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xe2\x80", "\xf4\x90\x80\x80"}) {
    EXPECT_THROW((void)python_string(bad), Error) << bad;
  }
}

TEST(PythonComment, TurnsEveryLineBreakIntoASpace) {
  for (const std::string breaker :
       {"\n", "\r", "\f", "\v", "\x1c", "\x1d", "\x1e", "\xc2\x85", "\xe2\x80\xa8", "\xe2\x80\xa9",
        "\xe2\x80\xae" /* right-to-left override */}) {
    EXPECT_EQ(python_comment("x = 1" + breaker + "import os"), "x = 1 import os") << breaker;
  }
  EXPECT_EQ(python_comment("x\r\nimport os"), "x  import os");
}

TEST(PythonComment, KeepsTextAndMarksBadBytes) {
  EXPECT_EQ(python_comment("model.py:3: y = x.mean()  # é"), "model.py:3: y = x.mean()  # é");
  EXPECT_EQ(python_comment("a\xff"
                           "b"),
            "a?b");
}

TEST(PythonComment, CutsOnACodePointBoundary) {
  EXPECT_EQ(python_comment("abcdefghij", 8), "abcde...");
  EXPECT_EQ(python_comment("abcdefgh", 8), "abcdefgh");
  // "é" is two bytes: a cut inside it would leave invalid UTF-8 in model.py.
  EXPECT_EQ(python_comment("abcd\xc3\xa9"
                           "fgh",
                           8),
            "abcd...");
  EXPECT_EQ(python_comment("abc\xc3\xa9"
                           "fghi",
                           8),
            "abc\xc3\xa9...");
}

TEST(PythonIdentifier, AcceptsNamesAndRefusesTheRest) {
  for (const char* good : {"x", "_x", "conv2d_1", "match", "case", "type"}) {
    EXPECT_TRUE(is_python_identifier(good)) << good;
  }
  for (const char* bad : {"", "1x", "x-y", "x y", "None", "class", "lambda", "\xc3\xa9", "a.b"}) {
    EXPECT_FALSE(is_python_identifier(bad)) << bad;
  }
}

TEST(ValueName, IsAnAsciiIdentifier) {
  EXPECT_TRUE(is_value_name("arg0_1"));
  EXPECT_TRUE(is_value_name("sym_size_int_3"));
  EXPECT_FALSE(is_value_name("x = __import__('os')"));
  EXPECT_FALSE(is_value_name("x\ny"));
  EXPECT_FALSE(is_value_name(""));
}

TEST(SizeExpression, AcceptsWhatTorchWrites) {
  for (const char* good :
       {"s77", "2*s0", "s0 + 1", "((s0 - 1)//2) + 1", "Max(1, s0)", "Mod(s0, 2)", "FloorDiv(s0, 4)",
        "s0**2", "Eq(s0, 4)", "s0 <= 8", "s0 >= 2", "s0 != 3",
        "Symbol('s77', positive=True, integer=True)",
        "LessThan(Mul(Integer(2), Symbol('s0', positive=True, integer=True)), Integer(4))",
        "Float('0.5', precision=53)", "1.5e-3*s0", "OpaqueUnaryFn_sqrt(s0)", "True"}) {
    EXPECT_EQ(expression_problem(good), "") << good;
  }
}

TEST(SizeExpression, RefusesWhatSympifyWouldRunAsCode) {
  for (const char* bad : {"__import__('os').system('x')",
                          "s0.__class__",
                          "eval('1')",
                          "exec(s0)",
                          "getattr(s0, 'x')",
                          "s0[0]",
                          "lambda: 1",
                          "x = 1",
                          "s0; s1",
                          "Symbol('a\\'b')",

                          "'",
                          "Max(1, open('f'))",
                          "(((",
                          "s0)",
                          "f\"{s0}\"",
                          "s0 @ s1",
                          "sympify('1')",
                          "Symbol('s0', x=1)",
                          "_s0",
                          "1if s0 else 2"}) {
    EXPECT_NE(expression_problem(bad), "") << bad;
  }
  EXPECT_NE(expression_problem(std::string(5000, '1')), "");
  EXPECT_NE(expression_problem(std::string(100, '(') + "1" + std::string(100, ')')), "");
}

}  // namespace
}  // namespace torch2mlx
