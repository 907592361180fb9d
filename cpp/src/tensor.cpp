#include "torch2mlx/tensor.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "torch2mlx/error.h"

namespace torch2mlx {
namespace {

struct DTypeInfo {
  DType dtype;
  std::size_t itemsize;
  std::string_view name;         // numpy / MLX
  std::string_view safetensors;  // safetensors header
};

constexpr std::array<DTypeInfo, 13> kDTypes{{
    {DType::Bool, 1, "bool", "BOOL"},
    {DType::U8, 1, "uint8", "U8"},
    {DType::I8, 1, "int8", "I8"},
    {DType::I16, 2, "int16", "I16"},
    {DType::I32, 4, "int32", "I32"},
    {DType::I64, 8, "int64", "I64"},
    {DType::U16, 2, "uint16", "U16"},
    {DType::U32, 4, "uint32", "U32"},
    {DType::U64, 8, "uint64", "U64"},
    {DType::F16, 2, "float16", "F16"},
    {DType::BF16, 2, "bfloat16", "BF16"},
    {DType::F32, 4, "float32", "F32"},
    {DType::F64, 8, "float64", "F64"},
}};

const DTypeInfo& info(DType dtype) { return kDTypes.at(static_cast<std::size_t>(dtype)); }

}  // namespace

std::size_t itemsize(DType dtype) { return info(dtype).itemsize; }
std::string_view dtype_name(DType dtype) { return info(dtype).name; }
std::string_view safetensors_dtype_name(DType dtype) { return info(dtype).safetensors; }

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& entry : kDTypes) {
    if (entry.name == name) return entry.dtype;
  }
  return std::nullopt;
}

std::vector<std::string_view> dtype_names() {
  std::vector<std::string_view> names;
  names.reserve(kDTypes.size());
  for (const auto& entry : kDTypes) names.push_back(entry.name);
  return names;
}

std::optional<DType> dtype_from_safetensors(std::string_view name) {
  for (const auto& entry : kDTypes) {
    if (entry.safetensors == name) return entry.dtype;
  }
  return std::nullopt;
}

std::optional<std::int64_t> checked_numel(std::span<const std::int64_t> shape,
                                          std::size_t itemsize) {
  // The product skips zero dims, so that contiguous_strides of an empty shape cannot overflow.
  auto bytes = static_cast<std::int64_t>(itemsize);
  bool empty = false;
  for (std::int64_t dim : shape) {
    if (dim < 0) return std::nullopt;
    if (dim == 0) {
      empty = true;
      continue;
    }
    if (bytes > INT64_MAX / dim) return std::nullopt;
    bytes *= dim;
  }
  return empty ? 0 : bytes / static_cast<std::int64_t>(itemsize);
}

std::int64_t Tensor::numel() const { return checked_numel(shape).value_or(0); }

std::size_t Tensor::nbytes() const { return static_cast<std::size_t>(numel()) * itemsize(dtype); }

bool Tensor::is_contiguous() const {
  if (numel() == 0) return true;  // as in torch: no element is out of place
  std::int64_t expected = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != expected) return false;
    expected *= shape[i];
  }
  return true;
}

const std::byte* Tensor::data() const {
  if (!storage || storage->data == nullptr)
    fail("tensor", "tensor has no data (read with headers only)");
  return storage->data + offset * static_cast<std::int64_t>(itemsize(dtype));
}

std::vector<std::int64_t> contiguous_strides(std::span<const std::int64_t> shape) {
  std::vector<std::int64_t> strides(shape.size());
  std::int64_t running = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    strides[i] = running;
    running *= std::max<std::int64_t>(shape[i], 1);
  }
  return strides;
}

void check_expansion(const Tensor& tensor, std::string_view what) {
  const std::uint64_t stored = tensor.storage ? tensor.storage->nbytes : 0;
  const std::uint64_t written = tensor.nbytes();
  if (written > stored && written > kMaxExpandedBytes) {
    fail("tensor",
         fmt::format("{}: an expanded view of {} stored bytes that would take {} bytes written out "
                     "(shape [{}], strides [{}]), over the limit of {} for expanded views; if that "
                     "is meant, save tensor.contiguous() in torch",
                     what, stored, written, fmt::join(tensor.shape, ", "),
                     fmt::join(tensor.strides, ", "), kMaxExpandedBytes));
  }
}

