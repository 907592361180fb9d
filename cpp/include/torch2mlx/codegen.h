// Floor 5 of the core: the code generator. It turns an ExportedProgram into the source of a
// self-contained MLX model file (model.py) that mirrors the torch module tree, and says how
// each weight must be stored for it.
//
// The steps, in order:
//   0. passes (passes.h): no-ops, common subexpressions and dead code go;
//   1. layout: walk the nodes once, deciding for every value the axis order it is stored in
//      (channels-last after a convolution, torch's order elsewhere), and where a transpose
//      is unavoidable;
//   2. regions: group the nodes by the module call they happened in (nn_module_stack);
//   3. emission: one class per distinct module, mlx.nn layers for modules that map one to
//      one, helper functions for what MLX lacks, and the root class "Model", built as a
//      Python syntax tree (python_ast.h) that its one printer turns into source.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "torch2mlx/graph.h"
#include "torch2mlx/model_args.h"
#include "torch2mlx/python_ast.h"
#include "torch2mlx/registry.h"
#include "torch2mlx/tensor.h"

namespace torch2mlx {

/// One tensor that model.safetensors holds, and how it is derived from the torch weight.
struct PackageWeight {
  std::string name;                       // key in model.safetensors and in the MLX module tree
  std::string source;                     // key in ExportedProgram::weights
  Transform transform = Transform::Keep;  // Keep, ConvWeight or ConvTransposeWeight
  std::int64_t groups = 1;
};

/// A user input of the generated model.
struct PackageInput {
  std::string name;
  std::string dtype;               // numpy name; "" for non-tensor inputs
  std::vector<std::string> shape;  // sizes as text: "3" or a symbol such as "s77"
  std::string default_fill;        // "ones", "zeros" or "arange" when model.py lets the
                                   // caller leave it out (CodegenOptions::input_defaults)
};

/// A module call that the generated code makes as a call of its own (a method of a class or
/// an mlx.nn layer): where verification observes values to find the first layer that
/// diverges. Storage orders are permutations as the layout pass records them (stored axis i
/// holds torch's axis perm[i]); empty is torch's order.
struct ModuleBoundary {
  std::string path;              // torch module path, e.g. "layers.0.conv1"
  std::string mlx_path;          // the same module in the MLX tree (odd names made attributes)
  std::string type;              // qualified torch class name
  std::vector<std::string> ops;  // ATen ops inside, in first-seen order
  std::string source_line;       // the first user source line inside, "file.py:12: code"
  std::vector<int> input_perm;   // storage order of its first tensor input
  std::vector<std::vector<int>> output_perms;  // storage order of each output
};

/// What the code generator produces.
struct GeneratedModel {
  std::string source;  // model.py
  std::vector<PackageWeight> weights;
  std::vector<PackageInput> inputs;
  std::vector<std::string> notes;  // things the user should know, e.g. ignored buffer updates
  std::size_t transposes = 0;      // layout transposes the generated code performs
  std::vector<std::string> direct_weights;  // weights the code reads as arrays (`self.w`,
                                            // a tied head), not only through their layer
  std::vector<ModuleBoundary> modules;      // in the order their calls start
  std::vector<py::Stmt> classes;            // the classes as generated, before ModelArgs
  std::vector<ConfigField> model_args;      // the config fields model.py's ModelArgs holds
};

/// An input that model.py lets the caller leave out, and what it computes for it then.
struct OptionalInput {
  std::string fill;  // "ones", "zeros", or "arange" along the last axis (broadcast)
  std::string like;  // the required input whose sizes it takes (transformers: input_ids)
};

/// How to generate.
struct CodegenOptions {
  std::string dump_ir_after;  // a pass name (or "input"): print the IR after it ...
  std::function<void(const std::string&)> dump;  // ... to this, before code is generated
  ModelArgsSpec model_args;  // the config and its probes, for sizes read from ModelArgs
  // Inputs the caller may leave out, by name: transformers' defaults for attention_mask,
  // token_type_ids and position_ids. One that cannot take a default (a required input
  // follows it, a dtype MLX lacks, a rank unlike its `like`) stays required, with a note.
  std::map<std::string, OptionalInput> input_defaults;
};

/// Generates model.py for `program`, after the default passes. Throws Error listing every
/// node it cannot translate, each with its op, module path and source line.
[[nodiscard]] GeneratedModel generate_model(const ExportedProgram& program,
                                            const CodegenOptions& options = {});

/// The torch module types that model.py may write as an mlx.nn layer (when their call is
/// the one op that layer computes): keys of the layer registry, registry.h.
[[nodiscard]] std::vector<std::string_view> leaf_layer_types();

}  // namespace torch2mlx
