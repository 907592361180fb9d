"""Capturing a live ``torch.nn.Module`` with ``torch.export``, with readable diagnostics."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch2mlx.checkpoint import Torch2MLXError


def split_inputs(example_inputs: Any) -> tuple[tuple, dict]:
    """Positional and keyword example inputs from a tensor, a tuple/list, or a dict."""
    if isinstance(example_inputs, Mapping):
        return (), dict(example_inputs)
    if isinstance(example_inputs, (tuple, list)):
        return tuple(example_inputs), {}
    return (example_inputs,), {}


def _mask_as_given(mask: Any, is_causal: bool | None = None, size: int | None = None) -> bool:
    """torch's _detect_is_causal_mask without the look at the mask's values."""
    return is_causal is True


@contextlib.contextmanager
def without_cache_outputs(model: Any, kwargs: dict) -> Iterator[None]:
    """Hugging Face decoders return a DynamicCache when ``config.use_cache`` is on, which
    torch.export cannot put in an output. Unless the caller passed ``use_cache``, the model
    is captured with the cache off: the converted model computes logits for the whole
    sequence (incremental decoding with a cache is a separate form of the model)."""
    config = getattr(model, "config", None)
    if "use_cache" in kwargs or not getattr(config, "use_cache", False):
        yield
        return
    config.use_cache = False
    try:
        yield
    finally:
        config.use_cache = True


def _gru_or_rnn_shapes(
    input: Any,
    hx: Any,
    params: Any,
    has_biases: bool,
    num_layers: int,
    dropout: float,
    train: bool,
    bidirectional: bool,
    batch_first: bool,
) -> Any:
    """aten.gru/rnn_tanh/rnn_relu.input's outputs, with their shapes but no values: every
    axis of the output is the input's but the last, and the final state is shaped as the
    initial one."""
    features = (2 if bidirectional else 1) * hx.shape[-1]
    return input.new_empty((*input.shape[:-1], features)), hx.new_empty(hx.shape)


def _lstm_shapes(
    input: Any,
    hx: Any,
    params: Any,
    has_biases: bool,
    num_layers: int,
    dropout: float,
    train: bool,
    bidirectional: bool,
    batch_first: bool,
) -> Any:
    """aten.lstm.input's outputs with their shapes but no values (h is projected, c is not)."""
    h, c = hx
    features = (2 if bidirectional else 1) * h.shape[-1]
    return (
        input.new_empty((*input.shape[:-1], features)),
        h.new_empty(h.shape),
        c.new_empty(c.shape),
    )


# torch.export keeps the recurrent ops whole but computes their output shapes by running
# torch's Python decomposition on fake tensors, which loops over the time steps
# (`for i in precomputed_input`) and so fixes the sequence length: a dynamic sequence fails
# with "Constraints violated", or (Dim.AUTO, run_decompositions) is fixed without a word.
# While capturing, these ops' shapes come from the rules below. The decomposition is found
# in two places: the op's CompositeImplicitAutograd kernel (export's trace) and
# torch._decomp.decomposition_table (FakeTensorMode on symbolic sizes, as run_decompositions
# retraces); both are replaced, and only fake tensors see the rule.
_RECURRENT_SHAPES = {
    ("gru", "input"): _gru_or_rnn_shapes,
    ("rnn_tanh", "input"): _gru_or_rnn_shapes,
    ("rnn_relu", "input"): _gru_or_rnn_shapes,
    ("lstm", "input"): _lstm_shapes,
}


def _shapes_on_fake_tensors(original: Any, shapes: Any) -> Any:
    from torch._subclasses.fake_tensor import is_fake

    def kernel(*args: Any, **kwargs: Any) -> Any:
        # Real tensors (torch folding constants while it traces) get the real computation.
        first = args[0] if args else next(iter(kwargs.values()))
        return shapes(*args, **kwargs) if is_fake(first) else original(*args, **kwargs)

    return kernel


@contextlib.contextmanager
def _recurrent_ops_keep_dynamic_lengths() -> Iterator[None]:
    import torch
    import torch._decomp.decompositions  # registers the kernels replaced here
    from torch._decomp import decomposition_table

    key = torch._C.DispatchKey.CompositeImplicitAutograd
    saved_kernels, saved_table = {}, {}
    for (name, overload), shapes in _RECURRENT_SHAPES.items():
        op = getattr(getattr(torch.ops.aten, name), overload)
        original = op.py_kernels.get(key)
        if original is not None:
            saved_kernels[op] = original
            op.py_kernels[key] = _shapes_on_fake_tensors(original, shapes)
            op._dispatch_cache.clear()
        if op in decomposition_table:
            saved_table[op] = decomposition_table[op]
            decomposition_table[op] = _shapes_on_fake_tensors(decomposition_table[op], shapes)
    try:
        yield
    finally:
        for op, original in saved_kernels.items():
            op.py_kernels[key] = original
            op._dispatch_cache.clear()
        decomposition_table.update(saved_table)


