// torch2mlx._core: the C++ core as Python sees it. Kept thin: it moves plain values
// (strings, ints, lists, byte buffers) across, and Python builds numpy arrays on top.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/function.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/shared_ptr.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <exception>
#include <memory>
#include <new>
#include <string>

#include "arrays.h"
#include "bindings.h"
#include "torch2mlx/cast.h"
#include "torch2mlx/checkpoint.h"
#include "torch2mlx/error.h"
#include "torch2mlx/pickle.h"
#include "torch2mlx/quantize.h"
#include "torch2mlx/registry.h"
#include "torch2mlx/safetensors.h"
#include "torch2mlx/weight_converter.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using torch2mlx::bindings::ByteArray;
using torch2mlx::bindings::storage_array;

nb::dict read_checkpoint(const std::filesystem::path& path, bool headers_only) {
  torch2mlx::ReadOptions options;
  options.headers_only = headers_only;
  torch2mlx::Checkpoint checkpoint;
  {
    nb::gil_scoped_release release;
    checkpoint = torch2mlx::bindings::naming_file_when_out_of_memory(
        path, [&] { return torch2mlx::read_checkpoint(path, options); });
  }
  // Storages are numbered in order of first use; tensors refer to them by number.
  const auto [tensors, storages] =
      torch2mlx::bindings::tensor_lists(checkpoint.tensors, headers_only);
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
  torch2mlx::bindings::naming_file_when_out_of_memory(
      path, [&] { torch2mlx::write_safetensors(path, tensors, metadata); });
}

nb::list layer_registry() {
  constexpr std::array<std::string_view, 3> kLayouts{"any", "channels_last", "torch_order"};
  nb::list entries;
  for (const auto& entry : torch2mlx::layer_entries()) {
    nb::list tensors;
    for (const auto& rule : entry.tensors) {
      tensors.append(nb::make_tuple(std::string(rule.name),
                                    std::string(torch2mlx::transform_name(rule.transform))));
    }
    nb::dict item;
    item["torch_type"] = std::string(entry.torch_type);
    item["mlx_layer"] = std::string(entry.mlx_layer);
    item["arguments"] = std::string(entry.arguments);
    item["layout"] = std::string(kLayouts.at(static_cast<std::size_t>(entry.layout)));
    item["tensors"] = tensors;
    item["patterned"] = entry.patterned;
    entries.append(item);
  }
  return entries;
}

using Module = std::tuple<std::string, std::string, std::int64_t>;
using QuantLayer = std::tuple<int, int, std::string>;  // bits, group size, mode

torch2mlx::QuantMode parse_mode(std::string_view component, const std::string& name) {
  const auto mode = torch2mlx::parse_quant_mode(name);
  if (!mode) {
    torch2mlx::fail(component,
                    "unknown quantization mode '" + name + "': use affine, mxfp4, mxfp8 or nvfp4");
  }
  return *mode;
}

nb::dict convert_weights(
    const std::filesystem::path& source, const std::filesystem::path& destination,
    const std::vector<Module>& module_list, const std::optional<std::string>& dtype,
    int quantize_bits, int group_size, std::uint64_t shard_bytes, bool reverse, bool keep_unknown,
    const std::map<std::string, std::string>& metadata, const std::string& digest_key,
    const std::shared_ptr<torch2mlx::FileDigest>& digest,
    const std::optional<std::function<void(std::uint64_t, std::uint64_t)>>& progress,
    const std::string& quantize_mode,
    const std::map<std::string, std::optional<QuantLayer>>& layers) {
  torch2mlx::ConvertOptions options;
  options.quantize_mode = parse_mode("convert", quantize_mode);
  for (const auto& [path, layer] : layers) {
    if (!layer) {
      options.quantize_layers.emplace(path, std::nullopt);
      continue;
    }
    const auto& [bits, group_size, mode] = *layer;
    options.quantize_layers.emplace(
        path, torch2mlx::QuantSpec{bits, group_size, parse_mode("convert", mode)});
  }
  if (dtype) {
    options.dtype = torch2mlx::dtype_from_name(*dtype);
    if (!options.dtype) torch2mlx::fail("convert", "unknown dtype '" + *dtype + "'");
  }
  options.quantize_bits = quantize_bits;
  options.group_size = group_size;
  options.shard_bytes = shard_bytes;
  options.reverse = reverse;
  options.keep_unknown = keep_unknown;
  options.metadata = metadata;
  options.digest_key = digest_key;
  options.digest = digest;
  if (progress) {
    options.progress = [&progress](std::uint64_t done, std::uint64_t total) {
      const nb::gil_scoped_acquire acquire;
      (*progress)(done, total);
    };
  }
  std::vector<torch2mlx::ModuleInfo> modules;
  modules.reserve(module_list.size());
  for (const auto& [path, type, groups] : module_list) modules.push_back({path, type, groups});

  torch2mlx::ConversionPlan plan;
  std::vector<std::string> files;
  {
    const nb::gil_scoped_release release;
    const torch2mlx::Checkpoint checkpoint = torch2mlx::bindings::naming_file_when_out_of_memory(
        source, [&] { return torch2mlx::read_checkpoint(source); });
    if (!options.digest_key.empty() && !options.digest) {
      // Every file the checkpoint was read from: a folder's index and each of its shards.
      options.digest = std::make_shared<torch2mlx::FileDigest>(
          std::vector<std::filesystem::path>(checkpoint.files.begin(), checkpoint.files.end()));
    }
    plan = torch2mlx::plan_conversion(checkpoint, modules, options);
    files = torch2mlx::write_plan(plan, destination, options);
  }
  nb::dict result;
  result["files"] = files;
  result["renamed"] = plan.renamed;
  result["dropped"] = plan.dropped;
  result["notes"] = plan.notes;
  result["unknown"] = plan.unknown;
  nb::list rules;
  for (const auto& planned : plan.tensors) {
    rules.append(nb::make_tuple(planned.source, planned.target, planned.module_type,
                                std::string(torch2mlx::transform_name(planned.transform))));
  }
  result["tensors"] = rules;
  return result;
}

