// Shared by the libFuzzer targets: wrap the input as a file, and check that whatever a reader
// accepts is safe to hand to Python, which builds numpy views on it without further checks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "torch2mlx/checkpoint.h"
#include "torch2mlx/error.h"
#include "torch2mlx/mapped_file.h"
#include "torch2mlx/tensor.h"

namespace torch2mlx::fuzz {

/// The input as an in-memory file called `name`.
inline std::shared_ptr<MappedFile> file_of(const std::uint8_t* data, std::size_t size,
                                           std::string name) {
  const auto* first = reinterpret_cast<const std::byte*>(data);
  return MappedFile::from_bytes(std::vector<std::byte>(first, first + size), std::move(name));
}

/// Stops the run: libFuzzer records the input as a crash.
[[noreturn]] inline void broken(const char* what, const std::string& tensor) {
  std::fprintf(stderr, "fuzz: a reader accepted a tensor it should have refused: %s ('%s')\n", what,
               tensor.c_str());
  std::abort();
}

/// Checks a tensor a reader returned: its view fits its storage, numpy can describe it (sizes,
/// strides and offset in bytes fit in int64), and its first and last bytes can be read
/// (AddressSanitizer checks those reads).
inline void check_tensor(const NamedTensor& named) {
  const Tensor& tensor = named.tensor;
  if (!tensor.storage) broken("no storage", named.name);
  try {
    check_view_in_bounds(tensor, tensor.storage->nbytes, named.name);
  } catch (const Error&) {
    broken("view outside its storage", named.name);
  }
  const auto item = static_cast<std::int64_t>(itemsize(tensor.dtype));
  std::int64_t elements = 1;  // product of the non-zero dims, as numpy computes it
  for (const std::int64_t dim : tensor.shape) {
    if (dim > 0 && elements > INT64_MAX / item / dim) broken("size in bytes overflows", named.name);
    if (dim > 0) elements *= dim;
  }
  if (tensor.numel() == 0 || tensor.storage->data == nullptr) return;
  std::int64_t last = tensor.offset;
  for (std::size_t i = 0; i < tensor.shape.size(); ++i) {
    last += (tensor.shape[i] - 1) * tensor.strides[i];
  }
  const volatile std::byte* data = tensor.storage->data;
  static_cast<void>(data[tensor.offset * item]);
  static_cast<void>(data[(last + 1) * item - 1]);
}

/// check_tensor for every tensor of a checkpoint.
inline void check_checkpoint(const Checkpoint& checkpoint) {
  for (const auto& named : checkpoint.tensors) check_tensor(named);
}

}  // namespace torch2mlx::fuzz
