// Symbolic sizes of dynamic shapes: sym_size reads a dimension at run time, and the Python
// operators torch.export records on those sizes become plain Python arithmetic.
#include <fmt/format.h>

#include <algorithm>
#include <string>
#include <vector>

#include "call.h"
#include "emit_util.h"

namespace torch2mlx {

namespace {

std::string size(Call& call) {
  return fmt::format("{}.shape[{}]", call.tensor("self"), call.axis("dim", 0));
}

std::string numel(Call& call) { return fmt::format("{}.size", call.tensor("self")); }

// MLX arrays have no storage of their own to be offset into or strided through: every
// array reads as a fresh contiguous one, which is what torch reports for the tensors that
// dynamic-shape code asks about.
std::string zero(Call& /*call*/) { return "0"; }
std::string yes(Call& /*call*/) { return "True"; }

std::string stride(Call& call) {
  const std::int64_t rank = std::max(call.rank("self"), 1);
  const std::int64_t dim = call.integer("dim", 0);
  return fmt::format("{}({}.shape, {})", call.helper("contiguous_stride"), call.tensor("self"),
                     dim < 0 ? dim + rank : dim);
}

/// a <op> b on Python numbers (SymInt, SymFloat, SymBool follow Python's semantics).
template <Text Op>
std::string arithmetic(Call& call) {
  return fmt::format("({} {} {})", call.literal("a", "0"), Op.view(), call.literal("b", "0"));
}

/// <op> a, e.g. prefix<"-">.
template <Text Op>
std::string prefix(Call& call) {
  return fmt::format("({}{})", Op.view(), call.literal("a", "0"));
}

/// F(all inputs in order), e.g. function<"max">.
template <Text F>
std::string function(Call& call) {
  std::vector<std::string> args;
  for (const NamedArg& input : call.node().inputs) args.push_back(call.literal(input.name, "0"));
  return fmt::format("{}({})", F.view(), fmt::join(args, ", "));
}

std::string if_then_else(Call& call) {
  return fmt::format("({} if {} else {})", call.literal("t", "0"), call.literal("b", "False"),
                     call.literal("f", "0"));
}

std::string getitem(Call& call) {
  return fmt::format("{}[{}]", call.literal("a", "None"), call.literal("b", "0"));
}

}  // namespace

std::vector<OpEntry> symbolic_ops() {
  constexpr LayoutRule kStandard = LayoutRule::Standard;
  return {
      {"aten.sym_size.int", size, LayoutRule::Axis},
      {"aten.sym_numel.default", numel, LayoutRule::Elementwise},
      {"aten.sym_stride.int", stride, kStandard},
      {"aten.sym_storage_offset.default", zero, LayoutRule::Elementwise},
      {"aten.sym_is_contiguous.default", yes, LayoutRule::Elementwise},
      {"_operator.add", arithmetic<"+">, kStandard},
      {"_operator.sub", arithmetic<"-">, kStandard},
      {"_operator.mul", arithmetic<"*">, kStandard},
      {"_operator.floordiv", arithmetic<"//">, kStandard},
      {"_operator.truediv", arithmetic<"/">, kStandard},
      {"_operator.mod", arithmetic<"%">, kStandard},
      {"_operator.pow", arithmetic<"**">, kStandard},
      {"_operator.lshift", arithmetic<"<<">, kStandard},
      {"_operator.rshift", arithmetic<">>">, kStandard},
      {"_operator.eq", arithmetic<"==">, kStandard},
      {"_operator.ne", arithmetic<"!=">, kStandard},
      {"_operator.lt", arithmetic<"<">, kStandard},
      {"_operator.le", arithmetic<"<=">, kStandard},
      {"_operator.gt", arithmetic<">">, kStandard},
      {"_operator.ge", arithmetic<">=">, kStandard},
      {"_operator.and_", arithmetic<"&">, kStandard},
      {"_operator.or_", arithmetic<"|">, kStandard},
      {"_operator.neg", prefix<"-">, kStandard},
      {"_operator.pos", prefix<"+">, kStandard},
      {"_operator.getitem", getitem, kStandard},
      {"torch.sym_not", prefix<"not ">, kStandard},
      {"torch.sym_ite", if_then_else, kStandard},
      {"torch.sym_max", function<"max">, kStandard},
      {"torch.sym_min", function<"min">, kStandard},
      {"torch.sym_float", function<"float">, kStandard},
      {"torch.sym_int", function<"int">, kStandard},
      {"torch._sym_sqrt", function<"math.sqrt">, kStandard},
      {"math.trunc", function<"math.trunc">, kStandard},
      {"math.ceil", function<"math.ceil">, kStandard},
      {"math.floor", function<"math.floor">, kStandard},
      {"math.sqrt", function<"math.sqrt">, kStandard},
  };
}

}  // namespace torch2mlx
