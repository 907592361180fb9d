// Symbolic sizes of dynamic shapes: sym_size reads a dimension at run time, and the Python
// operators torch.export records on those sizes become plain Python arithmetic.
#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "call.h"
#include "emit_util.h"

namespace torch2mlx {

namespace {

py::Expr size(Call& call) {
  return call.tensor("self").attr("shape")[py::integer(call.axis("dim", 0))];
}

py::Expr numel(Call& call) { return call.tensor("self").attr("size"); }

// MLX arrays have no storage of their own to be offset into or strided through: every
// array reads as a fresh contiguous one, which is what torch reports for the tensors that
// dynamic-shape code asks about.
py::Expr zero(Call& /*call*/) { return py::integer(0); }
py::Expr yes(Call& /*call*/) { return py::boolean(true); }

py::Expr stride(Call& call) {
  const std::int64_t rank = std::max(call.rank("self"), 1);
  const std::int64_t dim = call.integer("dim", 0);
  return call.helper("contiguous_stride")(
      {call.tensor("self").attr("shape"), py::integer(dim < 0 ? dim + rank : dim)});
}

/// a <op> b on Python numbers (SymInt, SymFloat, SymBool follow Python's semantics where
/// it gives a result).
template <py::Op Op>
py::Expr arithmetic(Call& call) {
  return py::binary(call.literal("a", py::integer(0)), Op, call.literal("b", py::integer(0)));
}

/// <op> a, e.g. prefix<py::UnaryOp::Neg>.
template <py::UnaryOp Op>
py::Expr prefix(Call& call) {
  return py::unary(Op, call.literal("a", py::integer(0)));
}

// +a is a itself on Python numbers.
py::Expr positive(Call& call) { return call.literal("a", py::integer(0)); }

/// helper(a, b), for the Python operators whose result torch's kernels compute where
/// Python raises (0.0 ** -0.5, 1 / 0): e.g. with_helper<"scalar_power">.
template <Text Name>
py::Expr scalar_helper(Call& call) {
  return call.helper(Name.view())(
      {call.literal("a", py::integer(0)), call.literal("b", py::integer(0))});
}

/// sqrt of the one input, nan below zero as torch's kernels give it.
py::Expr scalar_sqrt(Call& call) {
  const NamedArg& input = call.node().inputs.at(0);
  return call.helper("scalar_sqrt")({call.literal(input.name, py::integer(0))});
}

/// F(all inputs in order), e.g. function<"max">.
template <Text F>
py::Expr function(Call& call) {
  std::vector<py::Expr> args;
  for (const NamedArg& input : call.node().inputs) {
    args.push_back(call.literal(input.name, py::integer(0)));
  }
  return py::call(F.view(), std::move(args));
}

py::Expr if_then_else(Call& call) {
  return py::conditional(call.literal("t", py::integer(0)), call.literal("b", py::boolean(false)),
                         call.literal("f", py::integer(0)));
}

py::Expr getitem(Call& call) { return call.literal("a")[call.literal("b", py::integer(0))]; }

}  // namespace

std::vector<OpEntry> symbolic_ops() {
  constexpr LayoutRule kStandard = LayoutRule::Standard;
  return {
      {"aten.sym_size.int", size, LayoutRule::Axis},
      {"aten.sym_numel.default", numel, LayoutRule::Elementwise},
      {"aten.sym_stride.int", stride, kStandard},
      {"aten.sym_storage_offset.default", zero, LayoutRule::Elementwise},
      {"aten.sym_is_contiguous.default", yes, LayoutRule::Elementwise},
      {"_operator.add", arithmetic<py::Op::Add>, kStandard},
      {"_operator.sub", arithmetic<py::Op::Sub>, kStandard},
      {"_operator.mul", arithmetic<py::Op::Mul>, kStandard},
      {"_operator.floordiv", arithmetic<py::Op::FloorDiv>, kStandard},
      {"_operator.truediv", scalar_helper<"scalar_divide">, kStandard},
      {"_operator.mod", arithmetic<py::Op::Mod>, kStandard},
      {"_operator.pow", scalar_helper<"scalar_power">, kStandard},
      {"_operator.lshift", arithmetic<py::Op::LShift>, kStandard},
      {"_operator.rshift", arithmetic<py::Op::RShift>, kStandard},
      {"_operator.eq", arithmetic<py::Op::Eq>, kStandard},
      {"_operator.ne", arithmetic<py::Op::NotEq>, kStandard},
      {"_operator.lt", arithmetic<py::Op::Lt>, kStandard},
      {"_operator.le", arithmetic<py::Op::LtE>, kStandard},
      {"_operator.gt", arithmetic<py::Op::Gt>, kStandard},
      {"_operator.ge", arithmetic<py::Op::GtE>, kStandard},
      {"_operator.and_", arithmetic<py::Op::BitAnd>, kStandard},
      {"_operator.or_", arithmetic<py::Op::BitOr>, kStandard},
      {"_operator.neg", prefix<py::UnaryOp::Neg>, kStandard},
      {"_operator.pos", positive, kStandard},
      {"_operator.getitem", getitem, kStandard},
      {"torch.sym_not", prefix<py::UnaryOp::Not>, kStandard},
      {"torch.sym_ite", if_then_else, kStandard},
      {"torch.sym_max", function<"max">, kStandard},
      {"torch.sym_min", function<"min">, kStandard},
      {"torch.sym_float", function<"float">, kStandard},
      {"torch.sym_int", function<"int">, kStandard},
      {"torch._sym_sqrt", scalar_sqrt, kStandard},
      {"math.trunc", function<"math.trunc">, kStandard},
      {"math.ceil", function<"math.ceil">, kStandard},
      {"math.floor", function<"math.floor">, kStandard},
      {"math.sqrt", scalar_sqrt, kStandard},
  };
}

}  // namespace torch2mlx
