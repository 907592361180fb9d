// The analyzer's graph rules: what a portability report says about an exported program
// before anything is generated. Each rule reads the graph IR only (floor 2: graph.h and the
// op registry), so it answers in milliseconds and for a .pt2 file as well as for a live
// model's capture.
//
//  - op coverage: every node's op is translated by the registry, refused by it (with its
//    reason), or unknown to it; an op outside torch's own namespaces is a custom kernel;
//  - mutation: writes the caller can see (the state aliases memory outside the call), which
//    a generated MLX model computes but cannot keep: the graph signature's BufferMutation /
//    UserInputMutation / ParameterMutation outputs of a functionalized program, and the
//    in-place ops of torch's training IR (what torch.export gives) that write into an
//    input, a buffer or a parameter through any chain of views. In-place ops on
//    temporaries are harmless (functionalization makes them functional) and are listed
//    apart;
//  - custom objects (TorchBind classes) among the inputs;
//  - quantizable parameters: the weights of linear and embedding ops whose last dim splits
//    into whole groups, the test mlx.nn.quantize applies.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "torch2mlx/graph.h"

namespace torch2mlx {

/// What the registry says about one op.
enum class OpStatus : std::uint8_t {
  Translated,    // the registry has an emitter for it
  Unsupported,   // an ATen (or other torch) op the registry does not translate
  CustomKernel,  // torch.ops.<ns>.* outside torch's namespaces: a user's C++/CUDA kernel
};

/// The name of a status as reports write it: "translated", "unsupported", "custom_kernel".
[[nodiscard]] std::string_view op_status_name(OpStatus status);

/// One op of the program and how many nodes call it.
struct OpUse {
  std::string target;  // as the graph writes it, e.g. "aten.relu_.default"
  OpStatus status = OpStatus::Translated;
  std::size_t count = 0;
  std::string reason;  // why it is not translated ("" when it is)
};

/// One finding of a rule: a place in the model and what it means for conversion.
struct Finding {
  std::string kind;         // "unsupported_op", "custom_kernel", "aliasing_mutation", ...
  bool blocker = true;      // convert fails, or the MLX model would not do what torch does
  std::string target;       // the op, or the mutated buffer / input / parameter
  std::string node;         // the graph node, when there is one
  std::string module_path;  // "" for the root module
  std::string module_type;
  SourceFrame source;
  std::string message;
  std::string fix;
};

/// A parameter that mlx.nn.quantize would quantize.
struct QuantizableParameter {
  std::string target;  // state-dict key, e.g. "lm_head.weight"
  std::string op;      // the op that reads it as its weight
  std::vector<std::int64_t> shape;
};

/// An in-place write into a temporary (not an input, buffer or parameter, nor a view of
/// one): harmless, since functionalization turns it into a functional op.
struct HarmlessMutation {
  std::string node;
  std::string target;  // the in-place op, e.g. "aten.relu_.default"
  SourceFrame source;
};

/// Everything the graph rules found.
struct GraphReport {
  std::size_t nodes = 0;
  std::size_t translated_nodes = 0;
  std::vector<OpUse> ops;  // one per distinct target, in first-use order
  std::vector<Finding> findings;
  std::vector<QuantizableParameter> quantizable;
  std::vector<HarmlessMutation> harmless;
  std::int64_t quantize_group_size = 64;
};

/// Runs every rule over `program`. `group_size` is the quantization group size to test.
[[nodiscard]] GraphReport analyze_graph(const ExportedProgram& program,
                                        std::int64_t group_size = 64);

}  // namespace torch2mlx
