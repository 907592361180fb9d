// torch.save archives (the zip format of torch >= 1.6), written down:
//
//   <root>/data.pkl            the pickled object, tensors as _rebuild_tensor_v2 calls
//   <root>/data/<key>          raw bytes of each storage, stored uncompressed, 64-aligned
//   <root>/byteorder           "little" or "big" (absent in old files: little)
//   <root>/version             the archive format version, "3\n" (torch reads 1 to 10;
//                              <root>/.data/version, if present, is read instead)
//   <root>/.format_version, .storage_alignment, .data/serialization_id
//
// A storage is referenced from data.pkl by the persistent id
// ('storage', torch.FloatStorage, '<key>', 'cpu', numel); a tensor is
// _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, hooks[, meta]);
// dtypes without a typed storage (float8, uint16...) use _rebuild_tensor_v3(..., dtype)
// over a torch.storage.UntypedStorage.
#pragma once

#include <memory>

#include "torch2mlx/checkpoint.h"
#include "torch2mlx/mapped_file.h"

namespace torch2mlx {

/// Reads a torch.save zip through the restricted unpickler. Tensors view the mapping;
/// tensors that share a storage share one Storage object (tied weights stay tied).
[[nodiscard]] Checkpoint read_torch_zip(const std::shared_ptr<MappedFile>& file,
                                        const ReadOptions& options = {});

}  // namespace torch2mlx