// --- Numerics: cast and quantize over plain byte buffers (Python builds the arrays).

using ConstBytes = nb::ndarray<const std::uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

torch2mlx::DType dtype_named(std::string_view component, const std::string& name) {
  const auto dtype = torch2mlx::dtype_from_name(name);
  if (!dtype) torch2mlx::fail(component, "unknown dtype '" + name + "'");
  return *dtype;
}

// A contiguous tensor over the caller's bytes, which outlive the call.
torch2mlx::Tensor borrowed_tensor(std::string_view component, const ConstBytes& bytes,
                                  const std::string& dtype,
                                  const std::vector<std::int64_t>& shape) {
  torch2mlx::Tensor tensor;
  tensor.dtype = dtype_named(component, dtype);
  if (!torch2mlx::checked_numel(shape, torch2mlx::itemsize(tensor.dtype))) {
    torch2mlx::fail(component, "shape has a negative or overflowing dim");
  }
  tensor.shape = shape;
  tensor.strides = torch2mlx::contiguous_strides(shape);
  auto* data = const_cast<std::byte*>(reinterpret_cast<const std::byte*>(bytes.data()));
  tensor.storage =
      std::make_shared<torch2mlx::Storage>(torch2mlx::Storage{data, bytes.size(), nullptr});
  if (tensor.nbytes() != bytes.size()) {
    torch2mlx::fail(component, "shape and byte count disagree");
  }
  return tensor;
}

ByteArray cast_bytes(const ConstBytes& bytes, const std::string& dtype,
                     const std::vector<std::int64_t>& shape, const std::string& to) {
  const torch2mlx::Tensor tensor = borrowed_tensor("cast", bytes, dtype, shape);
  const torch2mlx::DType target = dtype_named("cast", to);
  const std::size_t nbytes = static_cast<std::size_t>(tensor.numel()) * torch2mlx::itemsize(target);
  // Not zero-filled first: cast_into writes every byte, and a fill would be one more pass.
  auto buffer = std::make_unique_for_overwrite<std::byte[]>(nbytes);
  {
    const nb::gil_scoped_release release;
    torch2mlx::cast_into(tensor, target, buffer.get());
  }
  nb::capsule owner(buffer.get(),
                    [](void* pointer) noexcept { delete[] static_cast<std::byte*>(pointer); });
  return ByteArray(reinterpret_cast<std::uint8_t*>(buffer.release()), {nbytes}, owner);
}

nb::tuple quantize_bytes(const ConstBytes& bytes, const std::string& dtype,
                         const std::vector<std::int64_t>& shape, int bits, int group_size,
                         const std::string& name, const std::string& mode) {
  const torch2mlx::Tensor tensor = borrowed_tensor("quantize", bytes, dtype, shape);
  const torch2mlx::QuantMode quant_mode = parse_mode("quantize", mode);
  torch2mlx::QuantizedTensor result;
  {
    const nb::gil_scoped_release release;
    result = torch2mlx::quantize(tensor, bits, group_size, name, quant_mode);
  }
  nb::object biases = nb::none();
  if (result.biases.storage) biases = nb::cast(storage_array(result.biases.storage));
  return nb::make_tuple(storage_array(result.weights.storage), storage_array(result.scales.storage),
                        biases, result.weights.shape, result.scales.shape);
}

