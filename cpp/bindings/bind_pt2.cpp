// torch2mlx._core.read_pt2: a .pt2 archive as plain Python values (the graph as dicts and
// lists of strings, the weights as read_checkpoint returns tensors).
#include <nanobind/nanobind.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <array>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "arrays.h"
#include "bindings.h"
#include "torch2mlx/checkpoint.h"
#include "torch2mlx/graph.h"
#include "torch2mlx/op_mapping.h"
#include "torch2mlx/pt2.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

constexpr std::array<std::string_view, 6> kInputKinds{"user_input", "parameter", "buffer",
                                                      "constant",   "token",     "custom_object"};
constexpr std::array<std::string_view, 6> kOutputKinds{
    "user_output",        "buffer_mutation", "user_input_mutation",
    "parameter_mutation", "token",           "other"};

// The value names an argument refers to ("" marks a None inside an optional-tensor list).
std::vector<std::string> names_of(const torch2mlx::Arg& arg) {
  std::vector<std::string> names;
  for (const auto& name : arg.names) {
    if (!name.empty()) names.push_back(name);
  }
  return names;
}

nb::dict node_dict(const torch2mlx::Node& node) {
  nb::list frames;
  for (const auto& frame : node.module_stack) {
    frames.append(nb::make_tuple(frame.key, frame.path, frame.type));
  }
  std::vector<std::string> inputs;
  for (const auto& input : node.inputs) {
    for (auto& name : names_of(input.arg)) inputs.push_back(std::move(name));
  }
  std::vector<std::string> outputs;
  for (const auto& output : node.outputs) {
    for (auto& name : names_of(output)) outputs.push_back(std::move(name));
  }
  nb::dict item;
  item["name"] = node.name;
  item["target"] = node.target;
  item["module_stack"] = frames;
  item["stack_trace"] = node.stack_trace;
  item["inputs"] = inputs;
  item["outputs"] = outputs;
  // Convolutions carry their groups, which the weight rules of transposed convs need.
  const torch2mlx::Arg* groups = node.input("groups");
  if (groups != nullptr && groups->kind == torch2mlx::ArgKind::Int && !groups->ints.empty()) {
    item["groups"] = groups->ints[0];
  }
  return item;
}

nb::dict read_pt2(const std::filesystem::path& path, bool headers_only, bool allow_meta_weights) {
  torch2mlx::ReadOptions options;
  options.headers_only = headers_only;
  options.allow_meta_weights = allow_meta_weights;
  torch2mlx::ExportedProgram program;
  {
    const nb::gil_scoped_release release;
    program = torch2mlx::bindings::naming_file_when_out_of_memory(
        path, [&] { return torch2mlx::read_pt2(path, options); });
  }
  nb::list nodes;
  for (const auto& node : program.nodes) nodes.append(node_dict(node));
  nb::list inputs;
  for (const auto& input : program.inputs) {
    nb::dict item;
    item["kind"] = std::string(kInputKinds.at(static_cast<std::size_t>(input.kind)));
    item["name"] = input.name;
    item["target"] = input.target;
    item["persistent"] = input.persistent;
    inputs.append(item);
  }
  nb::list outputs;
  for (const auto& output : program.outputs) {
    nb::dict item;
    item["kind"] = std::string(kOutputKinds.at(static_cast<std::size_t>(output.kind)));
    item["names"] = names_of(output.value);
    item["target"] = output.target;
    outputs.append(item);
  }
  nb::dict ranges;
  for (const auto& [symbol, range] : program.ranges) {
    ranges[symbol.c_str()] = nb::make_tuple(range.min, range.max);
  }
  const auto [weights, storages] = torch2mlx::bindings::tensor_lists(program.weights, headers_only);
  nb::dict result;
  result["schema_version"] =
      nb::make_tuple(program.schema_version.first, program.schema_version.second);
  result["torch_version"] = program.torch_version;
  result["nodes"] = nodes;
  result["inputs"] = inputs;
  result["outputs"] = outputs;
  result["ranges"] = ranges;
  result["in_spec"] = program.in_spec;
  result["out_spec"] = program.out_spec;
  result["weights"] = weights;
  result["storages"] = storages;
  result["torch_hazard"] = torch2mlx::torch_loading_hazard(program);
  result["program_json"] = nb::bytes(program.source_json.data(), program.source_json.size());
  return result;
}

}  // namespace

void bind_pt2(nb::module_& m) {
  m.def("read_pt2", &read_pt2, "path"_a, "headers_only"_a = false, "allow_meta_weights"_a = false,
        "Reads a torch.export archive (.pt2) without running code from it: a dict of "
        "schema_version, torch_version, nodes (name, target, module_stack, stack_trace, inputs, "
        "outputs), inputs (kind, name, target, persistent), outputs (kind, names, target), "
        "ranges ({symbol: (min, max)}), in_spec, out_spec, weights (name, dtype, shape, "
        "strides, offset, storage index, storage bytes), storages, program_json (the JSON text "
        "torch's loader reads) and torch_hazard (why torch must not load it, or '').");
}
