// Python bindings of the code generator and the op registry.
#include <nanobind/nanobind.h>
#include <nanobind/stl/filesystem.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <utility>

#include "bindings.h"
#include "torch2mlx/codegen.h"
#include "torch2mlx/error.h"
#include "torch2mlx/graph.h"
#include "torch2mlx/op_mapping.h"
#include "torch2mlx/package.h"
#include "torch2mlx/pt2.h"
#include "torch2mlx/tensor.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

nb::dict model_dict(const torch2mlx::GeneratedModel& model) {
  nb::dict result;
  result["source"] = model.source;
  nb::list weights;
  for (const auto& weight : model.weights) {
    weights.append(nb::make_tuple(weight.name, weight.source,
                                  std::string(transform_name(weight.transform)), weight.groups));
  }
  result["weights"] = weights;
  nb::list inputs;
  for (const auto& input : model.inputs) {
    nb::dict entry;
    entry["name"] = input.name;
    entry["dtype"] = input.dtype;
    entry["shape"] = input.shape;
    if (!input.default_fill.empty()) entry["default"] = input.default_fill;
    inputs.append(entry);
  }
  result["inputs"] = inputs;
  result["notes"] = model.notes;
  result["transposes"] = model.transposes;
  result["direct_weights"] = model.direct_weights;
  nb::list modules;
  for (const auto& boundary : model.modules) {
    nb::dict entry;
    entry["path"] = boundary.path;
    entry["mlx_path"] = boundary.mlx_path;
    entry["type"] = boundary.type;
    entry["ops"] = boundary.ops;
    entry["source_line"] = boundary.source_line;
    entry["input_perm"] = boundary.input_perm;
    entry["output_perms"] = boundary.output_perms;
    modules.append(entry);
  }
  result["modules"] = modules;
  nb::list fields;
  for (const auto& field : model.model_args) {
    fields.append(nb::make_tuple(field.name, field.value, field.integer));
  }
  result["model_args"] = fields;
  return result;
}

std::optional<torch2mlx::DType> parse_dtype(const std::optional<std::string>& name) {
  if (!name) return std::nullopt;
  const auto dtype = torch2mlx::dtype_from_name(*name);
  if (!dtype) torch2mlx::fail("package", "unknown dtype '" + *name + "'");
  return dtype;
}

// ModelArgsSpec from Python: fields as (name, value, integer) and probes as (field, value,
// JSON of the probe's ExportedProgram, buffers[, base: [(field, value)]]). A probe's parameters are
// on torch's meta device; its buffers and constants, which passes read (a rotary table's
// frequencies), come as (name, dtype, shape, bytes).
torch2mlx::ModelArgsSpec model_args_spec(const nb::handle& spec) {
  torch2mlx::ModelArgsSpec result;
  if (spec.is_none()) return result;
  for (const nb::handle entry : spec["fields"]) {
    result.fields.push_back(
        {nb::cast<std::string>(entry[0]), nb::cast<double>(entry[1]), nb::cast<bool>(entry[2])});
  }
  for (const nb::handle entry : spec["probes"]) {
    torch2mlx::ConfigProbe probe;
    probe.field = nb::cast<std::string>(entry[0]);
    probe.value = nb::cast<double>(entry[1]);
    if (nb::len(entry) > 4) {
      for (const nb::handle change : entry[4]) {
        probe.base.emplace_back(nb::cast<std::string>(change[0]), nb::cast<double>(change[1]));
      }
    }
    try {
      probe.program = torch2mlx::parse_exported_program(nb::cast<std::string>(entry[2]),
                                                        "probe of " + probe.field);
    } catch (const torch2mlx::Error& error) {
      probe.error = error.what();  // generate_model drops it, with a note
      result.probes.push_back(std::move(probe));
      continue;
    }
    for (const nb::handle buffer : entry[3]) {
      const auto dtype = parse_dtype(nb::cast<std::string>(buffer[1]));
      const auto bytes = nb::cast<nb::bytes>(buffer[3]);
      const auto* data = static_cast<const std::byte*>(bytes.data());
      probe.program.weights.push_back(
          {nb::cast<std::string>(buffer[0]),
           torch2mlx::make_owned_tensor(*dtype, nb::cast<std::vector<std::int64_t>>(buffer[2]),
                                        std::vector<std::byte>(data, data + bytes.size()))});
    }
    result.probes.push_back(std::move(probe));
  }
  return result;
}

}  // namespace