void check_view_in_bounds(const Tensor& tensor, std::size_t storage_bytes, std::string_view what) {
  if (tensor.strides.size() != tensor.shape.size()) {
    fail("tensor", fmt::format("{}: {} dims but {} strides", what, tensor.shape.size(),
                               tensor.strides.size()));
  }
  auto numel = checked_numel(tensor.shape, itemsize(tensor.dtype));
  if (!numel) fail("tensor", fmt::format("{}: shape has a negative or overflowing dim", what));
  if (tensor.offset < 0) fail("tensor", fmt::format("{}: negative storage offset", what));
  if (*numel == 0) return;  // an empty view touches no bytes
  // The last element sits at offset + sum((size - 1) * stride); all of it must fit.
  const auto item = static_cast<std::int64_t>(itemsize(tensor.dtype));
  std::int64_t last = tensor.offset;
  for (std::size_t i = 0; i < tensor.shape.size(); ++i) {
    const std::int64_t stride = tensor.strides[i];
    const std::int64_t span = tensor.shape[i] - 1;
    if (stride < 0) fail("tensor", fmt::format("{}: negative stride {}", what, stride));
    // Even the stride of a size-1 dim must be expressible in bytes, as numpy needs it.
    if (stride > INT64_MAX / item) fail("tensor", fmt::format("{}: strides overflow", what));
    if (stride != 0 && span > (INT64_MAX - last) / stride) {
      fail("tensor", fmt::format("{}: strides overflow", what));
    }
    last += span * stride;
  }
  if (last >= INT64_MAX / item) fail("tensor", fmt::format("{}: strides overflow", what));
  const auto end = static_cast<std::uint64_t>((last + 1) * item);
  if (end > storage_bytes) {
    fail("tensor", fmt::format("{}: view ends at byte {} but its storage holds {} bytes", what, end,
                               storage_bytes));
  }
}

void copy_contiguous(const Tensor& tensor, std::byte* out) {
  const std::size_t item = itemsize(tensor.dtype);
  const std::byte* base = tensor.data();
  if (tensor.is_contiguous()) {
    std::memcpy(out, base, tensor.nbytes());
    return;
  }
  const std::int64_t numel = tensor.numel();
  if (numel == 0) return;
  // Walk the index space like an odometer; copy the innermost dim in one run when possible.
  const std::size_t ndim = tensor.shape.size();
  std::vector<std::int64_t> index(ndim, 0);
  const std::int64_t inner = tensor.shape.back();
  const std::int64_t inner_stride = tensor.strides.back();
  for (std::int64_t done = 0; done < numel; done += inner) {
    std::int64_t element = 0;
    for (std::size_t d = 0; d + 1 < ndim; ++d) element += index[d] * tensor.strides[d];
    const std::byte* row = base + element * static_cast<std::int64_t>(item);
    if (inner_stride == 1) {
      std::memcpy(out, row, static_cast<std::size_t>(inner) * item);
      out += static_cast<std::size_t>(inner) * item;
    } else {
      for (std::int64_t j = 0; j < inner; ++j) {
        std::memcpy(out, row + j * inner_stride * static_cast<std::int64_t>(item), item);
        out += item;
      }
    }
    for (std::size_t d = ndim - 1; d-- > 0;) {
      if (++index[d] < tensor.shape[d]) break;
      index[d] = 0;
    }
  }
}

void byteswap_elements(std::byte* data, std::size_t nbytes, std::size_t item) {
  if (item <= 1) return;
  for (std::size_t i = 0; i + item <= nbytes; i += item) std::reverse(data + i, data + i + item);
}

Tensor make_owned_tensor(DType dtype, std::vector<std::int64_t> shape,
                         std::vector<std::byte> bytes) {
  auto owned = std::make_shared<std::vector<std::byte>>(std::move(bytes));
  auto storage = std::make_shared<Storage>(Storage{owned->data(), owned->size(), owned});
  Tensor tensor;
  tensor.dtype = dtype;
  tensor.strides = contiguous_strides(shape);
  tensor.shape = std::move(shape);
  tensor.storage = std::move(storage);
  check_view_in_bounds(tensor, tensor.storage->nbytes, "owned tensor");
  return tensor;
}

}  // namespace torch2mlx
