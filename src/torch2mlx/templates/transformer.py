"""torch.nn.Transformer and its parts, with torch's child names:

    TransformerEncoderLayer: self_attn, linear1, linear2, norm1, norm2
    TransformerDecoderLayer: self_attn, multihead_attn, linear1, linear2, norm1, norm2, norm3
    TransformerEncoder / TransformerDecoder: layers.0 ... layers.{N-1}, optional norm
    Transformer: encoder, decoder (each with a final norm)

so `encoder.layers.0.self_attn.in_proj_weight` and friends load as they are. Masks follow
MultiheadAttention (torch's conventions). Dropout is ignored (inference).

torch's is_causal / tgt_is_causal arguments are hints that the given mask is causal; the
mask is what counts here too. When torch's TransformerEncoder takes its nested-tensor fast
path (eval, src_key_padding_mask given, enable_nested_tensor=True), it returns 0 at padded
positions; these templates return the computed values there (the unpadded positions agree).

Each class has `from_torch(module)`: the template for a live torch module, built from its
configuration (weights not loaded; activations relu and gelu only).
"""

from __future__ import annotations

import copy

import mlx.core as mx
import mlx.nn as nn

from .attention import MultiheadAttention, causal_mask
from .norm import LayerNorm


# Plain functions (not nn.relu itself, a compiled function): copy.deepcopy must copy layers.
def _relu(x):
    return nn.relu(x)


def _gelu(x):
    return nn.gelu(x)  # the exact (erf) GELU, as torch's "gelu"


_ACTIVATIONS = {"relu": _relu, "gelu": _gelu}


def _torch_activation_name(activation) -> str:
    """ "relu" or "gelu" for a torch layer's activation (F.relu, F.gelu, nn.ReLU, nn.GELU)."""
    import torch

    functional = torch.nn.functional
    if activation is functional.relu or isinstance(activation, torch.nn.ReLU):
        return "relu"
    exact_gelu = isinstance(activation, torch.nn.GELU) and activation.approximate == "none"
    if activation is functional.gelu or exact_gelu:
        return "gelu"
    raise NotImplementedError(f"transformer activation {activation!r}: only relu and gelu")


def _torch_layer_arguments(layer) -> dict:
    """Constructor arguments of a live torch Transformer{Encoder,Decoder}Layer."""
    return {
        "d_model": layer.linear1.in_features,
        "nhead": layer.self_attn.num_heads,
        "dim_feedforward": layer.linear1.out_features,
        "activation": _torch_activation_name(layer.activation),
        "layer_norm_eps": layer.norm1.eps,
        "batch_first": layer.self_attn.batch_first,
        "norm_first": layer.norm_first,
        "bias": layer.linear1.bias is not None,
    }


def _norm_from_torch(norm) -> LayerNorm | None:
    import torch

    if norm is None:
        return None
    if not isinstance(norm, torch.nn.LayerNorm):
        raise NotImplementedError(f"final norm {type(norm).__name__}: only LayerNorm")
    return LayerNorm(
        norm.normalized_shape, norm.eps, norm.elementwise_affine, norm.bias is not None
    )


def _check_type(module, name: str) -> None:
    import torch

    if not isinstance(module, getattr(torch.nn, name)):
        raise NotImplementedError(f"expected torch.nn.{name}, got {type(module).__name__}")


def _activation(activation):
    if callable(activation):
        return activation  # must take and return mx.array
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be 'relu' or 'gelu', not {activation!r}")
    return _ACTIVATIONS[activation]