void bind_codegen(nb::module_& m) {
  m.def(
      "generate_model",
      [](const std::string& json, const std::string& name, const std::string& dump_ir_after) {
        torch2mlx::GeneratedModel model;
        std::string dump;
        {
          nb::gil_scoped_release release;
          model = torch2mlx::generate_model(
              torch2mlx::parse_exported_program(json, name),
              {dump_ir_after, [&](const std::string& text) { dump = text; }});
        }
        nb::dict result = model_dict(model);
        result["ir_dump"] = dump;
        return result;
      },
      "json"_a, "name"_a = "model.json", "dump_ir_after"_a = "",
      "Generates model.py from the JSON of an ExportedProgram: a dict of source, weights "
      "(name, source, layout, groups), inputs, notes, transposes, modules (the module calls "
      "verification observes) and ir_dump (the IR after the "
      "pass dump_ir_after names, if any).");
  m.def(
      "write_package",
      [](const std::filesystem::path& pt2, const std::filesystem::path& directory,
         const std::optional<std::string>& dtype, std::uint64_t shard_bytes,
         const std::string& dump_ir_after, const nb::object& model_args,
         const std::optional<std::filesystem::path>& weights_from,
         const std::map<std::string, std::string>& weight_aliases,
         const std::map<std::string, std::pair<std::string, std::string>>& input_defaults) {
        torch2mlx::PackageOptions options;
        torch2mlx::ReadOptions read;
        if (weights_from) {
          options.weights_from = *weights_from;
          options.weight_aliases = weight_aliases;
          read.allow_meta_weights = true;
        }
        options.codegen.model_args = model_args_spec(model_args);
        for (const auto& [input, spec] : input_defaults) {
          options.codegen.input_defaults[input] = {spec.first, spec.second};
        }
        options.dtype = parse_dtype(dtype);
        options.shard_bytes = shard_bytes;
        options.codegen.dump_ir_after = dump_ir_after;
        // Straight to stderr, before code generation can fail: the dump is for debugging
        // the conversions that do.
        options.codegen.dump = [](const std::string& text) {
          std::fputs(text.c_str(), stderr);
          std::fflush(stderr);
        };
        torch2mlx::PackageResult result;
        torch2mlx::ExportedProgram program;
        {
          nb::gil_scoped_release release;
          torch2mlx::bindings::naming_file_when_out_of_memory(pt2, [&] {
            program = torch2mlx::read_pt2(pt2, read);
            result = torch2mlx::write_package(program, directory, options);
          });
        }
        nb::dict info = model_dict(result.model);
        info["weight_files"] = result.weight_files;
        info["torch_version"] = program.torch_version;
        info["schema_version"] =
            nb::make_tuple(program.schema_version.first, program.schema_version.second);
        nb::dict ranges;
        for (const auto& [symbol, range] : program.ranges) {
          ranges[symbol.c_str()] =
              nb::make_tuple(range.min, range.max ? nb::cast(*range.max) : nb::none());
        }
        info["ranges"] = ranges;
        info["out_spec"] = program.out_spec;
        return info;
      },
      "pt2"_a, "directory"_a, "dtype"_a = nb::none(), "shard_bytes"_a = 5'000'000'000ULL,
      "dump_ir_after"_a = "", "model_args"_a = nb::none(), "weights_from"_a = nb::none(),
      "weight_aliases"_a = std::map<std::string, std::string>{},
      "input_defaults"_a = std::map<std::string, std::pair<std::string, std::string>>{},
      "Reads a .pt2 archive and writes model.py and the MLX weights into an existing "
      "directory. model_args ({'fields': [(name, value, is_int)], 'probes': [(field, value, "
      "program_json)]}) makes model.py read its sizes from a ModelArgs dataclass; a probe "
      "that cannot be read or translated is dropped with a note. weights_from (a checkpoint "
      "file or folder) supplies the weights by name, for an archive captured with its "
      "parameters on the meta device; weight_aliases maps a program weight to the "
      "checkpoint's name for it (a tied head). input_defaults ({input: (fill, like)}, fill "
      "'ones', 'zeros' or 'arange', like the input whose shape it takes) makes those inputs "
      "optional in model.py.");
  m.def("supported_ops", &torch2mlx::supported_ops, "Every ATen overload the registry maps.");
  m.def(
      "op_layouts",
      [] {
        static constexpr const char* kNames[] = {"standard", "elementwise",   "axis",
                                                 "reduce",   "channels_last", "relabel"};
        nb::list result;
        for (const std::string& target : torch2mlx::supported_ops()) {
          const auto* entry = torch2mlx::find_op(target);
          result.append(nb::make_tuple(target, kNames[static_cast<int>(entry->layout)]));
        }
        return result;
      },
      "(overload, layout rule) for every registered op.");
  m.def(
      "unsupported_ops",
      [] {
        nb::list result;
        for (const auto& entry : torch2mlx::unsupported_ops()) {
          result.append(nb::make_tuple(std::string(entry.target), std::string(entry.reason)));
        }
        return result;
      },
      "Overloads the registry refuses, with the reason.");
  m.def(
      "normalise_target",
      [](const std::string& target) { return torch2mlx::normalise_target(target); }, "target"_a,
      "The functional overload of an in-place or out= overload.");
}
