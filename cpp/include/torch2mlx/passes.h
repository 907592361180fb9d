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
/// to the same shape, a cast to the same dtype, `x + 0`, `x - 0`, `x * 1`, `x / 1`. Uses of
/// the output read the input instead.
std::size_t eliminate_noops(ExportedProgram& program);

/// Drops nodes none of whose outputs is read by a later node or by the graph's outputs.
std::size_t eliminate_dead_code(ExportedProgram& program);

/// Merges nodes of one module call that apply the same op to the same inputs (random ops
/// excepted): later uses read the first one's outputs.
std::size_t eliminate_common_subexpressions(ExportedProgram& program);

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
