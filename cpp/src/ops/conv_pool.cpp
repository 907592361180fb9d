// Convolutions, pooling, upsampling, spatial padding and sampling. These run channels-last
// (NLC, NHWC, NDHWC), as MLX's convolutions do: the layout pass moves the input there once,
// and convolution weights are stored in MLX's order at conversion time.
//
// Unbatched inputs ((C, *spatial), which torch's convolutions, pools and pads accept) arrive
// in the channels-last order of their own rank, which puts C first: the emitters move them to
// (1, *spatial, C) and back, so the helpers only ever see batched channels-last tensors.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <numeric>

#include "call.h"
#include "emit_util.h"
#include "torch2mlx/error.h"

namespace torch2mlx {

namespace {

constexpr LayoutRule kCL = LayoutRule::ChannelsLast;
constexpr LayoutRule kStandard = LayoutRule::Standard;

// A per-spatial-dim argument of an N-d op, expanding a single value.
std::vector<std::int64_t> spatial_values(Call& call, std::string_view name, int dims,
                                         std::int64_t fallback) {
  std::vector<std::int64_t> values = call.ints(name);
  if (values.empty()) values.assign(static_cast<std::size_t>(dims), fallback);
  if (values.size() == 1) values.assign(static_cast<std::size_t>(dims), values[0]);
  return values;
}

// The same as a tuple.
py::Expr spatial(Call& call, std::string_view name, int dims, std::int64_t fallback) {
  return py::ints(spatial_values(call, name, dims, fallback));
}

// The storage order the layout pass gives a ChannelsLast input of `rank` (codegen.cpp):
// (0, 2, ..., rank-1, 1) from rank 3 on, torch's order below.
std::vector<int> stored_order(const Call& call, int rank) {
  std::vector<int> order(static_cast<std::size_t>(rank));
  std::iota(order.begin(), order.end(), 0);
  if (rank >= 3 && call.permuted()) std::rotate(order.begin() + 1, order.begin() + 2, order.end());
  return order;
}

// The axes of the transpose that turns stored order `from` into logical order `to`.
std::vector<std::int64_t> move_axes(const std::vector<int>& from, const std::vector<int>& to) {
  std::vector<std::int64_t> axes;
  axes.reserve(to.size());
  for (const int logical : to)
    axes.push_back(std::find(from.begin(), from.end(), logical) - from.begin());
  return axes;
}

bool is_identity(const std::vector<std::int64_t>& axes) {
  for (std::size_t axis = 0; axis < axes.size(); ++axis) {
    if (axes[axis] != static_cast<std::int64_t>(axis)) return false;
  }
  return true;
}

py::Expr transposed(const py::Expr& expression, const std::vector<std::int64_t>& axes) {
  return is_identity(axes) ? expression : py::call("mx.transpose", {expression, py::ints(axes)});
}

// The first input of a ChannelsLast op with `dims` spatial axes, as (N, *spatial, C), and
// the way back to the layout its output is expected in.
struct ChannelsLastInput {
  py::Expr input;
  int rank = 0;
  bool unbatched = false;

