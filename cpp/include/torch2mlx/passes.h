// Passes over the graph IR (graph.h): each is one rewrite of an ExportedProgram, run by the
// pass manager in order before code generation, and each has its own tests
// (cpp/tests/test_passes.cpp). The IR can be printed after any pass, which is how a wrong
// conversion is debugged: `torch2mlx convert ... --dump-ir PASS`.
//
// The program is in SSA form: every value is defined once, by a graph input or by one
// node, and nodes are in order. A pass keeps it so: a value it removes is replaced in
// every later use (node inputs and graph outputs) before its node goes.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "torch2mlx/graph.h"

namespace torch2mlx {

/// A pass: its name (as --dump-ir takes it) and the rewrite, which returns how many nodes
/// it removed or changed.
struct Pass {
  std::string_view name;
  std::size_t (*run)(ExportedProgram& program);
};

/// Drops nodes that compute nothing: alias, detach, clone, a reshape, expand or full slice
/// to the same shape, a cast to the same dtype, `x + 0`, `x - 0`, `x * 1`, `x / 1`, and the
/// tracer's dtype and device checks, a concatenation of one tensor. Uses of the output read
/// the input instead. Concatenations also lose the 1-D empty inputs that torch skips.
std::size_t eliminate_noops(ExportedProgram& program);

/// Drops nodes none of whose outputs is read by a later node or by the graph's outputs.
std::size_t eliminate_dead_code(ExportedProgram& program);

/// Merges nodes of one module call that apply the same op to the same inputs (random ops
/// excepted): later uses read the first one's outputs.
std::size_t eliminate_common_subexpressions(ExportedProgram& program);

/// Fuses RMS normalisation written out as ops (`x * rsqrt(mean(x ** 2, -1) + eps) * w`, with
/// or without the weight and the float32 round trip of half-precision models) into one
/// aten.rms_norm node, which becomes mx.fast.rms_norm.
std::size_t fuse_rms_norm(ExportedProgram& program);

/// Fuses layer normalisation written out as ops (`(x - mean(x)) / sqrt(var(x) + eps)`, the
/// variance as a mean of squares, var or var_mean, then `* weight + bias` or neither, with or
/// without the float32 round trip of half-precision models) into one node: aten.layer_norm
/// along the last axis, mlx.fast.layer_norm with an `axis` along another (ConvNeXt's
/// channels-first norm). Both become one mx.fast.layer_norm call. A native_layer_norm whose
/// statistics are unread becomes aten.layer_norm.
std::size_t fuse_layer_norm(ExportedProgram& program);

/// Fuses rotary position embeddings in the split-half form (`x * cos + rotate_half(x) * sin`,
/// the tables computed from `arange` positions and an inverse-frequency buffer
/// `base ** (-2i / d)`) into one mlx.fast.rope node, and the interleaved form (pairs
/// `(x[2i], x[2i+1])` rotated: GPT-J's rotate_every_two, or the strided halves rotated and
/// stacked back) into one with traditional=True. Other tables stay as they are.
std::size_t fuse_rope(ExportedProgram& program);

/// Fuses activations written out as ops into the one op they compute: GELU
/// (`0.5 * x * (1 + erf(x / sqrt(2)))`, and the tanh approximation as GPT-2's NewGELU and
/// FastGELU write it) into aten.gelu, `x * sigmoid(x)` into aten.silu.
std::size_t fuse_activations(ExportedProgram& program);

/// Attention whose keys and values are repeated across query heads (`repeat_kv`: unsqueeze,
/// expand, reshape) reads the unrepeated keys and values instead, with enable_gqa:
/// mx.fast.scaled_dot_product_attention groups heads natively.
std::size_t fuse_grouped_query_attention(ExportedProgram& program);

/// Evaluates what is known before run time: nodes whose every input is a literal, a small
/// lifted constant, a fill or range of static size, or a static size (the tables in
/// constant_folding.cpp say which ops fold and how). A folded value that a run-time node
/// reads becomes one creation op (aten.full, or an mlx.array literal of at most 16 values);
/// folded sizes become literal arguments; an operand that a constant identity leaves
/// unchanged (`x & True`, `x * 1` with a constant tensor) is read in place of the op.
std::size_t fold_constants(ExportedProgram& program);

/// Symbolic size arithmetic (`length + 1`, which torch.export records once however many
/// modules compute it) is copied into each module call that reads it, so that a module's
/// method computes it from its own inputs instead of taking it from a sibling, as a
/// hand-written model does.
std::size_t rematerialize_sizes(ExportedProgram& program);

/// The passes code generation runs, in order.
const std::vector<Pass>& default_passes();

/// The IR as text: one line per input, node and output, with dtypes, shapes, module paths.
std::string print_ir(const ExportedProgram& program);

/// Runs `passes` in order. When `dump_after` names a pass ("input" for before any), `dump`
/// receives the IR printed after it; an unknown name is an error listing the passes.
void run_passes(ExportedProgram& program, const std::vector<Pass>& passes,
                std::string_view dump_after = {},
                const std::function<void(const std::string&)>& dump = {});

}  // namespace torch2mlx
