#include "torch2mlx/registry.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <numeric>

#include "torch2mlx/error.h"

namespace torch2mlx {
namespace {

using enum Transform;
using enum Layout;

// Tensor sets shared by several module types.
constexpr std::array<TensorRule, 2> kWeightBias{{{"weight", Keep}, {"bias", Keep}}};
constexpr std::array<TensorRule, 1> kWeight{{{"weight", Keep}}};
constexpr std::array<TensorRule, 2> kConv{{{"weight", ConvWeight}, {"bias", Keep}}};
constexpr std::array<TensorRule, 2> kConvTranspose{
    {{"weight", ConvTransposeWeight}, {"bias", Keep}}};
constexpr std::array<TensorRule, 2> kHfConv1D{{{"weight", TransposeLast2}, {"bias", Keep}}};
constexpr std::array<TensorRule, 2> kBilinear{{{"weight", TransposeLast2}, {"bias", Keep}}};
constexpr std::array<TensorRule, 5> kBatchNorm{{{"weight", Keep},
                                                {"bias", Keep},
                                                {"running_mean", Keep},
                                                {"running_var", Keep},
                                                {"num_batches_tracked", Drop}}};
constexpr std::array<TensorRule, 7> kAttention{{{"in_proj_weight", Keep},
                                                {"in_proj_bias", Keep},
                                                {"q_proj_weight", Keep},
                                                {"k_proj_weight", Keep},
                                                {"v_proj_weight", Keep},
                                                {"bias_k", Keep},
                                                {"bias_v", Keep}}};
// RNN tensors by pattern: {k} is the layer, {r} is "" or "_reverse".
constexpr std::array<TensorRule, 4> kRecurrent{{{"weight_ih_l{k}{r}", Keep},
                                                {"weight_hh_l{k}{r}", Keep},
                                                {"bias_ih_l{k}{r}", Keep},
                                                {"bias_hh_l{k}{r}", Keep}}};
constexpr std::array<TensorRule, 5> kLstm{{{"weight_ih_l{k}{r}", Keep},
                                           {"weight_hh_l{k}{r}", Keep},
                                           {"bias_ih_l{k}{r}", Keep},
                                           {"bias_hh_l{k}{r}", Keep},
                                           {"weight_hr_l{k}{r}", Keep}}};
constexpr std::span<const TensorRule> kNone{};

constexpr std::string_view kConvArgs =
    "in_channels,out_channels,kernel_size,stride,padding,dilation,groups,bias=bias?,"
    "padding_mode";
constexpr std::string_view kConvTransposeArgs =
    "in_channels,out_channels,kernel_size,stride,padding,dilation,output_padding,groups,"
    "bias=bias?";
constexpr std::string_view kBatchNormArgs =
    "num_features,eps,momentum=momentum|0.1,affine,track_running_stats";
constexpr std::string_view kInstanceNormArgs = "num_features,eps,affine,track_running_stats";
constexpr std::string_view kMaxPoolArgs =
    "kernel_size,stride,padding,dilation,return_indices,ceil_mode";
constexpr std::string_view kAvgPoolArgs =
    "kernel_size,stride,padding,ceil_mode,count_include_pad,divisor_override";
constexpr std::string_view kRnnArgs =
    "input_size,hidden_size,num_layers,bias,batch_first,bidirectional";

// The table. Module types are fully qualified, as type(m).__module__ + "." + __qualname__.
// Templates (torch2mlx.templates.*) keep torch's parameter names, so their tensors are Keep.
constexpr auto kLayers = std::to_array<LayerEntry>({
    // linear and embedding
    {"torch.nn.modules.linear.Linear", "mlx.nn.Linear",
     "input_dims=in_features,output_dims=out_features,bias=bias?", TorchOrder, kWeightBias},
    {"torch.nn.modules.linear.NonDynamicallyQuantizableLinear", "mlx.nn.Linear",
     "input_dims=in_features,output_dims=out_features,bias=bias?", TorchOrder, kWeightBias},
    {"torch.nn.modules.linear.Bilinear", "mlx.nn.Bilinear",
     "input1_dims=in1_features,input2_dims=in2_features,output_dims=out_features,bias=bias?",
     TorchOrder, kBilinear},
    {"torch.nn.modules.linear.Identity", "mlx.nn.Identity", "", Any, kNone},
    {"torch.nn.modules.sparse.Embedding", "mlx.nn.Embedding", "num_embeddings,dims=embedding_dim",
     TorchOrder, kWeight},
    {"torch.nn.modules.sparse.EmbeddingBag", "torch2mlx.templates.EmbeddingBag",
     "num_embeddings,embedding_dim,max_norm,norm_type,mode,include_last_offset,padding_idx",
     TorchOrder, kWeight},
    {"transformers.pytorch_utils.Conv1D", "mlx.nn.Linear", "input_dims=nx,output_dims=nf",
     TorchOrder, kHfConv1D},
    // convolutions (channels-last inside)
    {"torch.nn.modules.conv.Conv1d", "torch2mlx.templates.Conv1d", kConvArgs, ChannelsLast, kConv},
    {"torch.nn.modules.conv.Conv2d", "torch2mlx.templates.Conv2d", kConvArgs, ChannelsLast, kConv},
    {"torch.nn.modules.conv.Conv3d", "torch2mlx.templates.Conv3d", kConvArgs, ChannelsLast, kConv},
    {"torch.nn.modules.conv.ConvTranspose1d", "torch2mlx.templates.ConvTranspose1d",
     kConvTransposeArgs, ChannelsLast, kConvTranspose},
    {"torch.nn.modules.conv.ConvTranspose2d", "torch2mlx.templates.ConvTranspose2d",
     kConvTransposeArgs, ChannelsLast, kConvTranspose},
    {"torch.nn.modules.conv.ConvTranspose3d", "torch2mlx.templates.ConvTranspose3d",
     kConvTransposeArgs, ChannelsLast, kConvTranspose},
    // normalisation
    {"torch.nn.modules.normalization.LayerNorm", "torch2mlx.templates.LayerNorm",
     "normalized_shape,eps,elementwise_affine,bias=bias?", TorchOrder, kWeightBias},
    {"torch.nn.modules.normalization.RMSNorm", "torch2mlx.templates.RMSNorm",
     "normalized_shape,eps,elementwise_affine", TorchOrder, kWeight},
    {"torch.nn.modules.normalization.GroupNorm", "mlx.nn.GroupNorm",
     "num_groups,dims=num_channels,eps,affine,pytorch_compatible=:True", ChannelsLast, kWeightBias},
    {"torch.nn.modules.batchnorm.BatchNorm1d", "torch2mlx.templates.BatchNorm1d", kBatchNormArgs,
     ChannelsLast, kBatchNorm},
    {"torch.nn.modules.batchnorm.BatchNorm2d", "torch2mlx.templates.BatchNorm2d", kBatchNormArgs,
     ChannelsLast, kBatchNorm},
    {"torch.nn.modules.batchnorm.BatchNorm3d", "torch2mlx.templates.BatchNorm3d", kBatchNormArgs,
     ChannelsLast, kBatchNorm},
    {"torch.nn.modules.instancenorm.InstanceNorm1d", "torch2mlx.templates.InstanceNorm1d",
     kInstanceNormArgs, ChannelsLast, kBatchNorm},
    {"torch.nn.modules.instancenorm.InstanceNorm2d", "torch2mlx.templates.InstanceNorm2d",
     kInstanceNormArgs, ChannelsLast, kBatchNorm},
    {"torch.nn.modules.instancenorm.InstanceNorm3d", "torch2mlx.templates.InstanceNorm3d",
     kInstanceNormArgs, ChannelsLast, kBatchNorm},
    // attention and transformers (templates with torch's names and semantics)
    {"torch.nn.modules.activation.MultiheadAttention", "torch2mlx.templates.MultiheadAttention",
     "embed_dim,num_heads,bias=in_proj_bias?,add_bias_kv=bias_k?,add_zero_attn,kdim,vdim,"
     "batch_first",
     TorchOrder, kAttention},
    {"torch.nn.modules.transformer.TransformerEncoderLayer",
     "torch2mlx.templates.TransformerEncoderLayer", ":from_torch", TorchOrder, kNone},
    {"torch.nn.modules.transformer.TransformerDecoderLayer",
     "torch2mlx.templates.TransformerDecoderLayer", ":from_torch", TorchOrder, kNone},
    {"torch.nn.modules.transformer.TransformerEncoder", "torch2mlx.templates.TransformerEncoder",
     ":from_torch", TorchOrder, kNone},
    {"torch.nn.modules.transformer.TransformerDecoder", "torch2mlx.templates.TransformerDecoder",
     ":from_torch", TorchOrder, kNone},
    {"torch.nn.modules.transformer.Transformer", "torch2mlx.templates.Transformer", ":from_torch",
     TorchOrder, kNone},
    // recurrent
    {"torch.nn.modules.rnn.RNN", "torch2mlx.templates.RNN",
     "input_size,hidden_size,num_layers,"
     "nonlinearity,bias,batch_first,bidirectional",
     TorchOrder, kRecurrent, true},
    {"torch.nn.modules.rnn.LSTM", "torch2mlx.templates.LSTM",
     "input_size,hidden_size,num_layers,bias,batch_first,bidirectional,proj_size", TorchOrder,
     kLstm, true},
    {"torch.nn.modules.rnn.GRU", "torch2mlx.templates.GRU", kRnnArgs, TorchOrder, kRecurrent, true},
    // activations
    {"torch.nn.modules.activation.ReLU", "mlx.nn.ReLU", "", Any, kNone},
    {"torch.nn.modules.activation.ReLU6", "mlx.nn.ReLU6", "", Any, kNone},
    {"torch.nn.modules.activation.GELU", "torch2mlx.templates.GELU", "approximate", Any, kNone},
    {"torch.nn.modules.activation.SiLU", "mlx.nn.SiLU", "", Any, kNone},
    {"torch.nn.modules.activation.Sigmoid", "mlx.nn.Sigmoid", "", Any, kNone},
    {"torch.nn.modules.activation.Tanh", "mlx.nn.Tanh", "", Any, kNone},
    {"torch.nn.modules.activation.LeakyReLU", "mlx.nn.LeakyReLU", "negative_slope", Any, kNone},
    {"torch.nn.modules.activation.ELU", "mlx.nn.ELU", "alpha", Any, kNone},
    {"torch.nn.modules.activation.CELU", "mlx.nn.CELU", "alpha", Any, kNone},
    {"torch.nn.modules.activation.SELU", "mlx.nn.SELU", "", Any, kNone},
    {"torch.nn.modules.activation.Mish", "mlx.nn.Mish", "", Any, kNone},
    {"torch.nn.modules.activation.Hardswish", "mlx.nn.Hardswish", "", Any, kNone},
    {"torch.nn.modules.activation.Hardtanh", "torch2mlx.templates.Hardtanh", "min_val,max_val", Any,
     kNone},
    {"torch.nn.modules.activation.Hardsigmoid", "torch2mlx.templates.Hardsigmoid", "", Any, kNone},
    {"torch.nn.modules.activation.Softplus", "torch2mlx.templates.Softplus", "beta,threshold", Any,
     kNone},
    {"torch.nn.modules.activation.Softsign", "mlx.nn.Softsign", "", Any, kNone},
    {"torch.nn.modules.activation.LogSigmoid", "mlx.nn.LogSigmoid", "", Any, kNone},
    {"torch.nn.modules.activation.Softshrink", "mlx.nn.Softshrink", "lambd", Any, kNone},
    {"torch.nn.modules.activation.Hardshrink", "mlx.nn.HardShrink", "lambd", Any, kNone},
    {"torch.nn.modules.activation.Softmax", "torch2mlx.templates.Softmax", "dim", TorchOrder,
     kNone},
    {"torch.nn.modules.activation.LogSoftmax", "torch2mlx.templates.LogSoftmax", "dim", TorchOrder,
     kNone},
    {"torch.nn.modules.activation.Softmin", "torch2mlx.templates.Softmin", "dim", TorchOrder,
     kNone},
    {"torch.nn.modules.activation.GLU", "torch2mlx.templates.GLU", "dim", TorchOrder, kNone},
    {"torch.nn.modules.activation.PReLU", "torch2mlx.templates.PReLU", "num_parameters",
     ChannelsLast, kWeight},
    // pooling
    {"torch.nn.modules.pooling.MaxPool1d", "torch2mlx.templates.MaxPool1d", kMaxPoolArgs,
     ChannelsLast, kNone},
    {"torch.nn.modules.pooling.MaxPool2d", "torch2mlx.templates.MaxPool2d", kMaxPoolArgs,
     ChannelsLast, kNone},
    {"torch.nn.modules.pooling.MaxPool3d", "torch2mlx.templates.MaxPool3d", kMaxPoolArgs,
     ChannelsLast, kNone},
    {"torch.nn.modules.pooling.AvgPool1d", "torch2mlx.templates.AvgPool1d",
     "kernel_size,stride,padding,ceil_mode,count_include_pad", ChannelsLast, kNone},
    {"torch.nn.modules.pooling.AvgPool2d", "torch2mlx.templates.AvgPool2d", kAvgPoolArgs,
     ChannelsLast, kNone},
    {"torch.nn.modules.pooling.AvgPool3d", "torch2mlx.templates.AvgPool3d", kAvgPoolArgs,
     ChannelsLast, kNone},
    {"torch.nn.modules.pooling.AdaptiveAvgPool1d", "torch2mlx.templates.AdaptiveAvgPool1d",
     "output_size", ChannelsLast, kNone},
    {"torch.nn.modules.pooling.AdaptiveAvgPool2d", "torch2mlx.templates.AdaptiveAvgPool2d",
     "output_size", ChannelsLast, kNone},
    {"torch.nn.modules.pooling.AdaptiveAvgPool3d", "torch2mlx.templates.AdaptiveAvgPool3d",
     "output_size", ChannelsLast, kNone},
    {"torch.nn.modules.pooling.AdaptiveMaxPool1d", "torch2mlx.templates.AdaptiveMaxPool1d",
     "output_size,return_indices", ChannelsLast, kNone},
    {"torch.nn.modules.pooling.AdaptiveMaxPool2d", "torch2mlx.templates.AdaptiveMaxPool2d",
     "output_size,return_indices", ChannelsLast, kNone},
    {"torch.nn.modules.pooling.AdaptiveMaxPool3d", "torch2mlx.templates.AdaptiveMaxPool3d",
     "output_size,return_indices", ChannelsLast, kNone},
    // shape and resampling
    {"torch.nn.modules.upsampling.Upsample", "torch2mlx.templates.Upsample",
     "size,scale_factor,mode,align_corners,recompute_scale_factor", ChannelsLast, kNone},
    {"torch.nn.modules.upsampling.UpsamplingNearest2d", "torch2mlx.templates.Upsample",
     "size,scale_factor,mode=:'nearest'", ChannelsLast, kNone},
    {"torch.nn.modules.upsampling.UpsamplingBilinear2d", "torch2mlx.templates.Upsample",
     "size,scale_factor,mode=:'bilinear',align_corners=:True", ChannelsLast, kNone},
    {"torch.nn.modules.pixelshuffle.PixelShuffle", "torch2mlx.templates.PixelShuffle",
     "upscale_factor", ChannelsLast, kNone},
    {"torch.nn.modules.pixelshuffle.PixelUnshuffle", "torch2mlx.templates.PixelUnshuffle",
     "downscale_factor", ChannelsLast, kNone},
    {"torch.nn.modules.flatten.Flatten", "torch2mlx.templates.Flatten", "start_dim,end_dim",
     TorchOrder, kNone},
    {"torch.nn.modules.flatten.Unflatten", "torch2mlx.templates.Unflatten", "dim,unflattened_size",
     TorchOrder, kNone},
    // regularisation: the identity at inference
    {"torch.nn.modules.dropout.Dropout", "mlx.nn.Identity", "", Any, kNone},
    {"torch.nn.modules.dropout.Dropout1d", "mlx.nn.Identity", "", Any, kNone},
    {"torch.nn.modules.dropout.Dropout2d", "mlx.nn.Identity", "", Any, kNone},
    {"torch.nn.modules.dropout.Dropout3d", "mlx.nn.Identity", "", Any, kNone},
    {"torch.nn.modules.dropout.AlphaDropout", "mlx.nn.Identity", "", Any, kNone},
    // containers: their children carry the tensors
    {"torch.nn.modules.container.Sequential", "torch2mlx.layout.Sequential", ":children",
     TorchOrder, kNone},
});

bool matches_pattern(std::string_view pattern, std::string_view name) {
  // Patterns hold {k} (digits) then optionally {r} ("" or "_reverse"), at the end.
  const auto brace = pattern.find("{k}");
  if (brace == std::string_view::npos) return pattern == name;
  if (!name.starts_with(pattern.substr(0, brace))) return false;
  std::string_view rest = name.substr(brace);
  std::size_t digits = 0;
  while (digits < rest.size() && rest[digits] >= '0' && rest[digits] <= '9') ++digits;
  if (digits == 0) return false;
  rest = rest.substr(digits);
  return rest.empty() || rest == "_reverse";
}

// Axis permutation that turns `rank`-dim input into the transform's output order.
std::vector<std::size_t> permutation(Transform transform, std::size_t rank, bool reverse) {
  std::vector<std::size_t> axes(rank);
  std::iota(axes.begin(), axes.end(), 0);
  switch (transform) {
    case ConvWeight:
      // forward [O, I, *K] -> [O, *K, I]; reverse [O, *K, I] -> [O, I, *K].
    case ConvTransposeWeight:
      // The same move on the grouped view: forward [g, I/g, O/g, *K] -> [g, O/g, *K, I/g];
      // reverse [g, O/g, *K, I/g] -> [g, I/g, O/g, *K].
      if (reverse) {
        std::rotate(axes.begin() + 1, axes.end() - 1, axes.end());
      } else {
        std::rotate(axes.begin() + 1, axes.begin() + 2, axes.end());
      }
      break;
    case TransposeLast2:
      if (rank >= 2) std::swap(axes[rank - 1], axes[rank - 2]);
      break;
    case Keep:
    case Drop:
      break;
  }
  return axes;
}

}  // namespace

std::span<const LayerEntry> layer_entries() { return kLayers; }

const LayerEntry* find_layer(std::string_view torch_type) {
  for (const auto& entry : kLayers) {
    if (entry.torch_type == torch_type) return &entry;
  }
  return nullptr;
}

std::optional<Transform> find_tensor_rule(const LayerEntry& entry, std::string_view tensor_name) {
  for (const auto& rule : entry.tensors) {
    if (entry.patterned ? matches_pattern(rule.name, tensor_name) : rule.name == tensor_name) {
      return rule.transform;
    }
  }
  return std::nullopt;
}

std::string_view transform_name(Transform transform) {
  switch (transform) {
    case Keep:
      return "keep";
    case ConvWeight:
      return "conv_weight";
    case ConvTransposeWeight:
      return "conv_transpose_weight";
    case TransposeLast2:
      return "transpose_last2";
    case Drop:
      return "drop";
  }
  return "?";
}

Tensor transform_view(Transform transform, const Tensor& tensor, std::int64_t groups,
                      bool reverse) {
  const std::size_t rank = tensor.shape.size();
  const bool conv = transform == ConvWeight || transform == ConvTransposeWeight;
  if (conv && rank < 3) {
    fail("registry", fmt::format("{} expects a conv weight of 3 or more dims, got {}",
                                 transform_name(transform), rank));
  }
  Tensor view = tensor;
  if (transform == ConvTransposeWeight) {
    // Split the leading axis into [groups, rest] so that each group permutes on its own.
    if (groups < 1 || tensor.shape[0] % groups != 0) {
      fail("registry", fmt::format("conv_transpose_weight: {} leading channels do not split into "
                                   "{} groups",
                                   tensor.shape[0], groups));
    }
    view.shape.insert(view.shape.begin(), groups);
    view.shape[1] = tensor.shape[0] / groups;
    view.strides.insert(view.strides.begin(), tensor.strides[0] * view.shape[1]);
  }
  const auto axes = permutation(transform, view.shape.size(), reverse);
  Tensor permuted = view;
  for (std::size_t i = 0; i < axes.size(); ++i) {
    permuted.shape[i] = view.shape[axes[i]];
    permuted.strides[i] = view.strides[axes[i]];
  }
  return permuted;
}

std::vector<std::int64_t> transformed_shape(Transform transform,
                                            std::span<const std::int64_t> shape,
                                            std::int64_t groups, bool reverse) {
  Tensor probe;
  probe.shape.assign(shape.begin(), shape.end());
  probe.strides = contiguous_strides(shape);
  Tensor view = transform_view(transform, probe, groups, reverse);
  if (transform == ConvTransposeWeight) {
    // Merge the group axis back: [g, O/g, *K, I/g] -> [O, *K, I/g] (reverse: [g, I/g, ...] -> [I,
    // ...])
    view.shape[1] *= view.shape[0];
    view.shape.erase(view.shape.begin());
  }
  return view.shape;
}

void apply_transform(Transform transform, const Tensor& tensor, std::byte* out, std::int64_t groups,
                     bool reverse) {
  copy_contiguous(transform_view(transform, tensor, groups, reverse), out);
}

}  // namespace torch2mlx
