// Normalisation, linear algebra, attention, embeddings, distances and FFTs. Layer and RMS
// norms and attention use mx.fast; batch, group and instance norms run channels-last, where
// the per-channel parameters and statistics broadcast along the last axis with no reshapes.
#include <fmt/format.h>

#include <array>

#include "call.h"
#include "emit_util.h"
#include "torch2mlx/python_text.h"

namespace torch2mlx {

namespace {

constexpr LayoutRule kStandard = LayoutRule::Standard;
constexpr LayoutRule kCL = LayoutRule::ChannelsLast;

std::string optional_tensor(Call& call, std::string_view name) {
  return call.has(name) ? call.tensor(name) : "None";
}

std::string eps(Call& call) { return float_literal(call.number("eps", 1e-5)); }

// Channels-last norms need the batch axis first and channels second in torch's order.
std::string batched_input(Call& call) {
  if (call.rank("input") < 2) call.unsupported("a normalisation over channels needs (N, C, ...)");
  return call.tensor("input");
}

std::string layer_norm(Call& call) {
  const auto shape = call.ints("normalized_shape");
  if (shape.size() == 1) {
    return fmt::format("mx.fast.layer_norm({}, {}, {}, {})", call.tensor("input"),
                       optional_tensor(call, "weight"), optional_tensor(call, "bias"), eps(call));
  }
  return fmt::format("{}({}, {}, {}, {}, {})[0]", call.helper("layer_norm_nd"),
                     call.tensor("input"), shape.size(), optional_tensor(call, "weight"),
                     optional_tensor(call, "bias"), eps(call));
}

// A layer norm along one axis (a fusion's node; ConvNeXt normalises channels-first): along
// the stored last axis, as a channels-last input has its channels, one mx.fast.layer_norm;
// along another, moved last and back.
std::string layer_norm_along(Call& call) {
  const std::int64_t axis = call.axis("axis", -1);
  const std::int64_t last = call.rank("input") - 1;
  const auto norm = [&](const std::string& x) {
    return fmt::format("mx.fast.layer_norm({}, {}, {}, {})", x, optional_tensor(call, "weight"),
                       optional_tensor(call, "bias"), eps(call));
  };
  if (axis == last) return norm(call.tensor("input"));
  return fmt::format("mx.moveaxis({}, -1, {})",
                     norm(fmt::format("mx.moveaxis({}, {}, -1)", call.tensor("input"), axis)),
                     axis);
}

std::string native_layer_norm(Call& call) {
  // (output, mean, 1 / std), the statistics with the normalised axes kept as size 1.
  return fmt::format("{}({}, {}, {}, {}, {})", call.helper("layer_norm_nd"), call.tensor("input"),
                     call.ints("normalized_shape").size(), optional_tensor(call, "weight"),
                     optional_tensor(call, "bias"), eps(call));
}

std::string rms_norm(Call& call) {
  const auto shape = call.ints("normalized_shape");
  // eps=None means the input dtype's machine epsilon in torch.
  const std::string epsilon =
      call.has("eps") ? eps(call) : fmt::format("mx.finfo({}.dtype).eps", call.tensor("input"));
  if (shape.size() == 1) {
    return fmt::format("mx.fast.rms_norm({}, {}, {})", call.tensor("input"),
                       optional_tensor(call, "weight"), epsilon);
  }
  return fmt::format("{}({}, {}, {}, {})", call.helper("rms_norm_nd"), call.tensor("input"),
                     shape.size(), optional_tensor(call, "weight"), epsilon);
}

// Batch norm, channels-last: (output, mean, 1 / std). With running statistics and not
// training, those are used (inference); otherwise the batch's own, as torch normalises a
// training-mode batch. The running-statistics update of training mode is not reproduced:
// export the model in eval() mode.
std::string batch_norm_tuple(Call& call, bool running) {
  return fmt::format("{}({}, {}, {}, {}, {}, {})", call.helper("batch_norm"), batched_input(call),
                     running ? call.tensor("running_mean") : "None",
                     running ? call.tensor("running_var") : "None", optional_tensor(call, "weight"),
                     optional_tensor(call, "bias"), eps(call));
}

bool uses_running_stats(Call& call) {
  return call.has("running_mean") && call.has("running_var") && !call.flag("training", false);
}

std::string batch_norm(Call& call) {
  return fmt::format("{}[0]", batch_norm_tuple(call, uses_running_stats(call)));
}

std::string batch_norm_no_training(Call& call) {
  // torch returns empty save_mean / save_invstd when it normalises with running statistics.
  return fmt::format("({}[0], mx.zeros((0,)), mx.zeros((0,)))", batch_norm_tuple(call, true));
}

std::string batch_norm_legit(Call& call) {
  const bool running = uses_running_stats(call);
  if (running) return batch_norm_no_training(call);
  return batch_norm_tuple(call, false);
}

std::string group_norm(Call& call) {
  return fmt::format("{}({}, {}, {}, {}, {})[0]", call.helper("group_norm"), batched_input(call),
                     call.integer("num_groups", 1), optional_tensor(call, "weight"),
                     optional_tensor(call, "bias"), eps(call));
}

std::string native_group_norm(Call& call) {
  // (output, mean, 1 / std), the statistics of shape (N, groups).
  return fmt::format("{}({}, {}, {}, {}, {})", call.helper("group_norm"), batched_input(call),
                     call.integer("group", 1), optional_tensor(call, "weight"),
                     optional_tensor(call, "bias"), eps(call));
}

std::string instance_norm(Call& call) {
  if (!call.flag("use_input_stats", true)) {
    // Running statistics per channel: the same arithmetic as an inference batch norm.
    return fmt::format("{}[0]", batch_norm_tuple(call, true));
  }
  return fmt::format("{}({}, {}, {}, {})", call.helper("instance_norm"), batched_input(call),
                     optional_tensor(call, "weight"), optional_tensor(call, "bias"), eps(call));
}

std::string linear(Call& call) {
  const std::string product = fmt::format("{} @ {}.T", call.tensor("input"), call.tensor("weight"));
  return call.has("bias") ? fmt::format("{} + {}", product, call.tensor("bias")) : product;
}

std::string matmul(Call& call) {
  return fmt::format("{} @ {}", call.tensor("self"),
                     call.tensor(call.has("other") ? "other" : "mat2"));
}

// addmm, baddbmm: beta * self + alpha * (a @ b). beta=0 ignores self, NaN and inf included.
std::string addmm(Call& call) {
  const std::string first = call.has("mat1") ? "mat1" : "batch1";
  const std::string second = call.has("mat2") ? "mat2" : "batch2";
  std::string product = fmt::format("{} @ {}", call.tensor(first), call.tensor(second));
  if (call.number("alpha", 1.0) != 1.0) {
    product = fmt::format("{} * ({})", call.literal("alpha", "1"), product);
  }
  const double beta = call.number("beta", 1.0);
  if (beta == 0.0) {
    // self still decides the broadcast shape.
    return fmt::format("mx.broadcast_to({0}, mx.broadcast_shapes(({0}).shape, {1}.shape))", product,
                       call.tensor("self"));
  }
  const std::string self =
      beta == 1.0 ? call.tensor("self")
                  : fmt::format("{} * {}", call.literal("beta", "1"), call.tensor("self"));
  return fmt::format("{} + {}", self, product);
}

std::string einsum(Call& call) {
  return fmt::format("mx.einsum({}, {})", python_string(call.text("equation", "")),
                     fmt::join(call.tensors("tensors"), ", "));
}

// Whether queries and keys have the same length: then torch's causal mask (aligned to the
// top left) and MLX's (aligned to the bottom right) are the same.
bool equal_lengths(Call& call) {
  const TensorMeta* query = call.meta("query");
  const TensorMeta* key = call.meta("key");
  if (query == nullptr || key == nullptr || query->shape.size() < 2 || key->shape.size() < 2) {
    return false;
  }
  const Dim& q = query->shape[query->shape.size() - 2];
  const Dim& k = key->shape[key->shape.size() - 2];
  return q.hint == k.hint && q.symbol == k.symbol;
}

std::string attention(Call& call) {
  // dropout_p is ignored: exported inference graphs pass 0 (models gate it on self.training).
  const std::string query = call.tensor("query");
  const std::string scale = call.has("scale") ? float_literal(call.number("scale", 1.0))
                                              : fmt::format("{}.shape[-1] ** -0.5", query);
  std::string mask = "None";
  if (call.flag("is_causal", false) && call.rank("query") == 4 && equal_lengths(call)) {
    mask = python_string("causal");  // mx.fast's own causal mask, equal to torch's here
  } else if (call.flag("is_causal", false)) {
    mask = fmt::format("{}({}, {})", call.helper("causal_mask"), query, call.tensor("key"));
  } else if (call.has("attn_mask")) {
    mask = call.tensor("attn_mask");
  }
  return fmt::format("{}({}, {}, {}, {}, {})", call.helper("attention"), query, call.tensor("key"),
                     call.tensor("value"), scale, mask);
}

// A rotary embedding that the fuse-rope pass recognised (passes.h).
std::string rope(Call& call) {
  return fmt::format("mx.fast.rope({}, {}, traditional={}, base={}, scale={}, offset={})",
                     call.tensor("input"), call.integer("dims", 0),
                     call.flag("traditional", false) ? "True" : "False",
                     float_literal(call.number("base", 10000.0)),
                     float_literal(call.number("scale", 1.0)), call.literal("offset", "0"));
}

std::string embedding(Call& call) {
  // padding_idx only stops the gradient of that row; the forward pass is a plain lookup.
  return fmt::format("mx.take({}, {}, axis=0)", call.tensor("weight"), call.tensor("indices"));
}

// _embedding_bag's mode argument, in torch's numbering.
constexpr std::array<std::string_view, 3> kBagModes{"sum", "mean", "max"};

std::string embedding_bag(Call& call) {
  const std::int64_t mode = call.integer("mode", 0);
  if (mode < 0 || mode >= static_cast<std::int64_t>(kBagModes.size())) {
    call.unsupported(fmt::format("embedding_bag mode {}", mode));
  }
  if (call.rank("indices") != 1) call.unsupported("embedding_bag with 2-d indices and no offsets");
  // Outputs 1-3 (offset2bag, bag_size, max_indices) only serve the backward pass: None.
  return fmt::format(
      "({}({}, {}, {}, '{}', {}, {}, {}), None, None, None)", call.helper("embedding_bag"),
      call.tensor("weight"), call.tensor("indices"), call.tensor("offsets"),
      kBagModes[static_cast<std::size_t>(mode)], optional_tensor(call, "per_sample_weights"),
      call.flag("include_last_offset", false) ? "True" : "False", call.integer("padding_idx", -1));
}

std::string cdist(Call& call) {
  return fmt::format("{}({}, {}, {})", call.helper("cdist"), call.tensor("x1"), call.tensor("x2"),
                     float_literal(call.number("p", 2.0)));
}

std::string pdist(Call& call) {
  call.helper("cdist");  // pdist reads the full distance matrix
  return fmt::format("{}({}, {})", call.helper("pdist"), call.tensor("self"),
                     float_literal(call.number("p", 2.0)));
}

// torch's fft_norm_mode (0: none, 1: 1/sqrt(n), 2: 1/n) as numpy's norm for the forward
// transform; the inverse transforms read it the other way round.
constexpr std::array<std::string_view, 3> kForwardNorm{"backward", "ortho", "forward"};
constexpr std::array<std::string_view, 3> kInverseNorm{"forward", "ortho", "backward"};

std::string_view fft_norm(Call& call, bool inverse) {
  const std::int64_t mode = call.integer("normalization", 0);
  if (mode < 0 || mode > 2) call.unsupported(fmt::format("fft normalization mode {}", mode));
  return (inverse ? kInverseNorm : kForwardNorm)[static_cast<std::size_t>(mode)];
}

std::string fft_r2c(Call& call) {
  const std::string self = call.tensor("self");
  const std::string axes = int_tuple(call.axes("dim"));
  if (call.flag("onesided", true)) {
    return fmt::format("mx.fft.rfftn({}, axes={}, norm={})", self, axes,
                       python_string(fft_norm(call, false)));
  }
  return fmt::format("mx.fft.fftn({}.astype(mx.complex64), axes={}, norm={})", self, axes,
                     python_string(fft_norm(call, false)));
}

std::string fft_c2r(Call& call) {
  const std::vector<std::int64_t> axes = call.axes("dim");
  const TensorMeta* info = call.meta("self");
  if (info == nullptr) call.unsupported("the input shape is unknown");
  std::vector<std::string> sizes;
  for (std::size_t index = 0; index + 1 < axes.size(); ++index) {
    sizes.push_back(fmt::format("{}.shape[{}]", call.tensor("self"), axes[index]));
  }
  sizes.push_back(call.literal("last_dim_size", "None"));
  return fmt::format("mx.fft.irfftn({}, s=({},), axes={}, norm={})", call.tensor("self"),
                     fmt::join(sizes, ", "), int_tuple(axes), python_string(fft_norm(call, true)));
}

std::string fft_c2c(Call& call) {
  const bool forward = call.flag("forward", true);
  return fmt::format("mx.fft.{}({}, axes={}, norm={})", forward ? "fftn" : "ifftn",
                     call.tensor("self"), int_tuple(call.axes("dim")),
                     python_string(fft_norm(call, !forward)));
}

}  // namespace

std::vector<OpEntry> norm_attention_ops() {
  return {
      {"aten.layer_norm.default", layer_norm, kStandard},
      {"aten.native_layer_norm.default", native_layer_norm, kStandard},
      {"aten.rms_norm.default", rms_norm, kStandard},
      {"mlx.fast.layer_norm", layer_norm_along, LayoutRule::Axis},
      {"aten.batch_norm.default", batch_norm, kCL},
      {"aten._native_batch_norm_legit_no_training.default", batch_norm_no_training, kCL},
      {"aten._native_batch_norm_legit.default", batch_norm_legit, kCL},
      {"aten._native_batch_norm_legit.no_stats", batch_norm_legit, kCL},
      {"aten.native_batch_norm.default", batch_norm_legit, kCL},
      {"aten.group_norm.default", group_norm, kCL},
      {"aten.native_group_norm.default", native_group_norm, kCL},
      {"aten.instance_norm.default", instance_norm, kCL},
      {"aten.linear.default", linear, kStandard},
      {"aten.matmul.default", matmul, kStandard},
      {"aten.mm.default", matmul, kStandard},
      {"aten.bmm.default", matmul, kStandard},
      {"aten.addmm.default", addmm, kStandard},
      {"aten.baddbmm.default", addmm, kStandard},
      {"aten.einsum.default", einsum, kStandard},
      {"aten.scaled_dot_product_attention.default", attention, kStandard},
      {"mlx.fast.rope", rope, kStandard},
      {"aten.embedding.default", embedding, kStandard},
      // Outputs 1-3 are None: see embedding_bag.
      {"aten._embedding_bag.default", embedding_bag, kStandard},
      {"aten._embedding_bag_forward_only.default", embedding_bag, kStandard},
      {"aten.embedding_bag.default", embedding_bag, kStandard},
      {"aten.embedding_bag.padding_idx", embedding_bag, kStandard},  // what nn.EmbeddingBag exports
      {"aten._cdist_forward.default", cdist, kStandard},
      {"aten._pdist_forward.default", pdist, kStandard},
      {"aten._fft_r2c.default", fft_r2c, kStandard},
      {"aten._fft_c2r.default", fft_c2r, kStandard},
      {"aten._fft_c2c.default", fft_c2c, kStandard},
  };
}

}  // namespace torch2mlx