  // The op's result (N, *spatial, C) in the layout the code generator expects.
  [[nodiscard]] py::Expr output(const py::Expr& result) const {
    if (!unbatched) return result;
    // (spatial..., C) is logical order (1, ..., rank-1, 0); the output is stored like the input.
    std::vector<int> produced(static_cast<std::size_t>(rank));
    std::iota(produced.begin(), produced.end(), 1);
    produced.back() = 0;
    std::vector<int> wanted(static_cast<std::size_t>(rank));
    std::iota(wanted.begin(), wanted.end(), 0);
    if (rank >= 3) std::rotate(wanted.begin() + 1, wanted.begin() + 2, wanted.end());
    return transposed(result[py::integer(0)], move_axes(produced, wanted));
  }
};

ChannelsLastInput channels_last_input(Call& call, std::string_view name, int dims,
                                      bool allow_unbatched = true) {
  ChannelsLastInput result;
  result.rank = call.rank(name);
  const py::Expr stored = call.tensor(name);
  const std::vector<int> order = stored_order(call, result.rank);
  std::vector<int> wanted(static_cast<std::size_t>(result.rank));
  std::iota(wanted.begin(), wanted.end(), 0);
  if (result.rank == dims + 2) {
    // A parameter or constant input keeps torch's order (the layout pass leaves them alone).
    if (result.rank >= 3) std::rotate(wanted.begin() + 1, wanted.begin() + 2, wanted.end());
    result.input = transposed(stored, move_axes(order, wanted));
    return result;
  }
  if (result.rank != dims + 1 || !allow_unbatched) {
    call.unsupported(fmt::format("expected a {}-d input (N, C, *spatial){}, got {} dims", dims + 2,
                                 allow_unbatched ? " or an unbatched one" : "", result.rank));
  }
  result.unbatched = true;
  std::rotate(wanted.begin(), wanted.begin() + 1, wanted.end());  // (spatial..., C)
  result.input = transposed(stored, move_axes(order, wanted))[py::none()];
  return result;
}

py::Expr with_bias(Call& call, const py::Expr& expression) {
  return call.has("bias") ? expression + call.tensor("bias") : expression;
}

// The weight in MLX's layout. A grouped transposed convolution whose weight is computed at run
// time is regrouped here, as Call::conv_weight only moves the axes of ungrouped ones.
py::Expr convolution_weight(Call& call, bool transposed_conv, std::int64_t groups) {
  if (!transposed_conv || groups == 1) return call.conv_weight("weight", transposed_conv, groups);
  try {
    return call.conv_weight("weight", transposed_conv, groups);
  } catch (const Error&) {
    return call.helper("grouped_transpose_weight")({call.tensor("weight"), py::integer(groups)});
  }
}

// A per-spatial-dim argument of mx.conv1d / mx.conv_transpose1d, which take plain ints.
py::Expr conv_arg(Call& call, std::string_view name, int dims, std::int64_t fallback) {
  const std::vector<std::int64_t> values = spatial_values(call, name, dims, fallback);
  return dims == 1 && values.size() == 1 ? py::integer(values[0]) : py::ints(values);
}

// MLX's convolutions, by number of spatial dims.
constexpr std::array<std::string_view, 3> kConvolutions{"mx.conv1d", "mx.conv2d", "mx.conv3d"};
constexpr std::array<std::string_view, 3> kTransposedConvolutions{
    "mx.conv_transpose1d", "mx.conv_transpose2d", "mx.conv_transpose3d"};

py::Expr convolve(Call& call, bool transposed_conv) {
  const int dims = call.rank("weight") - 2;
  if (dims < 1 || dims > 3) call.unsupported(fmt::format("a {}-d convolution", dims));
  const std::int64_t groups = call.integer("groups", 1);
  const py::Expr weight = convolution_weight(call, transposed_conv, groups);
  const ChannelsLastInput input = channels_last_input(call, "input", dims);
  if (transposed_conv && transpose_padding_past_kernel(call.node(), call.meta("weight"))) {
    // MLX's own padding would shorten the output: the helper crops torch's padding off the
    // whole output instead. It takes the same channels-last input and MLX-layout weight.
    return input.output(with_bias(
        call, call.helper("conv_transpose")(
                  {input.input, weight, spatial(call, "stride", dims, 1),
                   spatial(call, "padding", dims, 0), spatial(call, "output_padding", dims, 0),
                   spatial(call, "dilation", dims, 1), py::integer(groups)})));
  }
  py::Expr function;
  std::vector<py::Keyword> options{{"stride", conv_arg(call, "stride", dims, 1)}};
  const Arg* padding = call.node().input("padding");
  if (!transposed_conv && padding != nullptr && padding->kind == ArgKind::String) {
    // padding="same"/"valid": torch pads "same" asymmetrically when the window is even.
    function = call.helper("conv_padded");
    options.push_back({"padding", py::string(padding->strings[0])});
    options.push_back({"dilation", spatial(call, "dilation", dims, 1)});
  } else {
    const auto index = static_cast<std::size_t>(dims - 1);
    function =
        py::dotted(transposed_conv ? kTransposedConvolutions.at(index) : kConvolutions.at(index));
    options.push_back({"padding", conv_arg(call, "padding", dims, 0)});
    options.push_back({"dilation", conv_arg(call, "dilation", dims, 1)});
    if (transposed_conv) {
      options.push_back({"output_padding", conv_arg(call, "output_padding", dims, 0)});
    }
  }
  py::Expr result;
  if (dims == 3 && groups > 1) {
    // MLX convolves 3-d inputs with groups=1 only: one convolution per group.
    result = call.helper("conv_grouped")({function, input.input, weight, py::integer(groups)},
                                         std::move(options));
  } else {
    options.push_back({"groups", py::integer(groups)});
    result = function({input.input, weight}, std::move(options));
  }
  return input.output(with_bias(call, result));
}

py::Expr conv(Call& call) { return convolve(call, false); }
py::Expr conv_transpose(Call& call) { return convolve(call, true); }
py::Expr convolution(Call& call) { return convolve(call, call.flag("transposed", false)); }

// An empty stride means "the kernel size" in torch's pooling signatures.
py::Expr pool_stride(Call& call, int dims, const py::Expr& kernel) {
  return call.ints("stride").empty() ? kernel : spatial(call, "stride", dims, 1);
}

template <int Dims>
py::Expr max_pool(Call& call) {
  const ChannelsLastInput input = channels_last_input(call, "self", Dims);
  const py::Expr kernel = spatial(call, "kernel_size", Dims, 1);
  call.helper("pool_windows");
  return input.output(call.helper("max_pool")(
      {input.input, kernel, pool_stride(call, Dims, kernel), spatial(call, "padding", Dims, 0),
       spatial(call, "dilation", Dims, 1), py::boolean(call.flag("ceil_mode", false))}));
}

template <int Dims>
py::Expr max_pool_with_indices(Call& call) {
  // The indices (output 1) are not computed: they only feed max_unpool and the backward
  // pass, which inference graphs do not contain. A graph that reads them fails to run.
  return py::tuple({max_pool<Dims>(call), py::none()});
}

template <int Dims>
py::Expr avg_pool(Call& call) {
  const ChannelsLastInput input = channels_last_input(call, "self", Dims);
  const py::Expr kernel = spatial(call, "kernel_size", Dims, 1);
  call.helper("pool_windows");
  return input.output(call.helper("avg_pool")({input.input, kernel, pool_stride(call, Dims, kernel),
                                               spatial(call, "padding", Dims, 0),
                                               py::boolean(call.flag("ceil_mode", false)),
                                               py::boolean(call.flag("count_include_pad", true)),
                                               call.literal("divisor_override", py::none())}));
}

template <int Dims>
py::Expr adaptive_avg_pool(Call& call) {
  const ChannelsLastInput input = channels_last_input(call, "self", Dims);
  return input.output(call.helper("adaptive_pool")(
      {input.input, spatial(call, "output_size", Dims, 1), py::string("mean")}));
}

template <int Dims>
py::Expr adaptive_max_pool(Call& call) {
  // Indices are not computed, as for max_pool*_with_indices.
  const ChannelsLastInput input = channels_last_input(call, "self", Dims);
  return py::tuple({input.output(call.helper("adaptive_pool")(
                        {input.input, spatial(call, "output_size", Dims, 1), py::string("max")})),
                    py::none()});
}

// The per-axis scales of the .default overloads (scales, or scales_d/_h/_w), None if absent.
py::Expr upsample_scales(Call& call, int dims) {
  if (call.node().input("scale_factors") != nullptr)
    return call.literal("scale_factors", py::none());
  static constexpr std::array<std::string_view, 3> kNames{"scales_d", "scales_h", "scales_w"};
  std::vector<py::Expr> parts;
  bool any = false;
  for (int axis = 0; axis < dims; ++axis) {
    const std::string_view name =
        dims == 1 ? "scales"
                  : kNames[static_cast<std::size_t>(3 - dims) + static_cast<std::size_t>(axis)];
    any = any || call.has(name);
    parts.push_back(call.has(name) ? py::number(call.number(name, 1.0)) : py::none());
  }
  return any ? py::tuple(std::move(parts)) : py::none();
}

template <int Dims, Text Mode>
py::Expr upsample(Call& call) {
  const ChannelsLastInput input = channels_last_input(call, first_name(call), Dims, false);
  const py::Expr size =
      call.has("output_size") ? call.literal("output_size", py::none()) : py::none();
  call.helper("cubic_along");  // the upsample helper names it, whatever the mode
  return call.helper("upsample")({input.input, size, upsample_scales(call, Dims),
                                  py::string(Mode.view()),
                                  py::boolean(call.flag("align_corners", false))});
}

template <Text Mode>
py::Expr pad_spatial(Call& call) {
  const auto padding = call.ints("padding");
  const ChannelsLastInput input =
      channels_last_input(call, "self", static_cast<int>(padding.size() / 2));
  return input.output(
      call.helper("pad_spatial")({input.input, py::ints(padding), py::string(Mode.view())}));
}

py::Expr pixel_shuffle(Call& call) {
  return call.helper("pixel_shuffle")(
      {call.tensor("self"), py::integer(call.integer("upscale_factor", 1))});
}

py::Expr pixel_unshuffle(Call& call) {
  return call.helper("pixel_unshuffle")(
      {call.tensor("self"), py::integer(call.integer("downscale_factor", 1))});
}

// grid_sampler_2d's integer modes, in torch's numbering (GridSamplerInterpolation/Padding).
constexpr std::array<std::string_view, 2> kInterpolation{"bilinear", "nearest"};
constexpr std::array<std::string_view, 3> kGridPadding{"zeros", "border", "reflection"};

py::Expr grid_sampler(Call& call) {
  const std::int64_t mode = call.integer("interpolation_mode", 0);
  const std::int64_t padding = call.integer("padding_mode", 0);
  if (mode < 0 || mode >= static_cast<std::int64_t>(kInterpolation.size())) {
    call.unsupported("grid_sample with mode='bicubic'");
  }
  if (padding < 0 || padding >= static_cast<std::int64_t>(kGridPadding.size())) {
    call.unsupported(fmt::format("grid_sample padding mode {}", padding));
  }
  const ChannelsLastInput input = channels_last_input(call, "input", 2, false);
  return call.helper("grid_sample")({input.input, call.tensor("grid"),
                                     py::string(kInterpolation[static_cast<std::size_t>(mode)]),
                                     py::string(kGridPadding[static_cast<std::size_t>(padding)]),
                                     py::boolean(call.flag("align_corners", false))});
}

py::Expr col2im(Call& call) {
  return call.helper("col2im")({call.tensor("self"), spatial(call, "output_size", 2, 1),
                                spatial(call, "kernel_size", 2, 1), spatial(call, "dilation", 2, 1),
                                spatial(call, "padding", 2, 0), spatial(call, "stride", 2, 1)});
}

py::Expr im2col(Call& call) {
  call.helper("pool_windows");
  return call.helper("im2col")({call.tensor("self"), spatial(call, "kernel_size", 2, 1),
                                spatial(call, "dilation", 2, 1), spatial(call, "padding", 2, 0),
                                spatial(call, "stride", 2, 1)});
}

}  // namespace

bool transpose_padding_past_kernel(const Node& node, const TensorMeta* weight) {
  if (weight == nullptr || weight->shape.size() < 3) return true;
  const std::size_t dims = weight->shape.size() - 2;
  const auto per_axis = [&](std::string_view name, std::int64_t fallback) {
    const Arg* arg = node.input(name);
    std::vector<std::int64_t> values;
    if (arg != nullptr) values = arg->ints;
    if (values.empty()) values.assign(dims, fallback);
    if (values.size() == 1) values.assign(dims, values[0]);
    return values;
  };
  const std::vector<std::int64_t> padding = per_axis("padding", 0);
  const std::vector<std::int64_t> dilation = per_axis("dilation", 1);
  if (padding.size() != dims || dilation.size() != dims) return true;
  for (std::size_t axis = 0; axis < dims; ++axis) {
    const Dim& kernel = weight->shape[axis + 2];
    if (!kernel.symbol.empty() || padding[axis] > dilation[axis] * (kernel.hint - 1)) return true;
  }
  return false;
}

std::vector<OpEntry> conv_pool_ops() {
  return {
      {"aten.conv1d.default", conv, kCL},
      {"aten.conv2d.default", conv, kCL},
      {"aten.conv3d.default", conv, kCL},
      {"aten.conv1d.padding", conv, kCL},
      {"aten.conv2d.padding", conv, kCL},
      {"aten.conv3d.padding", conv, kCL},
      {"aten.conv_transpose1d.default", conv_transpose, kCL},
      {"aten.conv_transpose2d.input", conv_transpose, kCL},
      {"aten.conv_transpose3d.input", conv_transpose, kCL},
      {"aten.convolution.default", convolution, kCL},
      {"aten.max_pool1d.default", max_pool<1>, kCL},
      {"aten.max_pool2d.default", max_pool<2>, kCL},
      {"aten.max_pool3d.default", max_pool<3>, kCL},
      // Output 1 (the indices) is None: see max_pool_with_indices.
      {"aten.max_pool1d_with_indices.default", max_pool_with_indices<1>, kCL},
      {"aten.max_pool2d_with_indices.default", max_pool_with_indices<2>, kCL},
      {"aten.max_pool3d_with_indices.default", max_pool_with_indices<3>, kCL},
      {"aten.avg_pool1d.default", avg_pool<1>, kCL},
      {"aten.avg_pool2d.default", avg_pool<2>, kCL},
      {"aten.avg_pool3d.default", avg_pool<3>, kCL},
      {"aten.adaptive_avg_pool1d.default", adaptive_avg_pool<1>, kCL},
      {"aten.adaptive_avg_pool2d.default", adaptive_avg_pool<2>, kCL},
      {"aten.adaptive_avg_pool3d.default", adaptive_avg_pool<3>, kCL},
      {"aten._adaptive_avg_pool2d.default", adaptive_avg_pool<2>, kCL},
      {"aten._adaptive_avg_pool3d.default", adaptive_avg_pool<3>, kCL},
      // Output 1 (the indices) is None, as for max pooling.
      {"aten.adaptive_max_pool1d.default", adaptive_max_pool<1>, kCL},
      {"aten.adaptive_max_pool2d.default", adaptive_max_pool<2>, kCL},
      {"aten.adaptive_max_pool3d.default", adaptive_max_pool<3>, kCL},
      {"aten.upsample_nearest1d.vec", upsample<1, "nearest">, kCL},
      {"aten.upsample_nearest2d.vec", upsample<2, "nearest">, kCL},
      {"aten.upsample_nearest3d.vec", upsample<3, "nearest">, kCL},
      {"aten.upsample_nearest1d.default", upsample<1, "nearest">, kCL},
      {"aten.upsample_nearest2d.default", upsample<2, "nearest">, kCL},
      {"aten.upsample_nearest3d.default", upsample<3, "nearest">, kCL},
      {"aten._upsample_nearest_exact1d.vec", upsample<1, "nearest-exact">, kCL},
      {"aten._upsample_nearest_exact2d.vec", upsample<2, "nearest-exact">, kCL},
      {"aten._upsample_nearest_exact3d.vec", upsample<3, "nearest-exact">, kCL},
      {"aten.upsample_linear1d.vec", upsample<1, "linear">, kCL},
      {"aten.upsample_linear1d.default", upsample<1, "linear">, kCL},
      {"aten.upsample_bilinear2d.vec", upsample<2, "linear">, kCL},
      {"aten.upsample_bilinear2d.default", upsample<2, "linear">, kCL},
      {"aten.upsample_bicubic2d.vec", upsample<2, "cubic">, kCL},
      {"aten.upsample_bicubic2d.default", upsample<2, "cubic">, kCL},
      {"aten.upsample_trilinear3d.vec", upsample<3, "linear">, kCL},
      {"aten.upsample_trilinear3d.default", upsample<3, "linear">, kCL},
      {"aten.reflection_pad1d.default", pad_spatial<"reflect">, kCL},
      {"aten.reflection_pad2d.default", pad_spatial<"reflect">, kCL},
      {"aten.reflection_pad3d.default", pad_spatial<"reflect">, kCL},
      {"aten.replication_pad1d.default", pad_spatial<"edge">, kCL},
      {"aten.replication_pad2d.default", pad_spatial<"edge">, kCL},
      {"aten.replication_pad3d.default", pad_spatial<"edge">, kCL},
      {"aten.pixel_shuffle.default", pixel_shuffle, kStandard},
      {"aten.pixel_unshuffle.default", pixel_unshuffle, kStandard},
      {"aten.grid_sampler_2d.default", grid_sampler, kCL},
      {"aten.col2im.default", col2im, kStandard},
      {"aten.im2col.default", im2col, kStandard},
  };
}

}  // namespace torch2mlx
