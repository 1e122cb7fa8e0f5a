"""A Thinc layer that builds its PyTorch module at ``initialize``, once widths are known.

The input width of a head is only known when the embedding layer before it has seen data
(a transformer's hidden size, a tok2vec's width), so the layer stays empty until
``initialize`` infers ``nI`` from a sample and wraps the module with ``PyTorchWrapper_v2``.
A loaded pipeline rebuilds it from the dims saved with the pipe (``build_torch_layers``).
"""
import os
from typing import Any, Callable, Dict, List, Optional, Tuple, Union, cast

from thinc.api import ArgsKwargs, Model, PyTorchWrapper_v2, torch2xp, xp2torch
from thinc.types import Floats2d

from ..internals import set_sublayers, shim_module

# Name of the attr holding the function that builds the torch module from the layer's dims.
BUILD_ATTR = "build_torch_module"


def lazy_torch_layer(
    name: str,
    build_module: Callable[[Model], Any],
    padded_output: bool,
    dims: Dict[str, Optional[int]],
) -> Model:
    """A layer ``List[Floats2d] -> List[Floats2d]`` (or padded ``[B, T, ...]`` + lengths).

    ``build_module(model)`` returns the ``nn.Module``; its forward takes the batch's tokens
    back to back ``[N, nI]`` and the lengths ``[B]``.
    """
    return Model(
        name,
        _forward,
        init=_init,
        dims={"nI": None, **dims},
        attrs={BUILD_ATTR: build_module, "padded_output": padded_output},
    )


def is_lazy_torch_layer(model: Model) -> bool:
    return BUILD_ATTR in model.attrs


_FORK_HOOK_INSTALLED = False


def _single_threaded_torch_in_child() -> None:
    import torch

    torch.set_num_threads(1)


def install_fork_safety() -> None:
    """Make forked workers (``nlp.pipe(..., n_process=N)``) run torch on one thread.

    PyTorch's CPU build uses an OpenMP thread pool that does not survive ``fork``: a child
    that enters a parallel region the parent already used hangs for ever. One thread per
    worker process avoids the pool (and oversubscription) altogether.
    """
    global _FORK_HOOK_INSTALLED
    if not _FORK_HOOK_INSTALLED and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_single_threaded_torch_in_child)
        _FORK_HOOK_INSTALLED = True


def build_torch_layer(model: Model) -> None:
    """Create the wrapped module if it does not exist yet; all dims must be set."""
    if model.layers:
        return
    install_fork_safety()
    module = model.attrs[BUILD_ATTR](model)
    convert_outputs = _padded_outputs if model.attrs["padded_output"] else _flat_outputs
    wrapper = PyTorchWrapper_v2(module, convert_inputs=_flat_inputs, convert_outputs=convert_outputs)
    # Named like its owner, so parameter paths read "<component>/crf_emissions/linear.weight".
    wrapper.name = model.name
    set_sublayers(model, [wrapper])


def _init(model: Model, X: Optional[List[Floats2d]] = None, Y=None) -> None:
    if model.layers:
        return
    if X is not None and model.has_dim("nI") is None:
        widths = [x.shape[1] for x in X]
        if widths:
            model.set_dim("nI", widths[0])
    if model.has_dim("nI") is None:
        raise ValueError(
            f"Cannot initialize {model.name!r}: its input width is unknown (no sample given)."
        )
    build_torch_layer(model)


def _forward(model: Model, X: List[Floats2d], is_train: bool) -> Tuple[Any, Callable]:
    return model.layers[0](X, is_train)


def get_torch_module(model: Model) -> Any:
    """The ``nn.Module`` inside an initialized lazy torch layer."""
    if not model.layers:
        raise ValueError(f"Layer {model.name!r} is not initialized yet.")
    return shim_module(model.layers[0].shims[0])


