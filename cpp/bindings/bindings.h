// Each bind_*.cpp adds its functions to torch2mlx._core; core_module.cpp calls them all.
#pragma once

#include <nanobind/nanobind.h>

#include <filesystem>
#include <new>
#include <utility>

#include "torch2mlx/error.h"

/// The .pt2 reader: read_pt2.
void bind_pt2(nanobind::module_& m);
/// The code generator: generate_package and the op registry.
void bind_codegen(nanobind::module_& m);
/// The analyzer's graph rules: analyze_graph.
void bind_analyzer(nanobind::module_& m);

namespace torch2mlx::bindings {

/// Runs `work`; an allocation that fails inside it becomes an Error naming `file`, where
/// nanobind would raise a bare MemoryError.
template <class Work>
decltype(auto) naming_file_when_out_of_memory(const std::filesystem::path& file, Work&& work) {
  try {
    return std::forward<Work>(work)();
  } catch (const std::bad_alloc&) {
    fail("memory", file.string() +
                       ": out of memory while reading or converting it; free memory, or convert "
                       "on a machine with more");
  }
}

}  // namespace torch2mlx::bindings