def _nests_in_eager(encoder: Any, src: Any, mask: Any, padding: Any) -> bool:
    """Whether nn.TransformerEncoder, run eagerly without grad, may take its nested-tensor
    path: its conditions that do not depend on the values of the padding mask."""
    import torch

    return (
        padding is not None
        and mask is None
        and src.dim() == 3
        and getattr(encoder, "use_nested_tensor", False)
        and not encoder.layers[0].training
        and torch.backends.mha.get_fastpath_enabled()
        and not torch.is_autocast_enabled()
    )


def _encoder_forward_as_in_inference(original: Any) -> Any:
    """nn.TransformerEncoder.forward, traced as it computes in eager inference.

    Eagerly, without grad and with a padding mask whose rows are left aligned, the encoder
    packs the batch into a nested tensor and unpacks it with zeros at the padded positions
    (before the final norm). torch.export always takes the padded path, which computes
    values there, so the exported model differed from the eager one at every padded
    position. Traced here: the padded path, then zeros where eager puts them, decided from
    the mask's values at run time (left aligned or not) as eager decides.
    """
    import torch
    from torch.nn import functional

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        if not _nests_in_eager(self, src, mask, src_key_padding_mask):
            return original(self, src, mask, src_key_padding_mask, is_causal)
        norm = self.norm
        self.norm = None
        try:
            output = original(self, src, mask, src_key_padding_mask, is_causal)
        finally:
            self.norm = norm
        padding = functional._canonical_mask(
            mask=src_key_padding_mask,
            mask_name="src_key_padding_mask",
            other_type=None,
            other_name="mask",
            target_type=src.dtype,
        )
        keep = padding.logical_not()
        zero = keep.logical_not()
        if getattr(self, "mask_check", True):
            # Eager nests only masks whose rows keep a prefix (torch's left-alignment check),
            # written without slices, which would guard the length against 0 and 1.
            positions = torch.arange(keep.shape[-1], device=keep.device)
            prefix = positions < keep.sum(dim=-1, keepdim=True)
            zero = zero & (keep == prefix).all()
        output = torch.where(zero.unsqueeze(-1), torch.zeros_like(output), output)
        return output if norm is None else norm(output)

    return forward


@contextlib.contextmanager
def export_workarounds() -> Iterator[None]:
    """Works around torch.export's own blockers in torch.nn while a model is captured.

    - nn.Transformer and nn.TransformerEncoder/Decoder detect whether a mask is causal by
      comparing its values (``_detect_is_causal_mask``): a data-dependent guard export
      cannot trace. During capture the mask is used as given (``is_causal=False``), which
      torch documents as always correct (the hint only selects a faster kernel).
    - nn.TransformerEncoder with a padding mask computes zeros at padded positions in eager
      inference but not in an export (``_encoder_forward_as_in_inference``).
    - nn.GRU, nn.RNN and nn.LSTM would fix the sequence length (``_RECURRENT_SHAPES``).
    """
    from torch.nn.modules import transformer

    original = transformer._detect_is_causal_mask
    encoder_forward = transformer.TransformerEncoder.forward
    transformer._detect_is_causal_mask = _mask_as_given
    transformer.TransformerEncoder.forward = _encoder_forward_as_in_inference(encoder_forward)
    try:
        with _recurrent_ops_keep_dynamic_lengths():
            yield
    finally:
        transformer._detect_is_causal_mask = original
        transformer.TransformerEncoder.forward = encoder_forward


@contextlib.contextmanager
def batched_experts(model: Any) -> Iterator[None]:
    """Mixture-of-experts layers of ``transformers`` (Mixtral, Qwen-MoE, ...) run their
    experts through a custom op by default (``grouped_mm``, a kernel outside ATen that no
    graph translation can read) or a loop over experts with data-dependent sizes (``eager``).
    During capture they run as ``batched_mm``: each token gathers its experts' weights and
    multiplies them in one batched matmul, ATen ops only, with the same result."""
    configs = {
        id(config): config
        for module in model.modules()
        if (config := getattr(module, "config", None)) is not None
        and getattr(config, "_experts_implementation", None) not in (None, "batched_mm")
    }
    previous = {key: config._experts_implementation for key, config in configs.items()}
    for config in configs.values():
        config._experts_implementation = "batched_mm"
    try:
        yield
    finally:
        for key, config in configs.items():
            config._experts_implementation = previous[key]


