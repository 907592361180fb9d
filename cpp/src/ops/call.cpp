// Call: arguments of a node rendered for the emitters.
#include "call.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <utility>

#include "torch2mlx/error.h"
#include "torch2mlx/python_text.h"
#include "torch2mlx/tensor.h"

namespace torch2mlx {

std::optional<std::string> mlx_dtype(std::string_view numpy_name) {
  // MLX names its dtypes as numpy does, as tensor.h's table of the dtypes torch and MLX
  // share does; bool is `bool_`, and MLX adds complex64.
  if (numpy_name == "complex64") return "mx.complex64";
  if (!dtype_from_name(numpy_name)) return std::nullopt;
  return numpy_name == "bool" ? std::string("mx.bool_") : "mx." + std::string(numpy_name);
}

std::optional<py::Expr> mlx_dtype_expr(std::string_view numpy_name) {
  const auto mlx = mlx_dtype(numpy_name);
  if (!mlx) return std::nullopt;
  return py::dotted(*mlx);
}

const Arg* Call::arg(std::string_view name) const { return node_.input(name); }

py::Expr Call::value(const std::string& name) const {
  const auto found = state_.rendered.find(name);
  py::Expr expression = found == state_.rendered.end() ? py::name(name) : found->second;
  // A weight stored in MLX's convolution order, read here as a plain tensor: torch's order.
  const auto param = state_.params.find(name);
  if (param == state_.params.end()) return expression;
  const auto layout = state_.weight_layouts.find(param->second);
  if (layout == state_.weight_layouts.end()) return expression;
  const int dims = rank_of(name);
  std::vector<std::int64_t> axes;
  if (layout->second.first == Transform::ConvWeight) {
    axes = {0, dims - 1};
    for (int axis = 1; axis < dims - 1; ++axis) axes.push_back(axis);
  } else {
    if (layout->second.second != 1)
      unsupported("a grouped transposed convolution weight is also used elsewhere");
    axes = {dims - 1, 0};
    for (int axis = 1; axis < dims - 1; ++axis) axes.push_back(axis);
  }
  return py::call("mx.transpose", {expression, py::ints(axes)});
}

int Call::rank_of(const std::string& name) const {
  const auto meta = state_.program->tensors.find(name);
  if (meta == state_.program->tensors.end())
    unsupported(fmt::format("the rank of '{}' is unknown", name));
  return static_cast<int>(meta->second.shape.size());
}

bool Call::has(std::string_view name) const {
  const Arg* found = arg(name);
  return found != nullptr && found->kind != ArgKind::None;
}

py::Expr Call::tensor(std::string_view name) const {
  const Arg* found = arg(name);
  if (found == nullptr || found->kind != ArgKind::Tensor) {
    unsupported(fmt::format("argument '{}' is not a tensor", name));
  }
  return value(found->names[0]);
}

std::vector<py::Expr> Call::tensors(std::string_view name) const {
  const Arg* found = arg(name);
  if (found == nullptr || found->kind != ArgKind::TensorList) {
    unsupported(fmt::format("argument '{}' is not a list of tensors", name));
  }
  std::vector<py::Expr> result;
  for (const std::string& item : found->names)
    result.push_back(item.empty() ? py::none() : value(item));
  return result;
}

py::Expr Call::literal(std::string_view name, const py::Expr& fallback) const {
  const Arg* found = arg(name);
  if (found == nullptr) return fallback;
  // An int (or float, or bool) that export recorded as a symbol is that symbol's value.
  const auto symbolic = [&](std::size_t index) {
    return found->names.size() > index && !found->names[index].empty();
  };
  const auto element = [&](std::size_t index) {
    return symbolic(index) ? value(found->names[index]) : py::integer(found->ints[index]);
  };
  switch (found->kind) {
    case ArgKind::None:
      return py::none();
    case ArgKind::Tensor:
      return value(found->names[0]);
    case ArgKind::TensorList:
      return py::list(tensors(name));
    case ArgKind::Int:
      return element(0);
    case ArgKind::IntList: {
      std::vector<py::Expr> items;
      for (std::size_t index = 0; index < found->ints.size(); ++index)
        items.push_back(element(index));
      return py::tuple(std::move(items));
    }
    case ArgKind::Float:
      return symbolic(0) ? value(found->names[0]) : py::number(found->floats[0]);
    case ArgKind::FloatList: {
      std::vector<py::Expr> items;
      for (const double item : found->floats) items.push_back(py::number(item));
      return py::tuple(std::move(items));
    }
    case ArgKind::Bool:
      return symbolic(0) ? value(found->names[0]) : py::boolean(found->ints[0] != 0);
    case ArgKind::BoolList: {
      std::vector<py::Expr> items;
      for (const std::int64_t item : found->ints) items.push_back(py::boolean(item != 0));
      return py::tuple(std::move(items));
    }
    case ArgKind::String:
      return py::string(found->strings[0]);
    case ArgKind::ScalarType: {
      const auto mlx = mlx_dtype_expr(found->strings[0]);
      if (!mlx) unsupported(fmt::format("MLX has no dtype {}", found->strings[0]));
      return *mlx;
    }
    default:
      unsupported(fmt::format("argument '{}' has a kind the code generator cannot write", name));
  }
}

std::int64_t Call::integer(std::string_view name, std::int64_t fallback) const {
  const Arg* found = arg(name);
  if (found == nullptr || found->kind == ArgKind::None) return fallback;
  if ((found->kind != ArgKind::Int && found->kind != ArgKind::Bool) || found->ints.empty()) {
    unsupported(fmt::format("argument '{}' is not an integer", name));
  }
  if (!found->names.empty() && !found->names[0].empty()) {
    unsupported(fmt::format("argument '{}' is a symbolic size where a constant is needed", name));
  }
  return found->ints[0];
}

std::vector<std::int64_t> Call::ints(std::string_view name) const {
  const Arg* found = arg(name);
  if (found == nullptr || found->kind == ArgKind::None) return {};
  if (found->kind != ArgKind::Int && found->kind != ArgKind::IntList) {
    unsupported(fmt::format("argument '{}' is not a list of integers", name));
  }
  for (const std::string& symbol : found->names) {
    if (!symbol.empty()) {
      unsupported(
          fmt::format("argument '{}' holds a symbolic size where a constant is needed", name));
    }
  }
  return found->ints;
}

double Call::number(std::string_view name, double fallback) const {
  const Arg* found = arg(name);
  if (found == nullptr || found->kind == ArgKind::None) return fallback;
  if (found->kind == ArgKind::Float && !found->floats.empty()) return found->floats[0];
  if ((found->kind == ArgKind::Int || found->kind == ArgKind::Bool) && !found->ints.empty()) {
    return static_cast<double>(found->ints[0]);
  }
  unsupported(fmt::format("argument '{}' is not a number", name));
}

bool Call::flag(std::string_view name, bool fallback) const {
  const Arg* found = arg(name);
  if (found == nullptr || found->kind == ArgKind::None) return fallback;
  if (found->kind != ArgKind::Bool || found->ints.empty()) {
    unsupported(fmt::format("argument '{}' is not a bool", name));
  }
  return found->ints[0] != 0;
}

std::string Call::text(std::string_view name, std::string_view fallback) const {
  const Arg* found = arg(name);
  if (found == nullptr || found->kind == ArgKind::None) return std::string(fallback);
  if (found->kind != ArgKind::String)
    unsupported(fmt::format("argument '{}' is not a string", name));
  return found->strings[0];
}

std::optional<py::Expr> Call::dtype(std::string_view name) const {
  const Arg* found = arg(name);
  if (found == nullptr || found->kind == ArgKind::None) return std::nullopt;
  return literal(name);
}

std::int64_t Call::storage_axis(std::int64_t logical) const {
  // The first input decides: a tensor, or the first tensor of a list (cat, stack).
  const Arg* first = node_.inputs.empty() ? nullptr : &node_.inputs[0].arg;
  if (first == nullptr || first->names.empty() || first->names[0].empty()) {
    unsupported("the op has no tensor first input to take an axis of");
  }
  const auto found = state_.program->tensors.find(first->names[0]);
  if (found == state_.program->tensors.end()) unsupported("the rank of the first input is unknown");
  const TensorMeta* info = &found->second;
  const auto rank = static_cast<std::int64_t>(info->shape.size());
  const std::int64_t wrapped = logical < 0 ? logical + std::max<std::int64_t>(rank, 1) : logical;
  if (wrapped < 0 || wrapped >= std::max<std::int64_t>(rank, 1)) {
    unsupported(fmt::format("axis {} is out of range for rank {}", logical, rank));
  }
  const auto perm = state_.perms.find(first->names[0]);
  if (perm == state_.perms.end() || perm->second.empty()) return wrapped;
  const auto position = std::find(perm->second.begin(), perm->second.end(), wrapped);
  return position - perm->second.begin();
}

std::int64_t Call::axis(std::string_view name, std::int64_t fallback) const {
  return storage_axis(integer(name, fallback));
}

std::vector<std::int64_t> Call::axes(std::string_view name) const {
  std::vector<std::int64_t> result;
  for (const std::int64_t logical : ints(name)) result.push_back(storage_axis(logical));
  return result;
}

const TensorMeta* Call::meta(std::string_view name) const {
  const Arg* found = arg(name);
  if (found == nullptr || found->names.empty() || found->names[0].empty()) return nullptr;
  const auto meta = state_.program->tensors.find(found->names[0]);
  return meta == state_.program->tensors.end() ? nullptr : &meta->second;
}

const TensorMeta* Call::out_meta(std::size_t index) const {
  if (index >= node_.outputs.size() || node_.outputs[index].names.empty()) return nullptr;
  const auto meta = state_.program->tensors.find(node_.outputs[index].names[0]);
  return meta == state_.program->tensors.end() ? nullptr : &meta->second;
}

int Call::rank(std::string_view name) const {
  const TensorMeta* info = meta(name);
  if (info == nullptr) unsupported(fmt::format("the rank of '{}' is unknown", name));
  return static_cast<int>(info->shape.size());
}

py::Expr Call::tensor_dtype(std::string_view name) const {
  const TensorMeta* info = meta(name);
  if (info == nullptr) unsupported(fmt::format("the dtype of '{}' is unknown", name));
  const auto mlx = mlx_dtype_expr(info->dtype);
  if (!mlx) unsupported(fmt::format("MLX has no dtype {}", info->dtype));
  return *mlx;
}

bool Call::permuted() const {
  if (node_.inputs.empty() || node_.inputs[0].arg.names.empty()) return false;
  const auto perm = state_.perms.find(node_.inputs[0].arg.names[0]);
  return perm != state_.perms.end() && !perm->second.empty();
}

py::Expr Call::conv_weight(std::string_view name, bool transposed, std::int64_t groups) {
  const Arg* found = arg(name);
  if (found == nullptr || found->kind != ArgKind::Tensor) {
    unsupported(fmt::format("argument '{}' is not a tensor", name));
  }
  const std::string& graph_name = found->names[0];
  const auto param = state_.params.find(graph_name);
  const Transform layout = transposed ? Transform::ConvTransposeWeight : Transform::ConvWeight;
  if (param != state_.params.end()) {
    const auto [existing, inserted] =
        state_.weight_layouts.emplace(param->second, std::pair{layout, groups});
    if (inserted || existing->second == std::pair{layout, groups}) {
      const auto rendered = state_.rendered.find(graph_name);
      return rendered == state_.rendered.end() ? py::name(graph_name) : rendered->second;
    }
  }
  // A weight computed at run time (or shared with another use): move its axes here.
  const int dims = rank(name);
  if (!transposed) {
    std::vector<std::int64_t> order{0};
    for (int axis = 2; axis < dims; ++axis) order.push_back(axis);
    order.push_back(1);
    return py::call("mx.transpose", {value(graph_name), py::ints(order)});
  }
  if (groups != 1) unsupported("a grouped transposed convolution needs its weight as a parameter");
  std::vector<std::int64_t> order{1};
  for (int axis = 2; axis < dims; ++axis) order.push_back(axis);
  order.push_back(0);
  return py::call("mx.transpose", {value(graph_name), py::ints(order)});
}

py::Expr Call::helper(std::string_view name) {
  if (!helper_source(name)) {
    fail("codegen", fmt::format("internal: no helper named '{}'", name));
  }
  state_.helpers.emplace(name);
  for (std::string& callee : helper_dependencies(name)) state_.helpers.insert(std::move(callee));
  return py::name(name);
}

void Call::unsupported(std::string_view reason) const {
  fail("codegen", fmt::format("{}: {}", describe_node(node_), reason));
}

}  // namespace torch2mlx
