// torch.export archives (.pt2, what torch.export.save writes): the program's graph and its
// weights. Both layouts torch has written are read; they are written down in pt2.cpp.
// Nothing in the archive is executed: the graph is JSON, raw weights are byte ranges, and
// pickled tensors go through the restricted unpickler.
#pragma once

#include <filesystem>
#include <memory>

#include "torch2mlx/checkpoint.h"
#include "torch2mlx/graph.h"
#include "torch2mlx/mapped_file.h"

namespace torch2mlx {

/// Reads a .pt2 archive: the graph, and every parameter, buffer and constant as a view of the
/// mapping (tied weights share one Storage). Throws Error ("[pt2] ..." or "[graph] ...").
[[nodiscard]] ExportedProgram read_pt2(const std::filesystem::path& path,
                                       const ReadOptions& options = {});

/// read_pt2 over a file already mapped or held in memory (fuzzing, tests).
[[nodiscard]] ExportedProgram read_pt2(const std::shared_ptr<MappedFile>& file,
                                       const ReadOptions& options = {});

}  // namespace torch2mlx
