// Python binding of the analyzer's graph rules: torch2mlx._core.analyze_graph.
#include <nanobind/nanobind.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <string>

#include "bindings.h"
#include "torch2mlx/analyzer.h"
#include "torch2mlx/graph.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

nb::dict source_dict(const torch2mlx::SourceFrame& frame) {
  nb::dict item;
  item["file"] = frame.file;
  item["line"] = frame.line;
  item["code"] = frame.code;
  return item;
}

nb::dict report_dict(const torch2mlx::GraphReport& report) {
  nb::list ops;
  for (const auto& use : report.ops) {
    nb::dict item;
    item["target"] = use.target;
    item["status"] = std::string(torch2mlx::op_status_name(use.status));
    item["count"] = use.count;
    item["reason"] = use.reason;
    ops.append(item);
  }
  nb::list findings;
  for (const auto& finding : report.findings) {
    nb::dict item;
    item["kind"] = finding.kind;
    item["blocker"] = finding.blocker;
    item["target"] = finding.target;
    item["node"] = finding.node;
    item["module_path"] = finding.module_path;
    item["module_type"] = finding.module_type;
    item["source"] = source_dict(finding.source);
    item["message"] = finding.message;
    item["fix"] = finding.fix;
    findings.append(item);
  }
  nb::list quantizable;
  for (const auto& parameter : report.quantizable) {
    nb::dict item;
    item["target"] = parameter.target;
    item["op"] = parameter.op;
    item["shape"] = parameter.shape;
    quantizable.append(item);
  }
  nb::list harmless;
  for (const auto& mutation : report.harmless) {
    nb::dict item;
    item["node"] = mutation.node;
    item["target"] = mutation.target;
    item["source"] = source_dict(mutation.source);
    harmless.append(item);
  }
  nb::dict result;
  result["harmless"] = harmless;
  result["nodes"] = report.nodes;
  result["translated_nodes"] = report.translated_nodes;
  result["ops"] = ops;
  result["findings"] = findings;
  result["quantizable"] = quantizable;
  result["quantize_group_size"] = report.quantize_group_size;
  return result;
}

}  // namespace

void bind_analyzer(nb::module_& m) {
  m.def(
      "user_frame",
      [](const std::string& trace) { return source_dict(torch2mlx::user_frame(trace)); }, "trace"_a,
      "The innermost frame of a node's stack trace that is the user's code: {file, line, "
      "code}, file '' when there is none.");
  m.def(
      "analyze_graph",
      [](const std::string& json, const std::string& name, std::int64_t group_size) {
        torch2mlx::GraphReport report;
        {
          nb::gil_scoped_release release;
          report =
              torch2mlx::analyze_graph(torch2mlx::parse_exported_program(json, name), group_size);
        }
        return report_dict(report);
      },
      "json"_a, "name"_a = "model.json", "group_size"_a = 64,
      "The analyzer's graph rules over the JSON of an ExportedProgram: a dict of nodes, "
      "translated_nodes, ops (target, status, count, reason), findings (kind, blocker, target, "
      "node, module_path, module_type, source {file, line, code}, message, fix), quantizable "
      "(target, op, shape), harmless (in-place writes into temporaries: node, target, source) "
      "and quantize_group_size.");
}
