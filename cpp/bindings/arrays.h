// Tensors across the Python boundary, shared by the bindings that return them: storages as
// 1-d uint8 numpy arrays whose capsule owns the Storage, tensors as plain tuples that refer
// to their storage by number. Python builds strided arrays on top (zero-copy).
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "torch2mlx/tensor.h"

namespace torch2mlx::bindings {

using ByteArray = nanobind::ndarray<nanobind::numpy, std::uint8_t, nanobind::ndim<1>>;

/// A 1-d uint8 numpy array over a storage's bytes; the capsule keeps the storage (and the
/// mapping behind it) alive for as long as any array views it.
inline ByteArray storage_array(const std::shared_ptr<Storage>& storage) {
  auto* keep = new std::shared_ptr<Storage>(storage);
  nanobind::capsule owner(
      keep, [](void* pointer) noexcept { delete static_cast<std::shared_ptr<Storage>*>(pointer); });
  return ByteArray(storage->data, {storage->nbytes}, owner);
}

/// (tensors, storages): tensors as (name, dtype, shape, strides, offset, storage index,
/// storage bytes) tuples, storages numbered in order of first use as uint8 arrays (None when
/// only headers were read), so tensors that shared a storage still share one array.
inline std::pair<nanobind::list, nanobind::list> tensor_lists(
    const std::vector<NamedTensor>& named_tensors, bool headers_only) {
  // The cyclic GC paused while the lists are built: a header may list a million tensors, and
  // every few hundred new tuples and lists would trigger a collection that walks them all.
  // (They cannot form cycles.)
  struct GcPause {
    int was_enabled = PyGC_Disable();
    GcPause() = default;
    GcPause(const GcPause&) = delete;
    GcPause& operator=(const GcPause&) = delete;
    GcPause(GcPause&&) = delete;
    GcPause& operator=(GcPause&&) = delete;
    ~GcPause() {
      if (was_enabled != 0) PyGC_Enable();
    }
  } const pause;
  std::unordered_map<const Storage*, std::size_t> numbers;
  numbers.reserve(named_tensors.size());
  // One Python string per dtype, shared by every tensor (a header may list a million).
  std::unordered_map<DType, nanobind::object> dtype_names;
  nanobind::list storages;
  nanobind::list tensors;
  for (const auto& [name, tensor] : named_tensors) {
    auto [dtype, added] = dtype_names.try_emplace(tensor.dtype);
    if (added) dtype->second = nanobind::str(std::string(dtype_name(tensor.dtype)).c_str());
    auto [found, inserted] = numbers.emplace(tensor.storage.get(), numbers.size());
    if (inserted) {
      if (headers_only || tensor.storage->data == nullptr) {
        storages.append(nanobind::none());
      } else {
        storages.append(storage_array(tensor.storage));
      }
    }
    tensors.append(nanobind::make_tuple(name, dtype->second, tensor.shape, tensor.strides,
                                        tensor.offset, found->second, tensor.storage->nbytes));
  }
  return {tensors, storages};
}

}  // namespace torch2mlx::bindings