# Which axes of an example input are batch or sequence axes, by (integer or not, rank):
# token ids and masks are (batch, sequence); float sequences are (batch, sequence, features)
# or (sequence, batch, features) for recurrent nets, and (batch, channels, time) for 1-D
# convolutions; images are batch only (height and width are sizes of the model, often fixed
# by a linear layer after them). Axis 0 is the batch everywhere else.
_AUTO_AXES: dict[tuple[bool, int], tuple[int, ...]] = {
    (True, 2): (0, 1),
    (False, 3): (0, 1, 2),
}


def default_dynamic_shapes(example_inputs: Any) -> Any:
    """``Dim.AUTO`` on the batch and sequence axes of every tensor input, for ``torch.export``.

    AUTO lets torch decide: an axis stays dynamic unless the model fixes it (a linear layer
    over it, a size-1 example, a check in the code), in which case it is specialized without
    an error. So a model that can run at any batch or sequence length converts into a
    ``model.py`` that takes its sizes from ``x.shape``, and one that cannot is captured as
    before.
    """
    import torch
    from torch.utils import _pytree

    def spec(value: Any) -> Any:
        if not isinstance(value, torch.Tensor) or value.ndim == 0:
            return None
        integer = not (value.dtype.is_floating_point or value.dtype.is_complex)
        axes = _AUTO_AXES.get((integer, value.ndim), (0,))
        return dict.fromkeys(axes, torch.export.Dim.AUTO)

    args, kwargs = split_inputs(example_inputs)
    if kwargs:
        return {name: _pytree.tree_map(spec, value) for name, value in kwargs.items()}
    return tuple(_pytree.tree_map(spec, value) for value in args)


@dataclass(frozen=True)
class Preferred:
    """Dynamic shapes that torch2mlx chose rather than the caller (a Hugging Face folder's
    batch and sequence axes): when torch.export refuses them, capture falls back to
    ``Dim.AUTO`` on the same axes, then to the example sizes, and says so in a note. A
    caller's own ``dynamic_shapes`` are kept to, or the capture fails naming them."""

    shapes: Any


@dataclass
class Captured:
    """A capture, with the dynamic shapes that worked (``False``: every size fixed), which
    ModelArgs probes reuse so that they are captured as the model was, and notes on what
    capture gave up."""

    program: Any
    dynamic_shapes: Any
    notes: list[str] = field(default_factory=list)


def _auto_like(shapes: Any) -> Any:
    """``shapes`` with every named dimension replaced by ``Dim.AUTO``: the same axes, each
    left to torch to keep dynamic or to fix as the model requires."""
    import torch

    if isinstance(shapes, dict):
        return {key: _auto_like(value) for key, value in shapes.items()}
    if isinstance(shapes, (tuple, list)):
        return type(shapes)(_auto_like(value) for value in shapes)
    if shapes is None or isinstance(shapes, int):
        return shapes
    return torch.export.Dim.AUTO


def _reason(error: Exception) -> str:
    message = str(error).strip()
    return f"{type(error).__name__}: {message.splitlines()[0] if message else repr(error)}"


def _attempts(example_inputs: Any, dynamic_shapes: Any) -> list[tuple[Any, str]]:
    """(dynamic shapes to try, the note to write when it is the one that works), in order.
    A note's "{reason}" is the previous attempt's failure."""
    fixed = (
        "torch.export could not capture it with dynamic sizes ({reason}): every size is "
        "fixed to the example inputs'; pass dynamic_shapes to choose other axes"
    )
    if dynamic_shapes is False:
        return [(False, "")]
    if dynamic_shapes is None:
        return [(default_dynamic_shapes(example_inputs), ""), (False, fixed)]
    if isinstance(dynamic_shapes, Preferred):
        auto = (
            "torch.export refused the dynamic axes chosen for the inputs ({reason}): captured "
            "with Dim.AUTO on the same axes, which keeps dynamic those the model allows "
            "(config.json's dynamic_dims says which)"
        )
        return [
            (dynamic_shapes.shapes, ""),
            (_auto_like(dynamic_shapes.shapes), auto),
            (False, fixed),
        ]
    return [(dynamic_shapes, "")]


