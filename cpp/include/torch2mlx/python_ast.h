#pragma once
// A small Python syntax tree, and the one printer that turns it into source.
//
// The code generator and every op emitter build expressions and statements with these
// functions; nothing else writes Python. The builders refuse what Python would not parse
// (a name that is not an identifier, a keyword argument named `class`), and the printer
// adds the parentheses precedence needs, escapes every string and comment (python_text.h),
// and wraps long lines the way ruff formats them. So a tree always prints as valid Python.
//
// Expressions are immutable and share their parts, so they are cheap to copy and reuse.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace torch2mlx::py {

/// Binary operators, comparisons and the boolean operators.
enum class Op : std::uint8_t {
  Or,
  And,  // boolean
  Eq,
  NotEq,
  Lt,
  LtE,
  Gt,
  GtE,
  Is,
  IsNot,
  In,  // comparisons
  BitOr,
  BitXor,
  BitAnd,
  LShift,
  RShift,  // bitwise
  Add,
  Sub,
  Mul,
  MatMul,
  Div,
  FloorDiv,
  Mod,  // arithmetic
  Pow
};

/// Unary operators.
enum class UnaryOp : std::uint8_t { Neg, Invert, Not };

struct Keyword;

/// A Python expression.
class Expr {
 public:
  enum class Kind : std::uint8_t {
    Name,
    Int,
    Float,
    String,
    Bool,
    None,
    Attribute,
    Call,
    Subscript,
    Slice,
    Tuple,
    List,
    Dict,
    Binary,
    Unary,
    Conditional,
    Starred,
    Comprehension,
    Omitted
  };

  /// `None`.
  Expr();

  /// What kind of expression this is.
  [[nodiscard]] Kind kind() const;
  /// A name's identifier, an attribute's name, a literal's text, a string's (unescaped)
  /// value; "" otherwise.
  [[nodiscard]] const std::string& text() const;
  /// The parts: a call's function then its arguments (keyword values last); an attribute's
  /// or subscript's object first; a dict's keys and values, alternating.
  [[nodiscard]] const std::vector<Expr>& parts() const;
  /// A call's keyword names, one per trailing keyword value in parts().
  [[nodiscard]] const std::vector<std::string>& keywords() const;
  /// The operator of a binary or unary expression.
  [[nodiscard]] Op op() const;
  [[nodiscard]] UnaryOp unary_op() const;
  /// An integer literal's value (kind() == Int).
  [[nodiscard]] std::int64_t integer() const;

  /// `self.name`.
  [[nodiscard]] Expr attr(std::string_view name) const;
  /// `self(args)`.
  [[nodiscard]] Expr operator()(std::vector<Expr> args = {}) const;
  /// `self(args, name=value...)`.
  [[nodiscard]] Expr operator()(std::vector<Expr> args, std::vector<Keyword> keywords) const;
  /// `self.name(args)`.
  [[nodiscard]] Expr method(std::string_view name, std::vector<Expr> args = {}) const;
  /// `self.name(args, name=value...)`.
  [[nodiscard]] Expr method(std::string_view name, std::vector<Expr> args,
                            std::vector<Keyword> keywords) const;
  /// `self[index]`; a tuple index prints without parentheses (`x[:, 0]`).
  [[nodiscard]] Expr operator[](const Expr& index) const;

  /// Whether two trees print the same.
  [[nodiscard]] bool same(const Expr& other) const;
  /// Whether this is the very node `other` is (not a copy that prints the same).
  [[nodiscard]] bool is(const Expr& other) const { return node_ == other.node_; }
  /// Whether a list prints one item per line.
  [[nodiscard]] bool exploded() const;

  struct Node;

 private:
  explicit Expr(std::shared_ptr<const Node> node);
  friend Expr make(Node node);
  std::shared_ptr<const Node> node_;
};

/// `name=value` in a call.
struct Keyword {
  std::string name;
  Expr value;
};

