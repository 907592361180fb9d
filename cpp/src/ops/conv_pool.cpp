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
#include "torch2mlx/python_text.h"

namespace torch2mlx {

namespace {

constexpr LayoutRule kCL = LayoutRule::ChannelsLast;
constexpr LayoutRule kStandard = LayoutRule::Standard;

// A per-spatial-dim argument of an N-d op as a tuple, expanding a single value.
std::string spatial(Call& call, std::string_view name, int dims, std::int64_t fallback) {
  std::vector<std::int64_t> values = call.ints(name);
  if (values.empty()) values.assign(static_cast<std::size_t>(dims), fallback);
  if (values.size() == 1) values.assign(static_cast<std::size_t>(dims), values[0]);
  return int_tuple(values);
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

std::string transposed(const std::string& expression, const std::vector<std::int64_t>& axes) {
  return is_identity(axes) ? expression
                           : fmt::format("mx.transpose({}, {})", expression, int_tuple(axes));
}

// The first input of a ChannelsLast op with `dims` spatial axes, as (N, *spatial, C), and
// the way back to the layout its output is expected in.
struct ChannelsLastInput {
  std::string input;
  int rank = 0;
  bool unbatched = false;

  // The op's result (N, *spatial, C) in the layout the code generator expects.
  [[nodiscard]] std::string output(const std::string& result) const {
    if (!unbatched) return result;
    // (spatial..., C) is logical order (1, ..., rank-1, 0); the output is stored like the input.
    std::vector<int> produced(static_cast<std::size_t>(rank));
    std::iota(produced.begin(), produced.end(), 1);
    produced.back() = 0;
    std::vector<int> wanted(static_cast<std::size_t>(rank));
    std::iota(wanted.begin(), wanted.end(), 0);
    if (rank >= 3) std::rotate(wanted.begin() + 1, wanted.begin() + 2, wanted.end());
    return transposed(fmt::format("({})[0]", result), move_axes(produced, wanted));
  }
};

ChannelsLastInput channels_last_input(Call& call, std::string_view name, int dims,
                                      bool allow_unbatched = true) {
  ChannelsLastInput result;
  result.rank = call.rank(name);
  const std::string stored = call.tensor(name);
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
  result.input = fmt::format("{}[None]", transposed(stored, move_axes(order, wanted)));
  return result;
}

std::string with_bias(Call& call, const std::string& expression) {
  return call.has("bias") ? fmt::format("{} + {}", expression, call.tensor("bias")) : expression;
}

// The weight in MLX's layout. A grouped transposed convolution whose weight is computed at run
// time is regrouped here, as Call::conv_weight only moves the axes of ungrouped ones.
std::string convolution_weight(Call& call, bool transposed_conv, std::int64_t groups) {
  if (!transposed_conv || groups == 1) return call.conv_weight("weight", transposed_conv, groups);
  try {
    return call.conv_weight("weight", transposed_conv, groups);
  } catch (const Error&) {
    return fmt::format("{}({}, {})", call.helper("grouped_transpose_weight"), call.tensor("weight"),
                       groups);
  }
}

// A per-spatial-dim argument of mx.conv1d / mx.conv_transpose1d, which take plain ints.
std::string conv_arg(Call& call, std::string_view name, int dims, std::int64_t fallback) {
  const std::string values = spatial(call, name, dims, fallback);
  return dims == 1 ? values.substr(1, values.size() - 3) : values;  // "(3,)" -> "3"
}

std::string convolve(Call& call, bool transposed_conv) {
  const int dims = call.rank("weight") - 2;
  if (dims < 1 || dims > 3) call.unsupported(fmt::format("a {}-d convolution", dims));
  const std::int64_t groups = call.integer("groups", 1);
  const std::string weight = convolution_weight(call, transposed_conv, groups);
  const ChannelsLastInput input = channels_last_input(call, "input", dims);
  std::string function;
  std::vector<std::string> options{fmt::format("stride={}", conv_arg(call, "stride", dims, 1))};
  const Arg* padding = call.node().input("padding");
  if (!transposed_conv && padding != nullptr && padding->kind == ArgKind::String) {
    // padding="same"/"valid": torch pads "same" asymmetrically when the window is even.
    function = call.helper("conv_padded");
    options.push_back(fmt::format("padding={}", python_string(padding->strings[0])));
    options.push_back(fmt::format("dilation={}", spatial(call, "dilation", dims, 1)));
  } else {
    function = fmt::format("mx.conv{}{}d", transposed_conv ? "_transpose" : "", dims);
    options.push_back(fmt::format("padding={}", conv_arg(call, "padding", dims, 0)));
    options.push_back(fmt::format("dilation={}", conv_arg(call, "dilation", dims, 1)));
    if (transposed_conv) {
      options.push_back(
          fmt::format("output_padding={}", conv_arg(call, "output_padding", dims, 0)));
    }
  }
  std::string result;
  if (dims == 3 && groups > 1) {
    // MLX convolves 3-d inputs with groups=1 only: one convolution per group.
    result = fmt::format("{}({}, {}, {}, {}, {})", call.helper("conv_grouped"), function,
                         input.input, weight, groups, fmt::join(options, ", "));
  } else {
    result = fmt::format("{}({}, {}, {}, groups={})", function, input.input, weight,
                         fmt::join(options, ", "), groups);
  }
  return input.output(with_bias(call, result));
}

std::string conv(Call& call) { return convolve(call, false); }
std::string conv_transpose(Call& call) { return convolve(call, true); }
std::string convolution(Call& call) { return convolve(call, call.flag("transposed", false)); }

// An empty stride means "the kernel size" in torch's pooling signatures.
std::string pool_stride(Call& call, int dims, const std::string& kernel) {
  return call.ints("stride").empty() ? kernel : spatial(call, "stride", dims, 1);
}

template <int Dims>
std::string max_pool(Call& call) {
  const ChannelsLastInput input = channels_last_input(call, "self", Dims);
  const std::string kernel = spatial(call, "kernel_size", Dims, 1);
  call.helper("pool_windows");
  return input.output(fmt::format(
      "{}({}, {}, {}, {}, {}, {})", call.helper("max_pool"), input.input, kernel,
      pool_stride(call, Dims, kernel), spatial(call, "padding", Dims, 0),
      spatial(call, "dilation", Dims, 1), call.flag("ceil_mode", false) ? "True" : "False"));
}

template <int Dims>
std::string max_pool_with_indices(Call& call) {
  // The indices (output 1) are not computed: they only feed max_unpool and the backward
  // pass, which inference graphs do not contain. A graph that reads them fails to run.
  return fmt::format("({}, None)", max_pool<Dims>(call));
}

template <int Dims>
std::string avg_pool(Call& call) {
  const ChannelsLastInput input = channels_last_input(call, "self", Dims);
  const std::string kernel = spatial(call, "kernel_size", Dims, 1);
  call.helper("pool_windows");
  return input.output(fmt::format("{}({}, {}, {}, {}, {}, {}, {})", call.helper("avg_pool"),
                                  input.input, kernel, pool_stride(call, Dims, kernel),
                                  spatial(call, "padding", Dims, 0),
                                  call.flag("ceil_mode", false) ? "True" : "False",
                                  call.flag("count_include_pad", true) ? "True" : "False",
                                  call.literal("divisor_override", "None")));
}

template <int Dims>
std::string adaptive_avg_pool(Call& call) {
  const ChannelsLastInput input = channels_last_input(call, "self", Dims);
  return input.output(fmt::format("{}({}, {}, \"mean\")", call.helper("adaptive_pool"), input.input,
                                  spatial(call, "output_size", Dims, 1)));
}

template <int Dims>
std::string adaptive_max_pool(Call& call) {
  // Indices are not computed, as for max_pool*_with_indices.
  const ChannelsLastInput input = channels_last_input(call, "self", Dims);
  return fmt::format("({}, None)",
                     input.output(fmt::format("{}({}, {}, \"max\")", call.helper("adaptive_pool"),
                                              input.input, spatial(call, "output_size", Dims, 1))));
}

// The per-axis scales of the .default overloads (scales, or scales_d/_h/_w), None if absent.
std::string upsample_scales(Call& call, int dims) {
  if (call.node().input("scale_factors") != nullptr) return call.literal("scale_factors", "None");
  static constexpr std::array<std::string_view, 3> kNames{"scales_d", "scales_h", "scales_w"};
  std::vector<std::string> parts;
  bool any = false;
  for (int axis = 0; axis < dims; ++axis) {
    const std::string_view name =
        dims == 1 ? "scales"
                  : kNames[static_cast<std::size_t>(3 - dims) + static_cast<std::size_t>(axis)];
    any = any || call.has(name);
    parts.push_back(call.has(name) ? float_literal(call.number(name, 1.0)) : "None");
  }
  return any ? fmt::format("({},)", fmt::join(parts, ", ")) : "None";
}

template <int Dims, Text Mode>
std::string upsample(Call& call) {
  const ChannelsLastInput input = channels_last_input(call, first_name(call), Dims, false);
  const std::string size = call.has("output_size") ? call.literal("output_size", "None") : "None";
  const std::string align = call.flag("align_corners", false) ? "True" : "False";
  call.helper("cubic_along");  // the upsample helper names it, whatever the mode
  return fmt::format("{}({}, {}, {}, {}, {})", call.helper("upsample"), input.input, size,
                     upsample_scales(call, Dims), python_string(Mode.view()), align);
}

template <Text Mode>
std::string pad_spatial(Call& call) {
  const auto padding = call.ints("padding");
  const ChannelsLastInput input =
      channels_last_input(call, "self", static_cast<int>(padding.size() / 2));
  return input.output(fmt::format("{}({}, {}, {})", call.helper("pad_spatial"), input.input,
                                  int_tuple(padding), python_string(Mode.view())));
}

std::string pixel_shuffle(Call& call) {
  return fmt::format("{}({}, {})", call.helper("pixel_shuffle"), call.tensor("self"),
                     call.integer("upscale_factor", 1));
}

std::string pixel_unshuffle(Call& call) {
  return fmt::format("{}({}, {})", call.helper("pixel_unshuffle"), call.tensor("self"),
                     call.integer("downscale_factor", 1));
}

// grid_sampler_2d's integer modes, in torch's numbering (GridSamplerInterpolation/Padding).
constexpr std::array<std::string_view, 2> kInterpolation{"bilinear", "nearest"};
constexpr std::array<std::string_view, 3> kGridPadding{"zeros", "border", "reflection"};

std::string grid_sampler(Call& call) {
  const std::int64_t mode = call.integer("interpolation_mode", 0);
  const std::int64_t padding = call.integer("padding_mode", 0);
  if (mode < 0 || mode >= static_cast<std::int64_t>(kInterpolation.size())) {
    call.unsupported("grid_sample with mode='bicubic'");
  }
  if (padding < 0 || padding >= static_cast<std::int64_t>(kGridPadding.size())) {
    call.unsupported(fmt::format("grid_sample padding mode {}", padding));
  }
  const ChannelsLastInput input = channels_last_input(call, "input", 2, false);
  return fmt::format(R"({}({}, {}, "{}", "{}", {}))", call.helper("grid_sample"), input.input,
                     call.tensor("grid"), kInterpolation[static_cast<std::size_t>(mode)],
                     kGridPadding[static_cast<std::size_t>(padding)],
                     call.flag("align_corners", false) ? "True" : "False");
}

std::string col2im(Call& call) {
  return fmt::format("{}({}, {}, {}, {}, {}, {})", call.helper("col2im"), call.tensor("self"),
                     spatial(call, "output_size", 2, 1), spatial(call, "kernel_size", 2, 1),
                     spatial(call, "dilation", 2, 1), spatial(call, "padding", 2, 0),
                     spatial(call, "stride", 2, 1));
}

std::string im2col(Call& call) {
  call.helper("pool_windows");
  return fmt::format("{}({}, {}, {}, {}, {})", call.helper("im2col"), call.tensor("self"),
                     spatial(call, "kernel_size", 2, 1), spatial(call, "dilation", 2, 1),
                     spatial(call, "padding", 2, 0), spatial(call, "stride", 2, 1));
}

}  // namespace

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