def capture_model(model: Any, example_inputs: Any, dynamic_shapes: Any = None) -> Captured:
    """``torch.export.export`` of ``model`` in eval mode; errors name what to change.

    ``dynamic_shapes=None`` makes the batch and sequence axes dynamic where the model
    allows (``default_dynamic_shapes``), and falls back to the example sizes: torch can fail
    on a symbolic size where a number would do (a size compared in Python code it cannot
    guard), and such a model still converts, for those sizes. ``Preferred(shapes)`` tries
    ``shapes``, then ``Dim.AUTO`` on their axes, then the example sizes. ``False`` fixes
    every size; other shapes are kept to. Each fallback taken is a note of the result.
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise Torch2MLXError(
            f"[capture] expected a torch.nn.Module, got {type(model).__name__}: pass the model "
            "object, or a .pt2 archive path to the CLI"
        )
    model.eval()
    args, kwargs = split_inputs(example_inputs)
    failure: Exception = AssertionError("no export attempted")
    for shapes, note in _attempts(example_inputs, dynamic_shapes):
        try:
            with torch.no_grad(), export_workarounds(), batched_experts(model):
                program = torch.export.export(
                    model, args, kwargs, dynamic_shapes=None if shapes is False else shapes
                )
        except Exception as error:  # torch raises many types here; the last one is reported
            failure = error
            continue
        notes = [note.format(reason=_reason(failure))] if note else []
        return Captured(program, shapes, notes)
    raise Torch2MLXError(
        f"[capture] torch.export could not capture {type(model).__name__}: "
        f"{_reason(failure)}. Fix the inputs or dynamic_shapes named "
        "above; data-dependent control flow, untraceable Python and custom kernels also "
        "stop torch.export (rewrite that code, or export the model yourself and pass the "
        ".pt2 archive)"
    ) from failure


def export_model(model: Any, example_inputs: Any, dynamic_shapes: Any = None) -> Any:
    """The ExportedProgram of ``capture_model``."""
    return capture_model(model, example_inputs, dynamic_shapes).program


# How many rounds of decomposition to try: a decomposition may itself use an op that needs
# decomposing (cdist -> _cdist_forward is one round; none seen needs more than two).
_MAX_DECOMPOSITION_ROUNDS = 4


def _untranslated_ops(program: Any, supported: set[str]) -> set[Any]:
    import torch

    return {
        node.target
        for node in program.graph.nodes
        if node.op == "call_function"
        and isinstance(node.target, torch._ops.OpOverload)
        and str(node.target) not in supported
    }


def _writes_through_a_view(program: Any) -> bool:
    """Whether an in-place op writes into a view of another tensor (`t[:, 2] = x`)."""
    import torch

    def is_view(node: Any) -> bool:
        schema = getattr(node.target, "_schema", None)
        return (
            isinstance(node.target, torch._ops.OpOverload)
            and not schema.is_mutable
            and any(r.alias_info is not None for r in schema.returns)
        )

    for node in program.graph.nodes:
        if node.op != "call_function" or not isinstance(node.target, torch._ops.OpOverload):
            continue
        for argument, value in zip(node.target._schema.arguments, node.args, strict=False):
            written = argument.alias_info is not None and argument.alias_info.is_write
            node_input = isinstance(value, torch.fx.Node) and value.op == "call_function"
            if written and node_input and is_view(value):
                return True
    return False


def decompose_untranslated(program: Any) -> tuple[Any, list[str]]:
    """Decomposes, with torch's own tables, the ops torch2mlx has no translation for.

    Only those ops are decomposed (``run_decompositions`` with a table restricted to them),
    so attention, norms and convolutions that translate directly stay whole. Returns the
    program and the names of the ops that were decomposed, in order. Ops with no
    decomposition are left for the code generator to refuse by name.
    """
    import torch

    from torch2mlx import _core

    supported = set(_core.supported_ops())
    defaults = torch.export.default_decompositions()
    decomposed: list[str] = []
    if _writes_through_a_view(program):
        # `table[:, :, 2] = x` on a temporary writes through a view (select, then copy_):
        # translated op by op, the write would be lost. Functionalization (an empty table
        # decomposes nothing else) turns it into select_scatter, which translates.
        with _recurrent_ops_keep_dynamic_lengths():
            program = program.run_decompositions({})
    for _ in range(_MAX_DECOMPOSITION_ROUNDS):
        missing = _untranslated_ops(program, supported)
        table = {op: defaults[op] for op in missing if op in defaults}
        # Composite ops outside the default table (reshape_as, swapaxes, ...) decompose
        # through their own implementation whenever run_decompositions runs at all.
        implicit = {
            op
            for op in missing
            if op not in table
            and op.has_kernel_for_dispatch_key(torch._C.DispatchKey.CompositeImplicitAutograd)
        }
        if not table and not implicit:
            break
        # Decomposing traces the whole program again: the recurrent ops' shape rules must
        # hold then too, or a dynamic sequence would be fixed silently.
        with _recurrent_ops_keep_dynamic_lengths():
            program = program.run_decompositions(table)
        left = _untranslated_ops(program, supported)
        done = sorted(str(op) for op in missing - left)
        if not done:
            break
        decomposed += done
    return program, decomposed


def save_program(program: Any, path: Path) -> Path:
    """Writes an ExportedProgram as a .pt2 archive."""
    import torch

    torch.export.save(program, str(path))
    return path