/// A name; throws Error unless `identifier` is a Python identifier and not a keyword.
[[nodiscard]] Expr name(std::string_view identifier);
/// A dotted path as attributes of a name: "mx.fast.rope".
[[nodiscard]] Expr dotted(std::string_view path);
/// An integer literal.
[[nodiscard]] Expr integer(std::int64_t value);
/// A float literal that reads back as `value`: 1.0, 1e-05, float("inf").
[[nodiscard]] Expr number(double value);
/// A string literal of UTF-8 `value` (escaped when printed).
[[nodiscard]] Expr string(std::string_view value);
/// True or False.
[[nodiscard]] Expr boolean(bool value);
/// None.
[[nodiscard]] Expr none();
/// A tuple; one element prints as `(a,)`.
[[nodiscard]] Expr tuple(std::vector<Expr> items);
/// A tuple of integer literals.
[[nodiscard]] Expr ints(const std::vector<std::int64_t>& values);
/// A list; `exploded` prints one item per line.
[[nodiscard]] Expr list(std::vector<Expr> items, bool exploded = false);
/// A dict literal.
[[nodiscard]] Expr dict(const std::vector<std::pair<Expr, Expr>>& entries);
/// `lower:upper:step` in a subscript; a missing part is left out.
[[nodiscard]] Expr slice(const std::optional<Expr>& lower, const std::optional<Expr>& upper,
                         const std::optional<Expr>& step = std::nullopt);
/// `left op right`.
[[nodiscard]] Expr binary(const Expr& left, Op op, const Expr& right);
/// `op operand`.
[[nodiscard]] Expr unary(UnaryOp op, const Expr& operand);
/// `body if test else orelse`.
[[nodiscard]] Expr conditional(const Expr& body, const Expr& test, const Expr& orelse);
/// `*value`, in a call's arguments, a tuple or a subscript.
[[nodiscard]] Expr starred(const Expr& value);
/// `[element for target in iterable]`.
[[nodiscard]] Expr comprehension(const Expr& element, const Expr& target, const Expr& iterable);
/// Nothing: what an op emitter returns for an op that writes no code (slices leave their
/// missing parts out the same way).
[[nodiscard]] Expr nothing();
/// `function(args, keywords)` where function is a dotted path: call("mx.exp", {x}).
[[nodiscard]] Expr call(std::string_view function, std::vector<Expr> args = {},
                        std::vector<Keyword> keywords = {});
/// A call's positional arguments and its keyword arguments, to build another call from.
[[nodiscard]] std::pair<std::vector<Expr>, std::vector<Keyword>> arguments(const Expr& call);

[[nodiscard]] Expr operator+(const Expr& left, const Expr& right);
[[nodiscard]] Expr operator-(const Expr& left, const Expr& right);
[[nodiscard]] Expr operator*(const Expr& left, const Expr& right);
[[nodiscard]] Expr operator/(const Expr& left, const Expr& right);
[[nodiscard]] Expr operator-(const Expr& operand);

/// A function parameter, with an optional default and annotation.
struct Param {
  std::string name;
  std::optional<Expr> default_value;
  std::optional<Expr> annotation = std::nullopt;
};

/// A Python statement.
struct Stmt {
  enum class Kind : std::uint8_t {
    Assign,
    Expression,
    Return,
    Comment,
    Pass,
    If,
    Function,
    Class,
    Import,
    ImportFrom,
    For,
    Annotated,
    Blank,
    Verbatim
  };
  Kind kind = Kind::Pass;
  std::vector<Expr> targets;     // Assign: `a, b = value`; one target in a list: `a, = value`
  bool unpack = false;           // Assign: a trailing comma after a single target
  std::vector<Expr> values;      // Assign/Expression: one; Return: the returned values; If: test;
                                 // For: the iterable; Annotated: the annotation
  std::string text;              // Comment text; Function/Class/Import name; Verbatim source
  std::string alias;             // Import: `import text as alias`; ImportFrom: the name imported
  std::string comment;           // a trailing `# comment` (Assign/Expression), or one line above
                                 // a function or class
  std::vector<Param> params;     // Function
  std::vector<Expr> bases;       // Class
  std::vector<Expr> decorators;  // Function/Class: `@decorator` lines
  std::vector<Stmt> body;        // If/For/Function/Class
  std::vector<Stmt> orelse;      // If
};

