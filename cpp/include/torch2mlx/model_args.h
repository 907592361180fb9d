#pragma once
// ModelArgs: the sizes of a generated model read from its config, so that one model.py
// serves every size of an architecture, as an mlx-lm model file does.
//
// A single trace cannot tell which config field a literal comes from (in a tiny Llama the
// key-value heads and the layers are both 2). So the front end traces the model again once
// per numeric config field, with that field changed (a "probe"), and the code generator
// compares the code: a literal that moves with a field is a power of it. Each literal is
// fitted as c * f1^e1 * f2^e2 ... over the fields that move it, written as an expression of
// `args` (`args.hidden_size // args.num_attention_heads`), and checked against the model and
// every probe. A field whose probe changes the code's structure, or moves a literal no such
// expression explains, stays fixed: its literals keep their values.

#include <string>
#include <utility>
#include <vector>

#include "torch2mlx/graph.h"
#include "torch2mlx/python_ast.h"

namespace torch2mlx {

/// A number of the model's config, as model.py may read it from ModelArgs.
struct ConfigField {
  std::string name;  // a Python identifier
  double value = 0;
  bool integer = true;
};

/// Other fields a probe changed besides its own, e.g. {"num_hidden_layers", 2}: a deep
/// model's probes are captured on a copy of its first layers, and compared with the probe
/// of those layers alone rather than with the model.
using ProbeBase = std::vector<std::pair<std::string, double>>;

/// The model captured again with one config field changed.
struct ConfigProbe {
  std::string field;  // a ConfigField's name
  double value = 0;   // the field's value in this capture
  ExportedProgram program;
  ProbeBase base;  // empty: compared with the model itself
  // Why the capture could not be read (its program refused), "" when it could. A probe that
  // cannot be read or translated is dropped by generate_model: its field stays fixed, with a
  // note, and the model converts without it.
  std::string error;
};

/// What the code generator is told about the config (CodegenOptions::model_args).
struct ModelArgsSpec {
  std::vector<ConfigField> fields;
  std::vector<ConfigProbe> probes;
};

/// The classes of a model generated from its config and from each probe (one list of
/// statements each, same order as spec.probes).
struct ParameterizedCode {
  std::vector<py::Stmt> classes;    // rewritten to read ModelArgs, with its dataclass first
  std::vector<ConfigField> fields;  // the fields model.py reads, in ModelArgs' order
  std::vector<std::string> notes;   // fields that stay fixed, and why
};

/// `classes` (generated from the model, the root class "Model" last) with every literal that
/// the probes explain replaced by an expression of ModelArgs' fields: `args.f` in `__init__`,
/// `self.args.f` in `__call__`. Classes that read the args, or build a class that does,
/// take `args` first; the root takes `args: ModelArgs`. When no literal depends on a field,
/// the classes are returned as they are and `fields` is empty.
/// A probe with a `base` is compared with the probe that changed exactly its base (which
/// must come before it); without that probe, or if its structure differs, it is dropped.
[[nodiscard]] ParameterizedCode parameterize(std::vector<py::Stmt> classes,
                                             const std::vector<ConfigField>& fields,
                                             const std::vector<std::string>& probe_fields,
                                             const std::vector<double>& probe_values,
                                             const std::vector<std::vector<py::Stmt>>& probes,
                                             const std::vector<ProbeBase>& bases = {});

}  // namespace torch2mlx
