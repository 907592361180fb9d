"""Lets PyPI's torchvision import beside the CPU build of torch (development venv only).

PyPI's torchvision wheels are built against a CUDA torch: beside the CPU build that
development and CI use, their compiled ops (_C.so) fail to load, and `import torchvision`
then fails registering fake kernels for `torchvision::nms` and `torchvision::qnms`
("operator torchvision::nms does not exist"). transformers imports torchvision whenever it
is installed, so without this every transformers model fails too. The model code is pure
Python and never calls those ops: where the library does not load, this defines the two
schemas without kernels just before torchvision is first imported. The models then run, and
a detection model that calls nms still fails loudly. Where _C loads, nothing is defined.

scripts/setup.sh copies this file into .venv's site-packages with a .pth line importing it,
so that it also holds in subprocesses (the CLI tests, the demo). Installing torch2mlx as a
user installs nothing of this.
"""

import importlib.abc
import sys

_SCHEMAS = []  # kept alive: a torch.library.Library drops its definitions when collected


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            sys.meta_path.remove(self)
            _define_missing_ops()
        return None  # the usual finders import it


def _define_missing_ops():
    import glob
    import importlib.util
    import os

    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    library = glob.glob(os.path.join(spec.submodule_search_locations[0], "_C*.so"))
    try:
        torch.ops.load_library(library[0])
    except (IndexError, OSError):
        schemas = torch.library.Library("torchvision", "DEF")
        for op in ("nms", "qnms"):
            schemas.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _SCHEMAS.append(schemas)


sys.meta_path.insert(0, _BeforeTorchvision())
