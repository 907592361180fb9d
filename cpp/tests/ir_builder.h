// Small programs for the pass tests, built node by node.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "torch2mlx/graph.h"

namespace torch2mlx::testing {

inline Arg tensor(const std::string& name) {
  Arg arg;
  arg.kind = ArgKind::Tensor;
  arg.names = {name};
  return arg;
}

inline Arg tensors(const std::vector<std::string>& names) {
  Arg arg;
  arg.kind = ArgKind::TensorList;
  arg.names = names;
  return arg;
}

inline Arg number(double value) {
  Arg arg;
  arg.kind = ArgKind::Float;
  arg.floats = {value};
  return arg;
}

inline Arg integer(std::int64_t value) {
  Arg arg;
  arg.kind = ArgKind::Int;
  arg.ints = {value};
  return arg;
}

inline Arg flag(bool value) {
  Arg arg;
  arg.kind = ArgKind::Bool;
  arg.ints = {value ? 1 : 0};
  return arg;
}

inline Arg integers(std::vector<std::int64_t> values) {
  Arg arg;
  arg.kind = ArgKind::IntList;
  arg.ints = values;
  arg.names.resize(values.size());
  return arg;
}

inline TensorMeta meta(const std::vector<std::int64_t>& shape, std::string dtype = "float32") {
  TensorMeta result;
  result.dtype = std::move(dtype);
  for (const std::int64_t size : shape) result.shape.push_back({size, ""});
  return result;
}

// A program with one user input x (float32 [2, 3] unless given) whose outputs are named by
// returning().
struct Builder {
  ExportedProgram program;

  explicit Builder(TensorMeta x_type = meta({2, 3})) { input("x", std::move(x_type)); }

  Builder& input(const std::string& name, TensorMeta type, InputKind kind = InputKind::UserInput,
                 const std::string& target = "") {
    InputSpec spec;
    spec.kind = kind;
    spec.name = name;
    spec.target = target;
    spec.value = tensor(name);
    program.inputs.push_back(spec);
    program.tensors[name] = std::move(type);
    return *this;
  }

  Builder& node(const std::string& out, const std::string& target, std::vector<NamedArg> inputs,
                TensorMeta type = meta({2, 3}), const std::string& module_key = "") {
    Node node;
    node.name = out;
    node.target = target;
    node.inputs = std::move(inputs);
    node.outputs.push_back(tensor(out));
    if (!module_key.empty()) node.module_stack.push_back({module_key, "block", "pkg.Block"});
    program.nodes.push_back(node);
    program.tensors[out] = std::move(type);
    return *this;
  }

  ExportedProgram returning(const std::vector<std::string>& names) {
    for (const std::string& name : names) {
      OutputSpec output;
      output.value = tensor(name);
      program.outputs.push_back(output);
    }
    return program;
  }
};

inline std::vector<std::string> targets(const ExportedProgram& program) {
  std::vector<std::string> result;
  for (const Node& node : program.nodes) result.push_back(node.target);
  return result;
}

inline std::string reads(const Node& node, const std::string& input) {
  return node.input(input)->names[0];
}

}  // namespace torch2mlx::testing