class TransformerEncoderLayer(nn.Module):
    """torch.nn.TransformerEncoderLayer: self-attention then feed-forward, each with a
    residual connection and a LayerNorm after it (or before it with norm_first=True)."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation="relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
    ):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, bias=bias, batch_first=batch_first)
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm_first = norm_first
        self.activation = _activation(activation)

    @classmethod
    def from_torch(cls, layer) -> TransformerEncoderLayer:
        """The template (weights not loaded) for a live torch.nn.TransformerEncoderLayer."""
        _check_type(layer, "TransformerEncoderLayer")
        return cls(**_torch_layer_arguments(layer))

    def __call__(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), src_mask, src_key_padding_mask, is_causal)
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x, src_mask, src_key_padding_mask, is_causal))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        return self.self_attn(
            x,
            x,
            x,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=False,
            is_causal=is_causal,
        )[0]

    def _ff_block(self, x):
        return self.linear2(self.activation(self.linear1(x)))


class TransformerDecoderLayer(nn.Module):
    """torch.nn.TransformerDecoderLayer: self-attention, attention over the encoder output
    (`memory`), feed-forward; residuals and LayerNorms as in the encoder layer."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation="relu",
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
    ):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, bias=bias, batch_first=batch_first)
        self.multihead_attn = MultiheadAttention(d_model, nhead, bias=bias, batch_first=batch_first)
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias)
        self.norm1 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm3 = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm_first = norm_first
        self.activation = _activation(activation)

    @classmethod
    def from_torch(cls, layer) -> TransformerDecoderLayer:
        """The template (weights not loaded) for a live torch.nn.TransformerDecoderLayer."""
        _check_type(layer, "TransformerDecoderLayer")
        return cls(**_torch_layer_arguments(layer))

    def __call__(
        self,
        tgt,
        memory,
        tgt_mask=None,
        memory_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        tgt_is_causal=False,
        memory_is_causal=False,
    ):
        x = tgt
        sa = (tgt_mask, tgt_key_padding_mask, tgt_is_causal)
        mha = (memory, memory_mask, memory_key_padding_mask, memory_is_causal)
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x), *sa)
            x = x + self._mha_block(self.norm2(x), *mha)
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x, *sa))
            x = self.norm2(x + self._mha_block(x, *mha))
            x = self.norm3(x + self._ff_block(x))
        return x

    def _sa_block(self, x, attn_mask, key_padding_mask, is_causal):
        return self.self_attn(
            x,
            x,
            x,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=False,
            is_causal=is_causal,
        )[0]

    def _mha_block(self, x, memory, attn_mask, key_padding_mask, is_causal):
        return self.multihead_attn(
            x,
            memory,
            memory,
            attn_mask=attn_mask,
            key_padding_mask=key_padding_mask,
            need_weights=False,
            is_causal=is_causal,
        )[0]

    def _ff_block(self, x):
        return self.linear2(self.activation(self.linear1(x)))


