// write_package: code generation plus the weight writer of the weight converter.
#include "torch2mlx/package.h"

#include <fmt/format.h>

#include <map>
#include <span>

#include "atomic_file.h"
#include "torch2mlx/error.h"
#include "torch2mlx/registry.h"
#include "torch2mlx/weight_converter.h"

namespace torch2mlx {

namespace {

bool is_floating(DType dtype) {
  return dtype == DType::F16 || dtype == DType::BF16 || dtype == DType::F32 || dtype == DType::F64;
}

}  // namespace

PackageResult write_package(const ExportedProgram& program, const std::filesystem::path& directory,
                            const PackageOptions& options) {
  PackageResult result;
  result.model = generate_model(program, options.codegen);
  std::map<std::string, const Tensor*> weights;
  for (const NamedTensor& weight : program.weights) weights.emplace(weight.name, &weight.tensor);
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
