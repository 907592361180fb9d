// Each bind_*.cpp adds its functions to torch2mlx._core; core_module.cpp calls them all.
#pragma once

#include <nanobind/nanobind.h>

/// The .pt2 reader: read_pt2.
void bind_pt2(nanobind::module_& m);
/// The code generator: generate_package and the op registry.
void bind_codegen(nanobind::module_& m);
