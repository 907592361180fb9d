// Normalisation, linear algebra, attention, embeddings, distances and FFTs. Layer and RMS
// norms and attention use mx.fast; batch, group and instance norms run channels-last, where
// the per-channel parameters and statistics broadcast along the last axis with no reshapes.
#include <fmt/format.h>

#include <array>

#include "call.h"
#include "emit_util.h"

namespace torch2mlx {

namespace {

constexpr LayoutRule kStandard = LayoutRule::Standard;
constexpr LayoutRule kCL = LayoutRule::ChannelsLast;

py::Expr optional_tensor(Call& call, std::string_view name) {
  return call.has(name) ? call.tensor(name) : py::none();
}

py::Expr eps(Call& call) { return py::number(call.number("eps", 1e-5)); }

// Channels-last norms need the batch axis first and channels second in torch's order.
py::Expr batched_input(Call& call) {
  if (call.rank("input") < 2) call.unsupported("a normalisation over channels needs (N, C, ...)");
  return call.tensor("input");
}

py::Expr count(std::size_t value) { return py::integer(static_cast<std::int64_t>(value)); }

py::Expr fast_layer_norm(Call& call, const py::Expr& x) {
  return py::call("mx.fast.layer_norm",
                  {x, optional_tensor(call, "weight"), optional_tensor(call, "bias"), eps(call)});
}

py::Expr layer_norm(Call& call) {
  const auto shape = call.ints("normalized_shape");
  if (shape.size() == 1) return fast_layer_norm(call, call.tensor("input"));
  return call.helper("layer_norm_nd")({call.tensor("input"), count(shape.size()),
                                       optional_tensor(call, "weight"),
                                       optional_tensor(call, "bias"), eps(call)})[py::integer(0)];
}

// A layer norm along one axis (a fusion's node; ConvNeXt normalises channels-first): along
// the stored last axis, as a channels-last input has its channels, one mx.fast.layer_norm;
// along another, moved last and back.
py::Expr layer_norm_along(Call& call) {
  const std::int64_t axis = call.axis("axis", -1);
  const std::int64_t last = call.rank("input") - 1;
  if (axis == last) return fast_layer_norm(call, call.tensor("input"));
  const py::Expr moved =
      py::call("mx.moveaxis", {call.tensor("input"), py::integer(axis), py::integer(-1)});
  return py::call("mx.moveaxis",
                  {fast_layer_norm(call, moved), py::integer(-1), py::integer(axis)});
}

py::Expr native_layer_norm(Call& call) {
  // (output, mean, 1 / std), the statistics with the normalised axes kept as size 1.
  return call.helper("layer_norm_nd")(
      {call.tensor("input"), count(call.ints("normalized_shape").size()),
       optional_tensor(call, "weight"), optional_tensor(call, "bias"), eps(call)});
}

py::Expr rms_norm(Call& call) {
  const auto shape = call.ints("normalized_shape");
  // eps=None means the input dtype's machine epsilon in torch.
  const py::Expr epsilon =
      call.has("eps") ? eps(call)
                      : py::call("mx.finfo", {call.tensor("input").attr("dtype")}).attr("eps");
  if (shape.size() == 1) {
    return py::call("mx.fast.rms_norm",
                    {call.tensor("input"), optional_tensor(call, "weight"), epsilon});
  }
  return call.helper("rms_norm_nd")(
      {call.tensor("input"), count(shape.size()), optional_tensor(call, "weight"), epsilon});
}

// Batch norm, channels-last: (output, mean, 1 / std). With running statistics and not
// training, those are used (inference); otherwise the batch's own, as torch normalises a
// training-mode batch. The running-statistics update of training mode is not reproduced:
// export the model in eval() mode.
py::Expr batch_norm_tuple(Call& call, bool running) {
  return call.helper("batch_norm")(
      {batched_input(call), running ? call.tensor("running_mean") : py::none(),
       running ? call.tensor("running_var") : py::none(), optional_tensor(call, "weight"),
       optional_tensor(call, "bias"), eps(call)});
}

bool uses_running_stats(Call& call) {
  return call.has("running_mean") && call.has("running_var") && !call.flag("training", false);
}

py::Expr batch_norm(Call& call) {
  return batch_norm_tuple(call, uses_running_stats(call))[py::integer(0)];
}

py::Expr batch_norm_no_training(Call& call) {
  // torch returns empty save_mean / save_invstd when it normalises with running statistics.
  const py::Expr empty = py::call("mx.zeros", {py::ints({0})});
  return py::tuple({batch_norm_tuple(call, true)[py::integer(0)], empty, empty});
}

py::Expr batch_norm_legit(Call& call) {
  const bool running = uses_running_stats(call);
  if (running) return batch_norm_no_training(call);
  return batch_norm_tuple(call, false);
}

py::Expr group_norm(Call& call) {
  return call.helper("group_norm")({batched_input(call), py::integer(call.integer("num_groups", 1)),
                                    optional_tensor(call, "weight"), optional_tensor(call, "bias"),
                                    eps(call)})[py::integer(0)];
}

py::Expr native_group_norm(Call& call) {
  // (output, mean, 1 / std), the statistics of shape (N, groups).
  return call.helper("group_norm")({batched_input(call), py::integer(call.integer("group", 1)),
                                    optional_tensor(call, "weight"), optional_tensor(call, "bias"),
                                    eps(call)});
}

py::Expr instance_norm(Call& call) {
  if (!call.flag("use_input_stats", true)) {
    // Running statistics per channel: the same arithmetic as an inference batch norm.
    return batch_norm_tuple(call, true)[py::integer(0)];
  }
  return call.helper("instance_norm")({batched_input(call), optional_tensor(call, "weight"),
                                       optional_tensor(call, "bias"), eps(call)});
}

py::Expr matrix_product(const py::Expr& left, const py::Expr& right) {
  return py::binary(left, py::Op::MatMul, right);
}

py::Expr linear(Call& call) {
  const py::Expr product = matrix_product(call.tensor("input"), call.tensor("weight").attr("T"));
  return call.has("bias") ? product + call.tensor("bias") : product;
}

py::Expr matmul(Call& call) {
  return matrix_product(call.tensor("self"), call.tensor(call.has("other") ? "other" : "mat2"));
}

// addmm, baddbmm: beta * self + alpha * (a @ b). beta=0 ignores self, NaN and inf included.
py::Expr addmm(Call& call) {
  const std::string first = call.has("mat1") ? "mat1" : "batch1";
  const std::string second = call.has("mat2") ? "mat2" : "batch2";
  py::Expr product = matrix_product(call.tensor(first), call.tensor(second));
  if (call.number("alpha", 1.0) != 1.0) product = call.literal("alpha") * product;
  const double beta = call.number("beta", 1.0);
  if (beta == 0.0) {
    // self still decides the broadcast shape.
    return py::call(
        "mx.broadcast_to",
        {product, py::call("mx.broadcast_shapes",
                           {product.attr("shape"), call.tensor("self").attr("shape")})});
  }
  const py::Expr self =
      beta == 1.0 ? call.tensor("self") : call.literal("beta") * call.tensor("self");
  return self + product;
}

py::Expr einsum(Call& call) {
  std::vector<py::Expr> args{py::string(call.text("equation", ""))};
  for (py::Expr& tensor : call.tensors("tensors")) args.push_back(std::move(tensor));
  return py::call("mx.einsum", std::move(args));
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

py::Expr attention(Call& call) {
  // dropout_p is ignored: exported inference graphs pass 0 (models gate it on self.training).
  const py::Expr query = call.tensor("query");
  // torch's default scale, 1 / sqrt(E) in C++: inf for an empty head, where Python raises.
  const py::Expr scale =
      call.has("scale")
          ? py::number(call.number("scale", 1.0))
          : call.helper("scalar_power")({query.attr("shape")[py::integer(-1)], py::number(-0.5)});
  py::Expr mask = py::none();
  if (call.flag("is_causal", false) && call.rank("query") == 4 && equal_lengths(call)) {
    mask = py::string("causal");  // mx.fast's own causal mask, equal to torch's here
  } else if (call.flag("is_causal", false)) {
    mask = call.helper("causal_mask")({query, call.tensor("key")});
  } else if (call.has("attn_mask")) {
    mask = call.tensor("attn_mask");
  }
  return call.helper("attention")({query, call.tensor("key"), call.tensor("value"), scale, mask});
}

// A rotary embedding that the fuse-rope pass recognised (passes.h).
py::Expr rope(Call& call) {
  // mx.fast.rope reads positions along the second-to-last axis; `axis` -3 (fuse-rope's
  // GPT-J, [batch, length, heads, dims]) swaps them there and back.
  const bool heads_last = call.integer("axis", -2) == -3;
  py::Expr input = call.tensor("input");
  if (heads_last) input = py::call("mx.swapaxes", {input, py::integer(-3), py::integer(-2)});
  py::Expr rotated = py::call("mx.fast.rope", {input, py::integer(call.integer("dims", 0))},
                              {{"traditional", py::boolean(call.flag("traditional", false))},
                               {"base", py::number(call.number("base", 10000.0))},
                               {"scale", py::number(call.number("scale", 1.0))},
                               {"offset", call.literal("offset", py::integer(0))}});
  if (heads_last) rotated = py::call("mx.swapaxes", {rotated, py::integer(-3), py::integer(-2)});
  return rotated;
}

py::Expr embedding(Call& call) {
  // padding_idx only stops the gradient of that row; the forward pass is a plain lookup.
  return py::call("mx.take", {call.tensor("weight"), call.tensor("indices")},
                  {{"axis", py::integer(0)}});
}

// _embedding_bag's mode argument, in torch's numbering.
constexpr std::array<std::string_view, 3> kBagModes{"sum", "mean", "max"};

py::Expr embedding_bag(Call& call) {
  const std::int64_t mode = call.integer("mode", 0);
  if (mode < 0 || mode >= static_cast<std::int64_t>(kBagModes.size())) {
    call.unsupported(fmt::format("embedding_bag mode {}", mode));
  }
  if (call.rank("indices") != 1) call.unsupported("embedding_bag with 2-d indices and no offsets");
  // Outputs 1-3 (offset2bag, bag_size, max_indices) only serve the backward pass: None.
  const py::Expr bags = call.helper("embedding_bag")(
      {call.tensor("weight"), call.tensor("indices"), call.tensor("offsets"),
       py::string(kBagModes[static_cast<std::size_t>(mode)]),
       optional_tensor(call, "per_sample_weights"),
       py::boolean(call.flag("include_last_offset", false)),
       py::integer(call.integer("padding_idx", -1))});
  return py::tuple({bags, py::none(), py::none(), py::none()});
}

py::Expr cdist(Call& call) {
  return call.helper("cdist")(
      {call.tensor("x1"), call.tensor("x2"), py::number(call.number("p", 2.0))});
}

py::Expr pdist(Call& call) {
  (void)call.helper("cdist");  // pdist reads the full distance matrix
  return call.helper("pdist")({call.tensor("self"), py::number(call.number("p", 2.0))});
}

// torch's fft_norm_mode (0: none, 1: 1/sqrt(n), 2: 1/n) as numpy's norm for the forward
// transform; the inverse transforms read it the other way round.
constexpr std::array<std::string_view, 3> kForwardNorm{"backward", "ortho", "forward"};
constexpr std::array<std::string_view, 3> kInverseNorm{"forward", "ortho", "backward"};

py::Expr fft_norm(Call& call, bool inverse) {
  const std::int64_t mode = call.integer("normalization", 0);
  if (mode < 0 || mode > 2) call.unsupported(fmt::format("fft normalization mode {}", mode));
  return py::string((inverse ? kInverseNorm : kForwardNorm)[static_cast<std::size_t>(mode)]);
}

py::Expr fft_r2c(Call& call) {
  const py::Expr self = call.tensor("self");
  const py::Expr axes = py::ints(call.axes("dim"));
  if (call.flag("onesided", true)) {
    return py::call("mx.fft.rfftn", {self}, {{"axes", axes}, {"norm", fft_norm(call, false)}});
  }
  return py::call("mx.fft.fftn", {self.method("astype", {py::dotted("mx.complex64")})},
                  {{"axes", axes}, {"norm", fft_norm(call, false)}});
}

py::Expr fft_c2r(Call& call) {
  const std::vector<std::int64_t> axes = call.axes("dim");
  const TensorMeta* info = call.meta("self");
  if (info == nullptr) call.unsupported("the input shape is unknown");
  std::vector<py::Expr> sizes;
  for (std::size_t index = 0; index + 1 < axes.size(); ++index) {
    sizes.push_back(call.tensor("self").attr("shape")[py::integer(axes[index])]);
  }
  sizes.push_back(call.literal("last_dim_size"));
  return py::call("mx.fft.irfftn", {call.tensor("self")},
                  {{"s", py::tuple(std::move(sizes))},
                   {"axes", py::ints(axes)},
                   {"norm", fft_norm(call, true)}});
}

py::Expr fft_c2c(Call& call) {
  const bool forward = call.flag("forward", true);
  return py::call(forward ? "mx.fft.fftn" : "mx.fft.ifftn", {call.tensor("self")},
                  {{"axes", py::ints(call.axes("dim"))}, {"norm", fft_norm(call, !forward)}});
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
