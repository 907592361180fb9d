// write_package: code generation plus the weight writer of the weight converter.
#include "torch2mlx/package.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <map>
#include <span>

#include "atomic_file.h"
#include "torch2mlx/checkpoint.h"
#include "torch2mlx/error.h"
#include "torch2mlx/registry.h"
#include "torch2mlx/weight_converter.h"

namespace torch2mlx {

namespace {

bool is_floating(DType dtype) {
  return dtype == DType::F16 || dtype == DType::BF16 || dtype == DType::F32 || dtype == DType::F64;
}

// A weight from `checkpoint` in place of the program's own, which must agree with it in
// dtype and shape: the program was captured from the model that checkpoint fills.
const Tensor& checkpoint_weight(const Tensor& in_program, const Tensor& stored,
                                const std::string& name, const Checkpoint& checkpoint) {
  if (stored.dtype != in_program.dtype || stored.shape != in_program.shape) {
    fail("package", fmt::format("weight '{}' is {}{} in {} but {}{} in the captured model; "
                                "build the model from that folder's config.json",
                                name, dtype_name(stored.dtype), fmt::join(stored.shape, "x"),
                                checkpoint.files.empty() ? "the checkpoint" : checkpoint.files[0],
                                dtype_name(in_program.dtype), fmt::join(in_program.shape, "x")));
  }
  return stored;
}

// The bytes of each weight the model reads: the program's, or the checkpoint's of that name.
std::map<std::string, const Tensor*> weight_sources(
    const ExportedProgram& program, const Checkpoint& checkpoint,
    const std::map<std::string, std::string>& aliases) {
  std::map<std::string, const Tensor*> stored;
  for (const NamedTensor& tensor : checkpoint.tensors) stored.emplace(tensor.name, &tensor.tensor);
  std::map<std::string, const Tensor*> weights;
  for (const NamedTensor& weight : program.weights) {
    const auto alias = aliases.find(weight.name);
    const auto found = stored.find(alias == aliases.end() ? weight.name : alias->second);
    const bool has_bytes = weight.tensor.storage && weight.tensor.storage->nbytes > 0;
    if (found != stored.end()) {
      weights.emplace(weight.name,
                      &checkpoint_weight(weight.tensor, *found->second, weight.name, checkpoint));
    } else if (has_bytes || weight.tensor.numel() == 0) {
      weights.emplace(weight.name, &weight.tensor);
    } else {
      fail("package",
           fmt::format("weight '{}' was captured on the meta device and {} does not "
                       "hold it; convert from the folder whose config built the model",
                       weight.name,
                       checkpoint.files.empty() ? "the checkpoint" : checkpoint.files[0]));
    }
  }
  return weights;
}

}  // namespace

PackageResult write_package(const ExportedProgram& program, const std::filesystem::path& directory,
                            const PackageOptions& options) {
  PackageResult result;
  result.model = generate_model(program, options.codegen);
  Checkpoint checkpoint;
  if (!options.weights_from.empty()) checkpoint = read_checkpoint(options.weights_from);
  const std::map<std::string, const Tensor*> weights =
      weight_sources(program, checkpoint, options.weight_aliases);
  ConversionPlan plan;
  for (const PackageWeight& weight : result.model.weights) {
    const auto found = weights.find(weight.source);
    if (found == weights.end()) {
      fail("package", fmt::format("the program reads weight '{}' but the archive does not hold "
                                  "it; export the model again",
                                  weight.source));
    }
    PlannedTensor planned;
    planned.source = weight.source;
    planned.target = weight.name;
    planned.transform = weight.transform;
    planned.groups = weight.groups;
    planned.input = *found->second;
    planned.dtype =
        options.dtype && is_floating(planned.input.dtype) ? *options.dtype : planned.input.dtype;
    planned.float_dtype = planned.dtype;
    planned.shape = transformed_shape(planned.transform, planned.input.shape, planned.groups);
    plan.tensors.push_back(std::move(planned));
  }
  ConvertOptions convert;
  convert.dtype = options.dtype;
  convert.shard_bytes = options.shard_bytes;
  convert.threads = options.threads;
  convert.metadata = {{"format", "mlx"}};
  const std::filesystem::path model_py = directory / "model.py";
  AtomicFile source(model_py);
  source.write(std::as_bytes(std::span(result.model.source)));
  result.weight_files = write_plan(plan, directory / "model.safetensors", convert);
  source.commit();
  return result;
}

}  // namespace torch2mlx
