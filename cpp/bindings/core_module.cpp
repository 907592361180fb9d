// torch2mlx._core: the C++ core as Python sees it. Kept thin: it moves plain values
// (strings, ints, lists, byte buffers) across, and Python builds numpy arrays on top.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <unordered_map>

#include "torch2mlx/checkpoint.h"
#include "torch2mlx/error.h"
#include "torch2mlx/pickle.h"
#include "torch2mlx/safetensors.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using ByteArray = nb::ndarray<nb::numpy, std::uint8_t, nb::ndim<1>>;

// A 1-d uint8 numpy array over a storage's bytes; the capsule keeps the storage (and the
// mapping behind it) alive for as long as any array views it.
ByteArray storage_array(const std::shared_ptr<torch2mlx::Storage>& storage) {
  auto* keep = new std::shared_ptr<torch2mlx::Storage>(storage);
  nb::capsule owner(keep, [](void* pointer) noexcept {
    delete static_cast<std::shared_ptr<torch2mlx::Storage>*>(pointer);
  });
  return ByteArray(storage->data, {storage->nbytes}, owner);
}

nb::dict read_checkpoint(const std::filesystem::path& path, bool headers_only) {
  torch2mlx::ReadOptions options;
  options.headers_only = headers_only;
  torch2mlx::Checkpoint checkpoint;
  {
    nb::gil_scoped_release release;
    checkpoint = torch2mlx::read_checkpoint(path, options);
  }
  // Storages are numbered in order of first use; tensors refer to them by number.
  std::unordered_map<const torch2mlx::Storage*, std::size_t> numbers;
  nb::list storages;
  nb::list tensors;
  for (const auto& [name, tensor] : checkpoint.tensors) {
    auto [found, inserted] = numbers.emplace(tensor.storage.get(), numbers.size());
    if (inserted) {
      if (headers_only || tensor.storage->data == nullptr) {
        storages.append(nb::none());
      } else {
        storages.append(storage_array(tensor.storage));
      }
    }
    tensors.append(nb::make_tuple(name, std::string(torch2mlx::dtype_name(tensor.dtype)),
                                  tensor.shape, tensor.strides, tensor.offset, found->second,
                                  tensor.storage->nbytes));
  }
  nb::list others;
  for (const auto& leaf : checkpoint.others)
    others.append(nb::make_tuple(leaf.path, leaf.type, leaf.repr));
  nb::dict result;
  result["format"] = checkpoint.format;
  result["files"] = checkpoint.files;
  result["metadata"] = checkpoint.metadata;
  result["tensors"] = tensors;
  result["storages"] = storages;
  result["others"] = others;
  return result;
}

using Entry = std::tuple<std::string, std::string, std::vector<std::int64_t>,
                         nb::ndarray<std::uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>>;

void save_safetensors(const std::filesystem::path& path, const std::vector<Entry>& entries,
                      const std::map<std::string, std::string>& metadata) {
  std::vector<torch2mlx::NamedTensor> tensors;
  tensors.reserve(entries.size());
  for (const auto& [name, dtype_name, shape, bytes] : entries) {
    const auto dtype = torch2mlx::dtype_from_name(dtype_name);
    if (!dtype) {
      std::string message = "tensor '";
      message.append(name).append("' has dtype ").append(dtype_name);
      message.append(", which safetensors output does not support");
      torch2mlx::fail("safetensors", message);
    }
    // The caller's arrays outlive this call, so the storage borrows their bytes.
    auto storage = std::make_shared<torch2mlx::Storage>(
        torch2mlx::Storage{reinterpret_cast<std::byte*>(bytes.data()), bytes.size(), nullptr});
    torch2mlx::Tensor tensor;
    tensor.dtype = *dtype;
    tensor.shape = shape;
    tensor.strides = torch2mlx::contiguous_strides(shape);
    tensor.storage = storage;
    if (tensor.nbytes() != bytes.size()) {
      torch2mlx::fail("safetensors", "tensor '" + name + "': shape and byte count disagree");
    }
    tensors.push_back({name, std::move(tensor)});
  }
  nb::gil_scoped_release release;
  torch2mlx::write_safetensors(path, tensors, metadata);
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "The torch2mlx C++ core: checkpoint readers and writers.";
  // Registers the Python type and the C++ -> Python translation; the object is kept alive
  // by the module attribute it creates.
  const nb::exception<torch2mlx::Error> core_error(m, "CoreError", PyExc_ValueError);

  m.def("read_checkpoint", &read_checkpoint, "path"_a, "headers_only"_a = false,
        "Reads any supported checkpoint: a dict of format, files, metadata, tensors "
        "(name, dtype, shape, strides, offset, storage index, storage bytes), storages and "
        "other (non-tensor) leaves.");
  m.def("save_safetensors", &save_safetensors, "path"_a, "entries"_a, "metadata"_a,
        "Writes (name, dtype, shape, uint8 bytes) entries to a safetensors file atomically.");
  m.def(
      "detect_format",
      [](const std::filesystem::path& path) { return torch2mlx::detect_format(path); }, "path"_a,
      "Names a file's format from its magic bytes.");
  m.def("allowed_globals", &torch2mlx::pickle::allowed_globals,
        "The pickle globals a checkpoint may name (torch.load(weights_only=True)'s allowlist).");
}