nb::tuple dequantize_bytes(const ConstBytes& weights, const std::vector<std::int64_t>& weight_shape,
                           const ConstBytes& scales, const ConstBytes& biases,
                           const std::string& dtype, const std::vector<std::int64_t>& scale_shape,
                           int bits, int group_size, const std::string& name) {
  const torch2mlx::QuantizedTensor quantized{
      borrowed_tensor("dequantize", weights, "uint32", weight_shape),
      borrowed_tensor("dequantize", scales, dtype, scale_shape),
      borrowed_tensor("dequantize", biases, dtype, scale_shape)};
  torch2mlx::Tensor result;
  {
    const nb::gil_scoped_release release;
    result = torch2mlx::dequantize(quantized, bits, group_size, name);
  }
  return nb::make_tuple(storage_array(result.storage), result.shape);
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "The torch2mlx C++ core: checkpoint readers and writers.";
  // Registers the Python type and the C++ -> Python translation; the object is kept alive
  // by the module attribute it creates.
  const nb::exception<torch2mlx::Error> core_error(m, "CoreError", PyExc_ValueError);
  // Any other C++ exception from the core is a bug of ours (a missing map entry, an index
  // out of range): it reaches Python as a CoreError that says so, never as a bare
  // "IndexError: map::at". Python's own errors, nanobind's and running out of memory pass
  // on to their usual translations. (Translators registered later are tried first.)
  nb::register_exception_translator(
      [](const std::exception_ptr& error, void* payload) {
        try {
          std::rethrow_exception(error);
        } catch (const torch2mlx::Error&) {
          throw;
        } catch (const nb::python_error&) {
          throw;
        } catch (const nb::builtin_exception&) {
          throw;
        } catch (const std::bad_alloc&) {
          throw;
        } catch (const std::exception& internal) {
          const std::string message = std::string("[core] internal error (") + internal.what() +
                                      "); this is a torch2mlx bug: please report it with the "
                                      "file or model that caused it";
          PyErr_SetString(static_cast<PyObject*>(payload), message.c_str());
        }
      },
      core_error.ptr());
  bind_pt2(m);
  bind_codegen(m);
  bind_analyzer(m);

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
  m.def(
      "dtype_names",
      [] {
        std::vector<std::string> names;
        for (const std::string_view name : torch2mlx::dtype_names()) names.emplace_back(name);
        return names;
      },
      "The dtypes torch and MLX share, by numpy name: the core's one dtype table.");
  m.def("layer_registry", &layer_registry,
        "The layer registry: torch type, MLX layer, constructor arguments, layout, tensor rules.");
  m.def("convert_weights", &convert_weights, "source"_a, "destination"_a, "modules"_a, "dtype"_a,
        "quantize_bits"_a, "group_size"_a, "shard_bytes"_a, "reverse"_a, "keep_unknown"_a,
        "metadata"_a, "digest_key"_a, "digest"_a.none(), "progress"_a, "quantize_mode"_a = "affine",
        "quantize_layers"_a = std::map<std::string, std::optional<QuantLayer>>{},
        "Converts a checkpoint with the registry's rules for the given (path, type, groups) "
        "modules and writes (sharded) safetensors; with a digest_key, the metadata also gets "
        "the source file's SHA-256 under that key (from `digest` when the caller started one).");
  nb::class_<torch2mlx::FileDigest>(m, "FileDigest",
                                    "The SHA-256 of files, computed on a thread from construction.")
      .def(nb::init<std::vector<std::filesystem::path>>(), "paths"_a)
      .def(
          "wait",
          [](torch2mlx::FileDigest& digest) {
            const nb::gil_scoped_release release;
            return digest.wait();
          },
          "Waits for the digest; returns it in hex.");
  m.def("cast", &cast_bytes, "data"_a, "dtype"_a, "shape"_a, "to"_a,
        "Casts a contiguous float buffer (uint8 view) of dtype and shape to dtype `to`, bit for "
        "bit as torch's .to(); returns the new buffer as uint8.");
  m.def("quantize", &quantize_bytes, "data"_a, "dtype"_a, "shape"_a, "bits"_a, "group_size"_a,
        "name"_a, "mode"_a = "affine",
        "mx.quantize of a contiguous float buffer in a mode (affine, mxfp4, mxfp8, nvfp4): "
        "(weights, scales, biases or None) as uint8 buffers, then the shapes of the weights "
        "and of the scales.");
  m.def("dequantize", &dequantize_bytes, "weights"_a, "weight_shape"_a, "scales"_a, "biases"_a,
        "dtype"_a, "scale_shape"_a, "bits"_a, "group_size"_a, "name"_a,
        "mx.dequantize (affine): (uint8 buffer of the scales' dtype, shape).");
  m.def("allowed_globals", &torch2mlx::pickle::allowed_globals,
        "The pickle globals a checkpoint may name (torch.load(weights_only=True)'s allowlist).");
}
