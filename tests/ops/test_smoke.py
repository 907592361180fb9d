import torch
from tests.ops.harness import check_op

aten = torch.ops.aten


def test_add_broadcast_alpha():
    check_op(aten.add.Tensor, torch.randn(3, 4), torch.randn(4), alpha=2)


def test_softmax_negative_dim_noncontiguous():
    check_op(aten._softmax.default, torch.randn(2, 3, 5), -1, False, transpose_inputs=True)