class TransformerEncoder(nn.Module):
    """torch.nn.TransformerEncoder: `num_layers` copies of `encoder_layer` (under
    layers.N, as in torch) and an optional final `norm`."""

    def __init__(
        self,
        encoder_layer: TransformerEncoderLayer,
        num_layers: int,
        norm: nn.Module | None = None,
        enable_nested_tensor: bool = True,
        mask_check: bool = True,
    ):
        super().__init__()
        self.layers = [copy.deepcopy(encoder_layer) for _ in range(num_layers)]
        self.num_layers = num_layers
        if norm is not None:
            self.norm = norm

    @classmethod
    def from_torch(cls, encoder) -> TransformerEncoder:
        """The template (weights not loaded) for a live torch.nn.TransformerEncoder."""
        _check_type(encoder, "TransformerEncoder")
        layer = TransformerEncoderLayer.from_torch(encoder.layers[0])
        return cls(layer, len(encoder.layers), _norm_from_torch(encoder.norm))

    def __call__(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        x = src
        for layer in self.layers:
            x = layer(x, mask, src_key_padding_mask, bool(is_causal))
        return self.norm(x) if "norm" in self else x


class TransformerDecoder(nn.Module):
    """torch.nn.TransformerDecoder: `num_layers` copies of `decoder_layer` (under
    layers.N) and an optional final `norm`."""

    def __init__(
        self,
        decoder_layer: TransformerDecoderLayer,
        num_layers: int,
        norm: nn.Module | None = None,
    ):
        super().__init__()
        self.layers = [copy.deepcopy(decoder_layer) for _ in range(num_layers)]
        self.num_layers = num_layers
        if norm is not None:
            self.norm = norm

    @classmethod
    def from_torch(cls, decoder) -> TransformerDecoder:
        """The template (weights not loaded) for a live torch.nn.TransformerDecoder."""
        _check_type(decoder, "TransformerDecoder")
        layer = TransformerDecoderLayer.from_torch(decoder.layers[0])
        return cls(layer, len(decoder.layers), _norm_from_torch(decoder.norm))

    def __call__(
        self,
        tgt,
        memory,
        tgt_mask=None,
        memory_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        tgt_is_causal=None,
        memory_is_causal=False,
    ):
        x = tgt
        for layer in self.layers:
            x = layer(
                x,
                memory,
                tgt_mask=tgt_mask,
                memory_mask=memory_mask,
                tgt_key_padding_mask=tgt_key_padding_mask,
                memory_key_padding_mask=memory_key_padding_mask,
                tgt_is_causal=bool(tgt_is_causal),
                memory_is_causal=memory_is_causal,
            )
        return self.norm(x) if "norm" in self else x


class Transformer(nn.Module):
    """torch.nn.Transformer: an encoder and a decoder, each ending in a LayerNorm.

    custom_encoder / custom_decoder may be MLX modules with the same call signatures.
    """

    def __init__(
        self,
        d_model: int = 512,
        nhead: int = 8,
        num_encoder_layers: int = 6,
        num_decoder_layers: int = 6,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation="relu",
        custom_encoder: nn.Module | None = None,
        custom_decoder: nn.Module | None = None,
        layer_norm_eps: float = 1e-5,
        batch_first: bool = False,
        norm_first: bool = False,
        bias: bool = True,
    ):
        super().__init__()
        layer_args = (d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps)
        layer_kwargs = {"batch_first": batch_first, "norm_first": norm_first, "bias": bias}
        if custom_encoder is not None:
            self.encoder = custom_encoder
        else:
            layer = TransformerEncoderLayer(*layer_args, **layer_kwargs)
            norm = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
            self.encoder = TransformerEncoder(layer, num_encoder_layers, norm)
        if custom_decoder is not None:
            self.decoder = custom_decoder
        else:
            layer = TransformerDecoderLayer(*layer_args, **layer_kwargs)
            norm = LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
            self.decoder = TransformerDecoder(layer, num_decoder_layers, norm)
        self.d_model = d_model
        self.nhead = nhead
        self.batch_first = batch_first

    @classmethod
    def from_torch(cls, transformer) -> Transformer:
        """The template (weights not loaded) for a live torch.nn.Transformer."""
        _check_type(transformer, "Transformer")
        return cls(
            transformer.d_model,
            transformer.nhead,
            custom_encoder=TransformerEncoder.from_torch(transformer.encoder),
            custom_decoder=TransformerDecoder.from_torch(transformer.decoder),
            batch_first=transformer.batch_first,
        )

    def __call__(
        self,
        src,
        tgt,
        src_mask=None,
        tgt_mask=None,
        memory_mask=None,
        src_key_padding_mask=None,
        tgt_key_padding_mask=None,
        memory_key_padding_mask=None,
        src_is_causal=None,
        tgt_is_causal=None,
        memory_is_causal=False,
    ):
        memory = self.encoder(
            src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal
        )
        return self.decoder(
            tgt,
            memory,
            tgt_mask=tgt_mask,
            memory_mask=memory_mask,
            tgt_key_padding_mask=tgt_key_padding_mask,
            memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=tgt_is_causal,
            memory_is_causal=memory_is_causal,
        )

    @staticmethod
    def generate_square_subsequent_mask(sz: int, dtype=mx.float32) -> mx.array:
        """A float (sz, sz) mask: -inf above the diagonal, 0 elsewhere (as in torch)."""
        return causal_mask(sz, dtype)
