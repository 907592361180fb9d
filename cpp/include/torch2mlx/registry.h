// The layer registry: for every torch.nn module type that matters at inference, the MLX
// layer it becomes, how to build that layer from the torch module's attributes, and what
// happens to each of its tensors. Rules are keyed on the module type, never guessed from
// tensor shapes (a 1x1 conv and a linear layer look alike; their layouts do not).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "torch2mlx/tensor.h"

namespace torch2mlx {

/// What becomes of one torch tensor. Every transform has an inverse (see inverse_shape).
enum class Transform : std::uint8_t {
  Keep,                 // same bytes, same shape
  ConvWeight,           // [O, I/g, *K] -> [O, *K, I/g]: MLX convs are channels-last
  ConvTransposeWeight,  // [I, O/g, *K] -> [O, *K, I/g] (per group)
  TransposeLast2,       // swap the last two axes (HF Conv1D [in, out]; Bilinear's inputs)
  Drop,                 // bookkeeping with no inference meaning (num_batches_tracked)
};

/// How a layer wants its activations laid out, for placing transposes at the edges.
enum class Layout : std::uint8_t {
  Any,           // elementwise: works in either layout
  ChannelsLast,  // convs, pools, channel norms: MLX wants [N, *spatial, C]
  TorchOrder,    // flatten, linear on features, attention: torch's axis order matters
};

/// One tensor a module owns, by its name inside the module ("weight", "running_mean").
struct TensorRule {
  std::string_view name;
  Transform transform = Transform::Keep;
};

/// One torch module type and its MLX counterpart.
struct LayerEntry {
  std::string_view torch_type;  // e.g. "torch.nn.modules.conv.Conv2d"
  std::string_view mlx_layer;   // e.g. "mlx.nn.Conv2d", "torch2mlx.templates.LSTM"
  // Constructor arguments, comma-separated: "kw=attr" passes torch attribute attr as kw,
  // "kw" alone means kw=kw, "kw=attr?" passes (attr is not None), "kw=attr[0]" indexes,
  // "kw=attr|default" replaces None, "kw=:literal" passes a Python literal.
  std::string_view arguments;
  Layout layout = Layout::Any;
  std::span<const TensorRule> tensors;  // everything the module may own directly
  // Tensors named by a pattern with {k} = layer index and {r} = "" or "_reverse" (RNNs).
  bool patterned = false;
};

/// All registry entries, in table order.
[[nodiscard]] std::span<const LayerEntry> layer_entries();

/// The entry for a fully qualified torch type, or nullptr.
[[nodiscard]] const LayerEntry* find_layer(std::string_view torch_type);

/// The rule for `tensor_name` inside a module of `entry`'s type, or nullopt if the
/// registry does not know the tensor (an error for the caller to report).
[[nodiscard]] std::optional<Transform> find_tensor_rule(const LayerEntry& entry,
                                                        std::string_view tensor_name);

/// The transform's name as written in reports and key maps, e.g. "conv_weight".
[[nodiscard]] std::string_view transform_name(Transform transform);

/// The shape the transform (or its inverse) produces; `groups` matters for transposed convs.
[[nodiscard]] std::vector<std::int64_t> transformed_shape(Transform transform,
                                                          std::span<const std::int64_t> shape,
                                                          std::int64_t groups = 1,
                                                          bool reverse = false);

/// Applies the transform to `tensor` (any strides) and writes the result contiguously to
/// `out`, which holds tensor.nbytes(). `reverse` applies the inverse transform, taking a
/// tensor in MLX layout back to torch's.
void apply_transform(Transform transform, const Tensor& tensor, std::byte* out,
                     std::int64_t groups = 1, bool reverse = false);

/// The view that the (forward or reverse) transform reads its input through: the same
/// bytes with permuted strides, so that copy_contiguous of it yields the output. For
/// transposed convs with groups the view is 2 dims longer than the tensor.
[[nodiscard]] Tensor transform_view(Transform transform, const Tensor& tensor, std::int64_t groups,
                                    bool reverse);

}  // namespace torch2mlx