/// `targets... = value`.
[[nodiscard]] Stmt assign(std::vector<Expr> targets, const Expr& value);
/// `target = value`.
[[nodiscard]] Stmt assign(const Expr& target, const Expr& value);
/// `a, = value`: a single target unpacked from a one-element sequence.
[[nodiscard]] Stmt unpack(const Expr& target, const Expr& value);
/// An expression statement.
[[nodiscard]] Stmt expression(const Expr& value);
/// `return values...` (`return` alone when empty).
[[nodiscard]] Stmt return_(std::vector<Expr> values);
/// `# text`, escaped and cut to fit the line.
[[nodiscard]] Stmt comment(std::string_view text);
/// `pass`.
[[nodiscard]] Stmt pass();
/// An empty line, between groups of imports.
[[nodiscard]] Stmt blank();
/// `if test:` body, `else:` orelse.
[[nodiscard]] Stmt if_(const Expr& test, std::vector<Stmt> body, std::vector<Stmt> orelse = {});
/// `def name(params):` body.
[[nodiscard]] Stmt function(std::string_view name, std::vector<Param> params,
                            std::vector<Stmt> body);
/// `class name(bases):` body.
[[nodiscard]] Stmt class_(std::string_view name, std::vector<Expr> bases, std::vector<Stmt> body);
/// `for target in iterable:` body.
[[nodiscard]] Stmt for_(const Expr& target, const Expr& iterable, std::vector<Stmt> body);
/// `target: annotation`, a field of a dataclass.
[[nodiscard]] Stmt annotated(const Expr& target, const Expr& annotation);
/// `from module import name`.
[[nodiscard]] Stmt import_from(std::string_view module, std::string_view name);
/// `statement` (a function or class) under `@decorator`.
[[nodiscard]] Stmt decorated(Stmt statement, const Expr& decorator);
/// `import module` or `import module as alias`.
[[nodiscard]] Stmt import(std::string_view module, std::string_view alias = "");
/// Source copied as it is: only for Python of this repository embedded at build time (the
/// helpers of src/torch2mlx/mlx_helpers.py), never for text from a model.
[[nodiscard]] Stmt verbatim(std::string_view source);
/// `statement` with a trailing or leading comment (see Stmt::comment).
[[nodiscard]] Stmt commented(Stmt statement, std::string_view text);

/// The expression on one line, with the parentheses precedence needs.
[[nodiscard]] std::string print(const Expr& expression);
/// Statements as a module: two blank lines around top-level functions and classes, one
/// between methods, lines wrapped at 100 columns.
[[nodiscard]] std::string print(const std::vector<Stmt>& module);

/// The expressions a statement holds itself (not those of its body), in print order.
[[nodiscard]] std::vector<Expr> expressions(const Stmt& statement);
/// Calls `visit` on `expression` and every expression inside it, parents first.
void walk(const Expr& expression, const std::function<void(const Expr&)>& visit);
/// Calls `visit` on each expression of `expressions` and every expression inside them.
void walk(const std::vector<Expr>& expressions, const std::function<void(const Expr&)>& visit);
/// Calls `visit` on every expression of the statements, nested ones included.
void walk(const std::vector<Stmt>& statements, const std::function<void(const Expr&)>& visit);
/// A copy of `expression` in which every part for which `replace` returns a value is
/// replaced by it (parents are offered first; a replaced part is not entered).
[[nodiscard]] Expr rewrite(const Expr& expression,
                           const std::function<std::optional<Expr>(const Expr&)>& replace);
/// The statements with every expression rewritten so, in the order walk() visits them.
[[nodiscard]] std::vector<Stmt> rewrite(
    std::vector<Stmt> statements, const std::function<std::optional<Expr>(const Expr&)>& replace);

}  // namespace torch2mlx::py
