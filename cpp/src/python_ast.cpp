// The Python syntax tree and its printer. See python_ast.h.
#include "torch2mlx/python_ast.h"

#include <fmt/format.h>

#include <array>
#include <cmath>
#include <cstddef>

#include "torch2mlx/error.h"
#include "torch2mlx/python_text.h"

namespace torch2mlx::py {

struct Expr::Node {
  Kind kind = Kind::None;
  std::string text;
  std::vector<Expr> parts;
  std::vector<std::string> keywords;
  Op op = Op::Add;
  UnaryOp unary = UnaryOp::Neg;
  std::int64_t value = 0;
  bool exploded = false;
};

Expr make(Expr::Node node) { return Expr(std::make_shared<const Expr::Node>(std::move(node))); }

namespace {

constexpr std::size_t kWidth = 100;

// Python's operator precedence, lowest first (the language reference, "Operator
// precedence"). Atoms bind tightest; a part printed where a higher level is needed gets
// parentheses.
enum Level : int {
  kStarred = 0,
  kConditional = 1,
  kOr = 2,
  kAnd = 3,
  kNot = 4,
  kCompare = 5,
  kBitOr = 6,
  kBitXor = 7,
  kBitAnd = 8,
  kShift = 9,
  kSum = 10,
  kProduct = 11,
  kUnary = 12,
  kPower = 13,
  kPrimary = 15,
  kAtom = 16
};

struct OperatorInfo {
  Op op;
  std::string_view text;
  int level;
};

constexpr std::array<OperatorInfo, 24> kOperators{{
    {Op::Or, "or", kOr},        {Op::And, "and", kAnd},
    {Op::Eq, "==", kCompare},   {Op::NotEq, "!=", kCompare},
    {Op::Lt, "<", kCompare},    {Op::LtE, "<=", kCompare},
    {Op::Gt, ">", kCompare},    {Op::GtE, ">=", kCompare},
    {Op::Is, "is", kCompare},   {Op::IsNot, "is not", kCompare},
    {Op::In, "in", kCompare},   {Op::BitOr, "|", kBitOr},
    {Op::BitXor, "^", kBitXor}, {Op::BitAnd, "&", kBitAnd},
    {Op::LShift, "<<", kShift}, {Op::RShift, ">>", kShift},
    {Op::Add, "+", kSum},       {Op::Sub, "-", kSum},
    {Op::Mul, "*", kProduct},   {Op::MatMul, "@", kProduct},
    {Op::Div, "/", kProduct},   {Op::FloorDiv, "//", kProduct},
    {Op::Mod, "%", kProduct},   {Op::Pow, "**", kPower},
}};

const OperatorInfo& info(Op op) {
  for (const OperatorInfo& entry : kOperators) {
    if (entry.op == op) return entry;
  }
  fail("python", "unknown operator");
}

void check_identifier(std::string_view text) {
  if (!is_python_identifier(text)) {
    fail("python", fmt::format("{} is not a Python name", python_string(text)));
  }
}

int level(const Expr& expression) {
  switch (expression.kind()) {
    case Expr::Kind::Int:
      return expression.integer() < 0 ? kUnary : kAtom;
    case Expr::Kind::Float:  // nan and inf are calls: float("inf")
      return expression.text().starts_with('-') ? kUnary : kAtom;
    case Expr::Kind::Attribute:
    case Expr::Kind::Call:
    case Expr::Kind::Subscript:
      return kPrimary;
    case Expr::Kind::Binary:
      return info(expression.op()).level;
    case Expr::Kind::Unary:
      return expression.unary_op() == UnaryOp::Not ? kNot : kUnary;
    case Expr::Kind::Conditional:
      return kConditional;
    case Expr::Kind::Starred:
    case Expr::Kind::Slice:
      return kStarred;
    default:
      return kAtom;
  }
}

std::string print_at(const Expr& expression, int needed);

// A name, a number or an attribute chain of a name, with or without a unary operator: the
// operands ruff writes `**` between without spaces.
bool simple_power_operand(const Expr& expression) {
  switch (expression.kind()) {
    case Expr::Kind::Name:
    case Expr::Kind::Int:
    case Expr::Kind::Float:
      return true;
    case Expr::Kind::Attribute:
      return simple_power_operand(expression.parts()[0]) &&
             expression.parts()[0].kind() != Expr::Kind::Unary;
    case Expr::Kind::Unary:
      return expression.unary_op() != UnaryOp::Not && simple_power_operand(expression.parts()[0]);
    default:
      return false;
  }
}

// The levels a binary operator's operands are printed at. Left-associative: `a - (b - c)`
// keeps its parentheses, `(a - b) - c` needs none. `**` is right-associative and binds
// tighter than a unary minus on its left. Comparisons chain in Python (`a < b < c`), so a
// nested one is parenthesised.
std::pair<int, int> operand_levels(Op op) {
  const int level = info(op).level;
  if (level == kPower) return {kPower + 1, kUnary};
  if (level == kCompare) return {kCompare + 1, kCompare + 1};
  return {level, level + 1};
}

// The level a unary operator's operand is printed at.
int operand_level(UnaryOp op) { return op == UnaryOp::Not ? kNot : kUnary; }

std::string join(const std::vector<Expr>& items, std::size_t from, int needed) {
  std::string text;
  for (std::size_t index = from; index < items.size(); ++index) {
    if (index > from) text += ", ";
    text += print_at(items[index], needed);
  }
  return text;
}

// The items between the brackets of a call, tuple, list, dict or subscript, each with the
// text that precedes its expression (`name=` for a keyword, `key: ` for a dict entry).
struct Item {
  std::string lead;
  Expr value;
};

std::vector<Item> bracket_items(const Expr& expression) {
  std::vector<Item> items;
  const auto& parts = expression.parts();
  switch (expression.kind()) {
    case Expr::Kind::Call: {
      const std::size_t positional = parts.size() - expression.keywords().size();
      for (std::size_t index = 1; index < parts.size(); ++index) {
        items.push_back(
            {index < positional ? std::string() : expression.keywords()[index - positional] + "=",
             parts[index]});
      }
      break;
    }
    case Expr::Kind::Tuple:
    case Expr::Kind::List:
      for (const Expr& part : parts) items.push_back({"", part});
      break;
    case Expr::Kind::Dict:
      for (std::size_t index = 0; index + 1 < parts.size(); index += 2) {
        items.push_back({print_at(parts[index], kConditional) + ": ", parts[index + 1]});
      }
      break;
    case Expr::Kind::Subscript:
      if (parts[1].kind() == Expr::Kind::Tuple && !parts[1].parts().empty()) {
        for (const Expr& part : parts[1].parts()) items.push_back({"", part});
      } else {
        items.push_back({"", parts[1]});
      }
      break;
    default:
      break;
  }
  return items;
}

// The level a bracketed item is printed at: a subscript takes slices and starred values, a
// call's positional argument and a tuple's or list's element take starred values.
int item_level(const Expr& container, const Item& item) {
  if (container.kind() == Expr::Kind::Subscript) return kStarred;
  const bool starred = item.value.kind() == Expr::Kind::Starred && item.lead.empty() &&
                       container.kind() != Expr::Kind::Dict;
  return starred ? kStarred : kConditional;
}

std::string join_items(const Expr& container) {
  const std::vector<Item> items = bracket_items(container);
  std::string text;
  for (std::size_t index = 0; index < items.size(); ++index) {
    if (index > 0) text += ", ";
    text += items[index].lead + print_at(items[index].value, item_level(container, items[index]));
  }
  const bool one_tuple = container.kind() == Expr::Kind::Tuple && items.size() == 1;
  const bool one_tuple_index = container.kind() == Expr::Kind::Subscript &&
                               container.parts()[1].kind() == Expr::Kind::Tuple &&
                               container.parts()[1].parts().size() == 1;
  return one_tuple || one_tuple_index ? text + "," : text;
}

std::string print_unparenthesized(const Expr& expression) {
  const auto& parts = expression.parts();
  switch (expression.kind()) {
    case Expr::Kind::Name:
    case Expr::Kind::Int:
    case Expr::Kind::Float:
      return expression.text();
    case Expr::Kind::String:
      return python_string(expression.text());
    case Expr::Kind::Bool:
      return expression.integer() != 0 ? "True" : "False";
    case Expr::Kind::None:
      return "None";
    case Expr::Kind::Omitted:
      return "";
    case Expr::Kind::Attribute: {
      // `(2).real`: an integer literal followed by a dot would read as a float.
      const bool number = parts[0].kind() == Expr::Kind::Int;
      return (number ? "(" + parts[0].text() + ")" : print_at(parts[0], kPrimary)) + "." +
             expression.text();
    }
    case Expr::Kind::Call:
      return print_at(parts[0], kPrimary) + "(" + join_items(expression) + ")";
    case Expr::Kind::Subscript:
      return print_at(parts[0], kPrimary) + "[" + join_items(expression) + "]";
    case Expr::Kind::Slice: {
      std::string text = print_at(parts[0], kConditional) + ":" + print_at(parts[1], kConditional);
      if (parts[2].kind() != Expr::Kind::Omitted) text += ":" + print_at(parts[2], kConditional);
      return text;
    }
    case Expr::Kind::Tuple:
      return "(" + join_items(expression) + ")";
    case Expr::Kind::List:
      return "[" + join_items(expression) + "]";
    case Expr::Kind::Dict:
      return "{" + join_items(expression) + "}";
    case Expr::Kind::Binary: {
      const auto [left, right] = operand_levels(expression.op());
      // `x**2` but `(a + b) ** 2`: ruff hugs `**` when both operands are simple.
      // A parenthesised operand is not simple: `(-1) ** a`.
      const bool hug = expression.op() == Op::Pow && simple_power_operand(parts[0]) &&
                       level(parts[0]) >= left && simple_power_operand(parts[1]) &&
                       level(parts[1]) >= right;
      const std::string space = hug ? "" : " ";
      return print_at(parts[0], left) + space + std::string(info(expression.op()).text) + space +
             print_at(parts[1], right);
    }
    case Expr::Kind::Unary: {
      const UnaryOp op = expression.unary_op();
      const std::string_view sign = op == UnaryOp::Neg ? "-" : op == UnaryOp::Invert ? "~" : "not ";
      return std::string(sign) + print_at(parts[0], operand_level(op));
    }
    case Expr::Kind::Conditional:
      return print_at(parts[0], kOr) + " if " + print_at(parts[1], kOr) + " else " +
             print_at(parts[2], kConditional);
    case Expr::Kind::Starred:
      return "*" + print_at(parts[0], kBitOr);
    case Expr::Kind::Comprehension:
      return "[" + print_at(parts[0], kConditional) + " for " + print_at(parts[1], kBitOr) +
             " in " + print_at(parts[2], kOr) + "]";
  }
  return "";
}

std::string print_at(const Expr& expression, int needed) {
  std::string text = print_unparenthesized(expression);
  if (level(expression) >= needed) return text;
  // Parentheses would not make these valid: `(a:b)`, `(*x)`.
  if (expression.kind() == Expr::Kind::Slice || expression.kind() == Expr::Kind::Starred) {
    fail("python", fmt::format("{} can only stand inside brackets", text));
  }
  return "(" + text + ")";
}

// The bracketed expression a line ends with, which is where a long line is broken: the last
// call, tuple, list, dict or subscript along the right edge of the expression.
std::optional<Expr> trailing_brackets(const Expr& expression, int needed) {
  if (level(expression) < needed) return std::nullopt;
  switch (expression.kind()) {
    case Expr::Kind::Call:
    case Expr::Kind::Tuple:
    case Expr::Kind::List:
    case Expr::Kind::Dict:
    case Expr::Kind::Subscript:
      return bracket_items(expression).empty() ? std::nullopt : std::optional(expression);
    case Expr::Kind::Binary:
      return trailing_brackets(expression.parts()[1], operand_levels(expression.op()).second);
    case Expr::Kind::Unary:
      return trailing_brackets(expression.parts()[0], operand_level(expression.unary_op()));
    case Expr::Kind::Conditional:
      return trailing_brackets(expression.parts()[2], kConditional);
    default:
      return std::nullopt;
  }
}

char closing_bracket(const Expr& expression) {
  switch (expression.kind()) {
    case Expr::Kind::List:
    case Expr::Kind::Subscript:
      return ']';
    case Expr::Kind::Dict:
      return '}';
    default:
      return ')';
  }
}

// One logical line, `lead` + expression + `tail`, broken at its last brackets the way ruff
// breaks it when it is over 100 columns: the items on one indented line when they fit,
// else one per line, each broken again.
void write_line(const std::string& lead, const Expr& expression, const std::string& tail,
                std::string& out, int needed = kConditional) {
  const std::string flat = print_at(expression, needed);
  const std::optional<Expr> group = trailing_brackets(expression, needed);
  const bool exploded = group && group->exploded();
  if (!exploded && (lead.size() + flat.size() + tail.size() <= kWidth || !group)) {
    out += lead + flat + tail + "\n";
    return;
  }
  const char close = closing_bracket(*group);
  const std::string inside = join_items(*group);
  const std::size_t head = flat.size() - inside.size() - 1;  // up to and with the bracket
  const std::string pad(
      lead.find_first_not_of(' ') == std::string::npos ? lead.size() : lead.find_first_not_of(' '),
      ' ');
  const std::string inner = pad + "    ";
  out += lead + flat.substr(0, head) + "\n";
  if (!exploded && inner.size() + inside.size() <= kWidth) {
    out += inner + inside + "\n";
  } else {
    for (const Item& item : bracket_items(*group)) {
      write_line(inner + item.lead, item.value, ",", out, item_level(*group, item));
    }
  }
  out += pad + close + tail + "\n";
}

std::string indent_of(int depth) {
  std::string pad(static_cast<std::size_t>(depth) * 4, ' ');
  return pad;
}

void write_block(const std::vector<Stmt>& statements, int depth, std::string& out);

void write_comment(std::string_view text, int depth, std::string& out) {
  const std::string pad = indent_of(depth);
  out += pad + "# " + python_comment(text, kWidth - pad.size() - 2) + "\n";
}

std::string targets_of(const Stmt& statement) {
  std::string text = join(statement.targets, 0, kBitOr);
  return statement.unpack ? text + "," : text;
}

void write_statement(const Stmt& statement, int depth, std::string& out) {
  const std::string pad = indent_of(depth);
  const std::string trailing =
      statement.comment.empty() ? "" : "  # " + python_comment(statement.comment);
  switch (statement.kind) {
    case Stmt::Kind::Assign:
    case Stmt::Kind::Expression: {
      const std::string lead =
          statement.kind == Stmt::Kind::Assign ? pad + targets_of(statement) + " = " : pad;
      if (trailing.empty()) {
        write_line(lead, statement.values[0], "", out);
      } else {  // a line with a comment is not broken
        out += lead + print_at(statement.values[0], kConditional) + trailing + "\n";
      }
      return;
    }
    case Stmt::Kind::Return:
      if (statement.values.empty()) {
        out += pad + "return\n";
      } else if (statement.values.size() == 1) {
        write_line(pad + "return ", statement.values[0], "", out);
      } else {
        out += pad + "return " + join(statement.values, 0, kConditional) + "\n";
      }
      return;
    case Stmt::Kind::Comment:
      write_comment(statement.text, depth, out);
      return;
    case Stmt::Kind::Pass:
      out += pad + "pass\n";
      return;
    case Stmt::Kind::Blank:
      out += "\n";
      return;
    case Stmt::Kind::If:
      out += pad + "if " + print_at(statement.values[0], kConditional) + ":\n";
      write_block(statement.body, depth + 1, out);
      if (!statement.orelse.empty()) {
        out += pad + "else:\n";
        write_block(statement.orelse, depth + 1, out);
      }
      return;
    case Stmt::Kind::For:
      out += pad + "for " + targets_of(statement) + " in " +
             print_at(statement.values[0], kConditional) + ":\n";
      write_block(statement.body, depth + 1, out);
      return;
    case Stmt::Kind::Annotated:
      out += pad + targets_of(statement) + ": " + print_at(statement.values[0], kConditional) +
             trailing + "\n";
      return;
    case Stmt::Kind::Function: {
      if (!statement.comment.empty()) write_comment(statement.comment, depth, out);
      for (const Expr& decorator : statement.decorators) {
        out += pad + "@" + print_at(decorator, kPrimary) + "\n";
      }
      std::string params;
      for (const Param& param : statement.params) {
        if (!params.empty()) params += ", ";
        params += param.name;
        if (param.annotation) params += ": " + print_at(*param.annotation, kConditional);
        const std::string_view equals = param.annotation ? " = " : "=";
        if (param.default_value) {
          params += std::string(equals) + print_at(*param.default_value, kConditional);
        }
      }
      out += pad + "def " + statement.text + "(" + params + "):\n";
      write_block(statement.body, depth + 1, out);
      return;
    }
    case Stmt::Kind::Class: {
      if (!statement.comment.empty()) write_comment(statement.comment, depth, out);
      for (const Expr& decorator : statement.decorators) {
        out += pad + "@" + print_at(decorator, kPrimary) + "\n";
      }
      out += pad + "class " + statement.text;
      if (!statement.bases.empty()) out += "(" + join(statement.bases, 0, kConditional) + ")";
      out += ":\n";
      write_block(statement.body, depth + 1, out);
      return;
    }
    case Stmt::Kind::Import:
      out += pad + "import " + statement.text;
      if (!statement.alias.empty()) out += " as " + statement.alias;
      out += "\n";
      return;
    case Stmt::Kind::ImportFrom:
      out += pad + "from " + statement.text + " import " + statement.alias + "\n";
      return;
    case Stmt::Kind::Verbatim: {
      std::string text = statement.text;
      while (!text.empty() && text.back() == '\n') text.pop_back();
      out += text + "\n";
      return;
    }
  }
}

bool is_definition(const Stmt& statement) {
  return statement.kind == Stmt::Kind::Function || statement.kind == Stmt::Kind::Class ||
         statement.kind == Stmt::Kind::Verbatim;
}

// A body: one blank line before each nested definition but the first statement; an empty
// body is `pass`.
void write_block(const std::vector<Stmt>& statements, int depth, std::string& out) {
  if (statements.empty()) {
    out += indent_of(depth) + "pass\n";
    return;
  }
  for (std::size_t index = 0; index < statements.size(); ++index) {
    if (index > 0 && is_definition(statements[index])) out += "\n";
    write_statement(statements[index], depth, out);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Expressions.

Expr::Expr() {
  static const auto kNone = std::make_shared<const Node>();
  node_ = kNone;
}

Expr::Expr(std::shared_ptr<const Node> node) : node_(std::move(node)) {}

Expr::Kind Expr::kind() const { return node_->kind; }
const std::string& Expr::text() const { return node_->text; }
const std::vector<Expr>& Expr::parts() const { return node_->parts; }
const std::vector<std::string>& Expr::keywords() const { return node_->keywords; }
Op Expr::op() const { return node_->op; }
UnaryOp Expr::unary_op() const { return node_->unary; }
std::int64_t Expr::integer() const { return node_->value; }
bool Expr::exploded() const { return node_->exploded; }

Expr Expr::attr(std::string_view name) const {
  check_identifier(name);
  return make({.kind = Kind::Attribute, .text = std::string(name), .parts = {*this}});
}

Expr Expr::operator()(std::vector<Expr> args) const { return (*this)(std::move(args), {}); }

Expr Expr::method(std::string_view name, std::vector<Expr> args) const {
  return attr(name)(std::move(args));
}

Expr Expr::operator()(std::vector<Expr> args, std::vector<Keyword> keywords) const {
  Node node{.kind = Kind::Call, .parts = {*this}};
  for (Expr& arg : args) node.parts.push_back(std::move(arg));
  for (Keyword& keyword : keywords) {
    check_identifier(keyword.name);
    node.keywords.push_back(std::move(keyword.name));
    node.parts.push_back(std::move(keyword.value));
  }
  return make(std::move(node));
}

Expr Expr::method(std::string_view name, std::vector<Expr> args,
                  std::vector<Keyword> keywords) const {
  return attr(name)(std::move(args), std::move(keywords));
}

Expr Expr::operator[](const Expr& index) const {
  return make({.kind = Kind::Subscript, .parts = {*this, index}});
}

bool Expr::same(const Expr& other) const {
  return node_ == other.node_ || print(*this) == print(other);
}

Expr name(std::string_view identifier) {
  check_identifier(identifier);
  return make({.kind = Expr::Kind::Name, .text = std::string(identifier)});
}

Expr dotted(std::string_view path) {
  const std::size_t dot = path.find('.');
  Expr result = name(path.substr(0, dot));
  for (std::size_t at = dot; at != std::string_view::npos;) {
    const std::size_t next = path.find('.', at + 1);
    result =
        result.attr(path.substr(at + 1, next == std::string_view::npos ? next : next - at - 1));
    at = next;
  }
  return result;
}

Expr integer(std::int64_t value) {
  return make({.kind = Expr::Kind::Int, .text = fmt::format("{}", value), .value = value});
}

Expr number(double value) {
  if (std::isnan(value)) return call("float", {string("nan")});
  if (std::isinf(value)) return call("float", {string(value > 0 ? "inf" : "-inf")});
  std::string text = fmt::format("{}", value);
  if (text.find_first_of(".en") == std::string::npos) text += ".0";
  return make({.kind = Expr::Kind::Float, .text = std::move(text)});
}

Expr string(std::string_view value) {
  (void)python_string(value);  // refuse bad UTF-8 here, where the caller can be named
  return make({.kind = Expr::Kind::String, .text = std::string(value)});
}

Expr boolean(bool value) { return make({.kind = Expr::Kind::Bool, .value = value ? 1 : 0}); }

Expr none() { return {}; }

Expr tuple(std::vector<Expr> items) {
  return make({.kind = Expr::Kind::Tuple, .parts = std::move(items)});
}

Expr ints(const std::vector<std::int64_t>& values) {
  std::vector<Expr> items;
  items.reserve(values.size());
  for (const std::int64_t value : values) items.push_back(integer(value));
  return tuple(std::move(items));
}

Expr list(std::vector<Expr> items, bool exploded) {
  return make({.kind = Expr::Kind::List, .parts = std::move(items), .exploded = exploded});
}

Expr dict(const std::vector<std::pair<Expr, Expr>>& entries) {
  Expr::Node node{.kind = Expr::Kind::Dict};
  for (const auto& [key, value] : entries) {
    node.parts.push_back(key);
    node.parts.push_back(value);
  }
  return make(std::move(node));
}

Expr nothing() { return make({.kind = Expr::Kind::Omitted}); }

Expr slice(const std::optional<Expr>& lower, const std::optional<Expr>& upper,
           const std::optional<Expr>& step) {
  const Expr omitted = nothing();
  return make(
      {.kind = Expr::Kind::Slice,
       .parts = {lower.value_or(omitted), upper.value_or(omitted), step.value_or(omitted)}});
}

Expr binary(const Expr& left, Op op, const Expr& right) {
  return make({.kind = Expr::Kind::Binary, .parts = {left, right}, .op = op});
}

Expr unary(UnaryOp op, const Expr& operand) {
  return make({.kind = Expr::Kind::Unary, .parts = {operand}, .unary = op});
}

Expr conditional(const Expr& body, const Expr& test, const Expr& orelse) {
  return make({.kind = Expr::Kind::Conditional, .parts = {body, test, orelse}});
}

Expr starred(const Expr& value) { return make({.kind = Expr::Kind::Starred, .parts = {value}}); }

Expr comprehension(const Expr& element, const Expr& target, const Expr& iterable) {
  if (target.kind() != Expr::Kind::Name) fail("python", "a comprehension's target must be a name");
  return make({.kind = Expr::Kind::Comprehension, .parts = {element, target, iterable}});
}

Expr call(std::string_view function, std::vector<Expr> args, std::vector<Keyword> keywords) {
  return dotted(function)(std::move(args), std::move(keywords));
}

std::pair<std::vector<Expr>, std::vector<Keyword>> arguments(const Expr& call) {
  if (call.kind() != Expr::Kind::Call) fail("python", "only a call has arguments");
  const auto& parts = call.parts();
  const std::size_t positional = parts.size() - call.keywords().size();
  std::pair<std::vector<Expr>, std::vector<Keyword>> result;
  result.first.assign(parts.begin() + 1, parts.begin() + static_cast<std::ptrdiff_t>(positional));
  for (std::size_t index = positional; index < parts.size(); ++index) {
    result.second.push_back({call.keywords()[index - positional], parts[index]});
  }
  return result;
}

Expr operator+(const Expr& left, const Expr& right) { return binary(left, Op::Add, right); }
Expr operator-(const Expr& left, const Expr& right) { return binary(left, Op::Sub, right); }
Expr operator*(const Expr& left, const Expr& right) { return binary(left, Op::Mul, right); }
Expr operator/(const Expr& left, const Expr& right) { return binary(left, Op::Div, right); }
Expr operator-(const Expr& operand) { return unary(UnaryOp::Neg, operand); }

// ---------------------------------------------------------------------------------------
// Statements.

Stmt assign(std::vector<Expr> targets, const Expr& value) {
  if (targets.empty()) fail("python", "an assignment needs a target");
  return {.kind = Stmt::Kind::Assign, .targets = std::move(targets), .values = {value}};
}

Stmt assign(const Expr& target, const Expr& value) {
  return assign(std::vector<Expr>{target}, value);
}

Stmt unpack(const Expr& target, const Expr& value) {
  Stmt statement = assign(target, value);
  statement.unpack = true;
  return statement;
}

Stmt expression(const Expr& value) { return {.kind = Stmt::Kind::Expression, .values = {value}}; }

Stmt return_(std::vector<Expr> values) {
  return {.kind = Stmt::Kind::Return, .values = std::move(values)};
}

Stmt comment(std::string_view text) {
  return {.kind = Stmt::Kind::Comment, .text = std::string(text)};
}

Stmt pass() { return {.kind = Stmt::Kind::Pass}; }

Stmt blank() { return {.kind = Stmt::Kind::Blank}; }

Stmt if_(const Expr& test, std::vector<Stmt> body, std::vector<Stmt> orelse) {
  return {.kind = Stmt::Kind::If,
          .values = {test},
          .body = std::move(body),
          .orelse = std::move(orelse)};
}

Stmt function(std::string_view name, std::vector<Param> params, std::vector<Stmt> body) {
  check_identifier(name);
  for (const Param& param : params) check_identifier(param.name);
  return {.kind = Stmt::Kind::Function,
          .text = std::string(name),
          .params = std::move(params),
          .body = std::move(body)};
}

Stmt class_(std::string_view name, std::vector<Expr> bases, std::vector<Stmt> body) {
  check_identifier(name);
  return {.kind = Stmt::Kind::Class,
          .text = std::string(name),
          .bases = std::move(bases),
          .body = std::move(body)};
}

Stmt import(std::string_view module, std::string_view alias) {
  (void)dotted(module);  // each part a name
  if (!alias.empty()) check_identifier(alias);
  return {.kind = Stmt::Kind::Import, .text = std::string(module), .alias = std::string(alias)};
}

Stmt for_(const Expr& target, const Expr& iterable, std::vector<Stmt> body) {
  if (target.kind() != Expr::Kind::Name) fail("python", "a for loop's target must be a name");
  return {
      .kind = Stmt::Kind::For, .targets = {target}, .values = {iterable}, .body = std::move(body)};
}

Stmt annotated(const Expr& target, const Expr& annotation) {
  if (target.kind() != Expr::Kind::Name) fail("python", "an annotated target must be a name");
  return {.kind = Stmt::Kind::Annotated, .targets = {target}, .values = {annotation}};
}

Stmt import_from(std::string_view module, std::string_view name) {
  (void)dotted(module);
  check_identifier(name);
  return {.kind = Stmt::Kind::ImportFrom, .text = std::string(module), .alias = std::string(name)};
}

Stmt decorated(Stmt statement, const Expr& decorator) {
  if (statement.kind != Stmt::Kind::Function && statement.kind != Stmt::Kind::Class) {
    fail("python", "only a function or a class takes a decorator");
  }
  statement.decorators.push_back(decorator);
  return statement;
}

Stmt verbatim(std::string_view source) {
  return {.kind = Stmt::Kind::Verbatim, .text = std::string(source)};
}

Stmt commented(Stmt statement, std::string_view text) {
  statement.comment = std::string(text);
  return statement;
}

// ---------------------------------------------------------------------------------------
// Printing and traversal.

std::string print(const Expr& expression) { return print_at(expression, kStarred); }

std::string print(const std::vector<Stmt>& module) {
  std::string out;
  for (std::size_t index = 0; index < module.size(); ++index) {
    if (index > 0 && is_definition(module[index])) out += "\n\n";
    write_statement(module[index], 0, out);
  }
  return out;
}

namespace {

// Calls `each` on the expressions a statement holds itself, in print order: the one place
// that order is written (walk, rewrite and expressions follow it).
template <typename Statement, typename Each>
void each_expression(Statement& statement, Each&& each) {
  for (auto& decorator : statement.decorators) each(decorator);
  for (auto& target : statement.targets) each(target);
  for (auto& value : statement.values) each(value);
  for (auto& base : statement.bases) each(base);
  for (auto& param : statement.params) {
    if (param.annotation) each(*param.annotation);
    if (param.default_value) each(*param.default_value);
  }
}

}  // namespace

std::vector<Expr> expressions(const Stmt& statement) {
  std::vector<Expr> result;
  each_expression(statement, [&](const Expr& expression) { result.push_back(expression); });
  return result;
}

void walk(const Expr& expression, const std::function<void(const Expr&)>& visit) {
  visit(expression);
  for (const Expr& part : expression.parts()) walk(part, visit);
}

void walk(const std::vector<Expr>& expressions, const std::function<void(const Expr&)>& visit) {
  for (const Expr& expression : expressions) walk(expression, visit);
}

void walk(const std::vector<Stmt>& statements, const std::function<void(const Expr&)>& visit) {
  for (const Stmt& statement : statements) {
    each_expression(statement, [&](const Expr& expression) { walk(expression, visit); });
    walk(statement.body, visit);
    walk(statement.orelse, visit);
  }
}

std::vector<Stmt> rewrite(std::vector<Stmt> statements,
                          const std::function<std::optional<Expr>(const Expr&)>& replace) {
  for (Stmt& statement : statements) {
    each_expression(statement,
                    [&](Expr& expression) { expression = rewrite(expression, replace); });
    statement.body = rewrite(std::move(statement.body), replace);
    statement.orelse = rewrite(std::move(statement.orelse), replace);
  }
  return statements;
}

Expr rewrite(const Expr& expression,
             const std::function<std::optional<Expr>(const Expr&)>& replace) {
  if (std::optional<Expr> replaced = replace(expression)) return *replaced;
  if (expression.parts().empty()) return expression;
  Expr::Node node{.kind = expression.kind(),
                  .text = expression.text(),
                  .keywords = expression.keywords(),
                  .op = expression.op(),
                  .unary = expression.unary_op(),
                  .value = expression.integer(),
                  .exploded = expression.exploded()};
  bool changed = false;
  for (const Expr& part : expression.parts()) {
    node.parts.push_back(rewrite(part, replace));
    changed = changed || !node.parts.back().is(part);
  }
  return changed ? make(std::move(node)) : expression;
}

}  // namespace torch2mlx::py
