// Floor 1 of the core: dtypes and a tensor as a typed, strided view over bytes that
// somebody else owns (a memory-mapped file, a decompressed buffer, a caller's array).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace torch2mlx {

class MappedFile;

/// Element types that torch and MLX share.
enum class DType : std::uint8_t { Bool, U8, I8, I16, I32, I64, U16, U32, U64, F16, BF16, F32, F64 };

/// Bytes per element.
[[nodiscard]] std::size_t itemsize(DType dtype);
/// The numpy/MLX name, e.g. "float32", "bfloat16", "bool".
[[nodiscard]] std::string_view dtype_name(DType dtype);
/// Inverse of dtype_name.
[[nodiscard]] std::optional<DType> dtype_from_name(std::string_view name);
/// The name of every DType, in the enum's order: the one table of dtypes torch and MLX share.
[[nodiscard]] std::vector<std::string_view> dtype_names();
/// The safetensors name, e.g. "F32", "BF16", "BOOL".
[[nodiscard]] std::string_view safetensors_dtype_name(DType dtype);
/// Inverse of safetensors_dtype_name.
[[nodiscard]] std::optional<DType> dtype_from_safetensors(std::string_view name);

/// A run of bytes plus whatever keeps them alive (a mapping, a vector, nothing).
struct Storage {
  std::byte* data = nullptr;
  std::size_t nbytes = 0;
  std::shared_ptr<void> owner;
  // The file mapping `data` lies in, or null. Such pages can be handed back to the kernel
  // once read (they are read again from the file if needed), and the bytes can be copied
  // file to file without passing through this process.
  const MappedFile* file = nullptr;
};

/// A strided view of `shape` elements of `dtype` inside a storage. Strides and offset
/// count elements, as in torch. A tensor read with headers only has no storage.
struct Tensor {
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::vector<std::int64_t> strides;
  std::int64_t offset = 0;
  std::shared_ptr<Storage> storage;

  /// Number of elements (1 for a 0-d tensor).
  [[nodiscard]] std::int64_t numel() const;
  /// Bytes the elements occupy when packed contiguously.
  [[nodiscard]] std::size_t nbytes() const;
  /// True when the elements are packed row-major with no gaps.
  [[nodiscard]] bool is_contiguous() const;
  /// Pointer to element 0; requires a storage.
  [[nodiscard]] const std::byte* data() const;
};

/// The most dims a tensor may have: numpy's limit (NPY_MAXDIMS), and so what torch2mlx can
/// hand to Python. Readers refuse more, naming the tensor.
inline constexpr std::size_t kMaxDims = 64;

/// Row-major strides for `shape`.
[[nodiscard]] std::vector<std::int64_t> contiguous_strides(std::span<const std::int64_t> shape);

/// Product of the dims, or nullopt if a dim is negative or the non-zero dims times `itemsize`
/// overflow int64 (numpy refuses such a shape even when another dim is 0).
[[nodiscard]] std::optional<std::int64_t> checked_numel(std::span<const std::int64_t> shape,
                                                        std::size_t itemsize = 1);

/// Validates that the view lies inside `storage_bytes`, naming `what` in the error.
void check_view_in_bounds(const Tensor& tensor, std::size_t storage_bytes, std::string_view what);

/// The most bytes an expanded view (one whose elements overlap in storage, as
/// `zeros(1).expand(2**38)` does) may take once written out in full: a 1 kB file must not
/// make torch2mlx allocate or write a terabyte.
inline constexpr std::uint64_t kMaxExpandedBytes = std::uint64_t{1} << 30;

/// Refuses, naming `what`, a view that written out would exceed both its storage and
/// kMaxExpandedBytes.
void check_expansion(const Tensor& tensor, std::string_view what);

/// Copies the elements in row-major order into `out`, which holds tensor.nbytes().
void copy_contiguous(const Tensor& tensor, std::byte* out);

/// Reverses the byte order of every element in place (for big-endian checkpoints).
void byteswap_elements(std::byte* data, std::size_t nbytes, std::size_t itemsize);

/// A contiguous tensor that owns a copy of `bytes`.
[[nodiscard]] Tensor make_owned_tensor(DType dtype, std::vector<std::int64_t> shape,
                                       std::vector<std::byte> bytes);

/// A tensor together with the key it is stored under.
struct NamedTensor {
  std::string name;
  Tensor tensor;
};

}  // namespace torch2mlx