# --------------------------------------------------------------------- converters
def _flat_inputs(model: Model, X: List[Floats2d], is_train: bool):
    import torch

    shim: Any = model.shims[0]  # a PyTorchShim, which has a device
    lengths = [x.shape[0] for x in X]
    flat = model.ops.flatten(X) if X else model.ops.alloc2f(0, 0)
    flat_t = xp2torch(flat, requires_grad=is_train, device=shim.device)
    lengths_t = torch.tensor(lengths, dtype=torch.long, device=shim.device)

    def get_dX(d_inputs: ArgsKwargs) -> List[Floats2d]:
        d_flat = d_inputs.args[0]
        if d_flat is None:
            return [model.ops.alloc2f(*x.shape) for x in X]
        return model.ops.unflatten(cast(Floats2d, torch2xp(d_flat)), model.ops.asarray1i(lengths))

    return ArgsKwargs(args=(flat_t, lengths_t), kwargs={}), get_dX


def _flat_outputs(model: Model, X_Ytorch, is_train: bool):
    X, Ytorch = X_Ytorch
    lengths = [x.shape[0] for x in X]
    Y = model.ops.unflatten(cast(Floats2d, torch2xp(Ytorch)), model.ops.asarray1i(lengths))

    def get_dYtorch(dY: List[Floats2d]) -> ArgsKwargs:
        d_flat = xp2torch(model.ops.flatten(dY), device=Ytorch.device)
        return ArgsKwargs(args=(Ytorch,), kwargs={"grad_tensors": (d_flat,)})

    return Y, get_dYtorch


def _padded_outputs(model: Model, X_Ytorch, is_train: bool):
    X, Ytorch = X_Ytorch
    lengths = [x.shape[0] for x in X]
    Y = (torch2xp(Ytorch), lengths)

    def get_dYtorch(dY) -> ArgsKwargs:
        d_padded = xp2torch(dY, device=Ytorch.device)
        return ArgsKwargs(args=(Ytorch,), kwargs={"grad_tensors": (d_padded,)})

    return Y, get_dYtorch


# ----------------------------------------------------------------- (de)serialising
# Saved dims: {layer name: {dim: value}}. Pipelines saved by earlier releases hold a list of
# dims in walk order instead; both load.
SavedDims = Union[Dict[str, Dict[str, Optional[int]]], List[Dict[str, Optional[int]]]]


def torch_layer_dims(model: Model) -> Dict[str, Dict[str, Optional[int]]]:
    """Dims of every lazy torch layer in ``model``, by layer name (saved with the pipe)."""
    dims: Dict[str, Dict[str, Optional[int]]] = {}
    for node in model.walk():
        if is_lazy_torch_layer(node):
            if node.name in dims:
                raise ValueError(f"two torch layers are named {node.name!r}: names must be unique")
            dims[node.name] = {dim: node.maybe_get_dim(dim) for dim in node.dim_names}
    return dims


def build_torch_layers(model: Model, saved_dims: SavedDims) -> None:
    """Rebuild the lazy torch layers from saved dims so that ``from_bytes`` finds them."""
    nodes = [node for node in model.walk() if is_lazy_torch_layer(node)]
    if isinstance(saved_dims, list):  # older pipelines: walk order
        if len(nodes) != len(saved_dims):
            raise ValueError(
                f"The saved model has {len(saved_dims)} torch layers but this architecture has "
                f"{len(nodes)}: the config does not match the weights."
            )
        pairs = list(zip(nodes, saved_dims))
    else:
        names = [node.name for node in nodes]
        if sorted(names) != sorted(saved_dims):
            raise ValueError(
                f"The saved model has the torch layers {sorted(saved_dims)} but this "
                f"architecture has {sorted(names)}: the config does not match the weights."
            )
        pairs = [(node, saved_dims[node.name]) for node in nodes]
    for node, dims in pairs:
        for dim, value in dims.items():
            if value is not None and node.maybe_get_dim(dim) is None:
                node.set_dim(dim, value)
        if all(node.maybe_get_dim(d) is not None for d in node.dim_names):
            build_torch_layer(node)
