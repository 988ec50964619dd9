"""Copy weights between a Keras model and its PyTorch twin, both ways, with every layout difference explained.

Layers are paired in order: the Keras layers that hold weights against the twin's modules that hold
parameters or statistics (see twins/torch_models.py). For each pair (Keras <-> PyTorch: what changes):

- Normalization mean, variance <-> Standardize mean, std: std = max(sqrt(variance), 1e-7), as Keras divides
- Dense kernel (in, out) <-> Linear weight (out, in): transposed; after a flatten, rows reordered
  from (rows, cols, channels) to (channels, rows, cols)
- Conv2D kernel (kh, kw, in, out) <-> Conv2d weight (out, in, kh, kw): axes permuted
- BatchNormalization gamma, beta, moving mean/variance <-> BatchNorm weight, bias, running mean/var:
  momentum m -> 1 - m; epsilon copied (Keras 1e-3, PyTorch 1e-5 by default)
- Embedding (vocabulary, dim) <-> Embedding weight: the same
- LSTM kernel (in, 4H), recurrent (H, 4H), bias (4H) <-> weight_ih (4H, in), weight_hh (4H, H), bias_ih,
  bias_hh: transposed; gate order i, f, c, o in both; Keras has one bias, PyTorch two (bias_hh = 0 going to
  PyTorch, summed coming back)
- GRU (reset_after=True) kernel (in, 3H), recurrent, bias (2, 3H) <-> weight_ih, weight_hh, bias_ih, bias_hh:
  gate order z, r, h in Keras vs r, z, n in PyTorch; the two biases map one to one
- SimpleRNN kernel, recurrent, bias <-> weight_ih, weight_hh, bias_ih, bias_hh: transposed; bias_hh = 0
- Bidirectional(forward, backward) <-> the `_reverse` parameters of a bidirectional RNN: one Keras layer per
  direction
- LSTMCell / GRUCell (inside the caption decoder) <-> nn.LSTMCell / nn.GRUCell: as LSTM / GRU

A shape that does not match raises `TransferError` naming both sides.
"""

import keras
import numpy as np
import torch
from torch import nn

from twins.torch_models import Standardize

RNN_TYPES = (nn.RNN, nn.LSTM, nn.GRU)
GATES = {nn.RNN: 1, nn.LSTM: 4, nn.GRU: 3}


class TransferError(ValueError):
    """The two models do not have the same structure."""


def keras_to_torch(keras_model, torch_model):
    """Copy every weight of `keras_model` into `torch_model` (in place); returns torch_model."""
    with torch.no_grad():
        for source, targets, to_torch, _ in pairs(keras_model, torch_model):
            values = to_torch(keras.ops.convert_to_numpy(source))
            for (name, target), value in zip(targets, values):
                _check(name, target.shape, value.shape, source)
                target.copy_(torch.as_tensor(np.ascontiguousarray(value), dtype=target.dtype))
    return torch_model


def torch_to_keras(torch_model, keras_model):
    """Copy each parameter and statistic of `torch_model` into `keras_model` in place; returns keras_model."""
    for target, sources, _, to_keras in pairs(keras_model, torch_model):
        if not isinstance(target, keras.Variable):
            continue  # a constant of the Keras model (Normalization statistics given at build time)
        value = to_keras([s.detach().cpu().numpy() for _, s in sources])
        _check(target.path, tuple(target.shape), value.shape, sources[0][0])
        target.assign(value.astype(keras.backend.standardize_dtype(target.dtype)))
    for layer in keras_model.layers:
        if isinstance(layer, keras.layers.Normalization) and getattr(layer, "adapt_mean", None) is not None:
            layer.finalize_state()  # recompute the mean/variance tensors the layer divides by
    return keras_model


def _check(name, expected, got, other):
    if tuple(expected) != tuple(got):
        other_name = getattr(other, "path", None) or getattr(other, "name", other)
        raise TransferError(f"shape mismatch: {other_name} gives {tuple(got)} but {name} is "
                            f"{tuple(expected)}; the Keras model and its twin were built with different "
                            "settings.")


# --------------------------------------------------------------------------------------------------- pairing
def torch_leaves(torch_model):
    return [(name, m) for name, m in torch_model.named_modules()
            if isinstance(m, (Standardize, nn.Linear, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.Embedding,
                              *RNN_TYPES))]


def keras_leaves(keras_model):
    # A Normalization layer given its mean and variance holds them as constants, not weights: still paired.
    return [layer for layer in keras_model.layers
            if layer.weights or isinstance(layer, keras.layers.Normalization)]


def pairs(keras_model, torch_model):
    """[(keras variable, [(torch name, tensor)], to_torch(array) -> [arrays], to_keras([arrays]) -> array)].

    A twin with a `layer_pairs(keras_model)` method (the captioner, whose decoder is one custom Keras layer)
    names its pairs itself; the others are paired by order.
    """
    if hasattr(torch_model, "layer_pairs"):
        return [p for layer, module, name in torch_model.layer_pairs(keras_model)
                for p in _layer_pairs(layer, module, name)]
    k_layers = keras_leaves(keras_model)
    result = []
    for name, module in torch_leaves(torch_model):
        if isinstance(module, RNN_TYPES):
            count = module.num_layers
            layers, k_layers = k_layers[:count], k_layers[count:]
            if len(layers) < count:
                raise TransferError(f"{name} has {count} layers but the Keras model has too few recurrent "
                                    "layers.")
            for index, layer in enumerate(layers):
                result += _recurrent_pairs(layer, module, name, index)
            continue
        if not k_layers:
            raise TransferError(f"the Keras model has no layer left for {name} ({type(module).__name__}).")
        layer, k_layers = k_layers[0], k_layers[1:]
        result += _layer_pairs(layer, module, name)
    if k_layers:
        raise TransferError("Keras layers without a PyTorch counterpart: "
                            f"{', '.join(layer.name for layer in k_layers)}.")
    return result


def _expect(layer, module, keras_type, name):
    if not isinstance(layer, keras_type):
        raise TransferError(f"Keras layer '{layer.name}' ({type(layer).__name__}) is paired with {name} "
                            f"({type(module).__name__}); the layer orders differ.")


def _layer_pairs(layer, module, name):
    same = (lambda a: [a], lambda b: b[0])
    if isinstance(module, Standardize):
        _expect(layer, module, keras.layers.Normalization, name)
        # After adapt() the statistics live in the adapt_mean/adapt_variance variables (layer.mean is a
        # tensor derived from them); given at construction, layer.mean/variance are constants.
        adapted = isinstance(getattr(layer, "adapt_mean", None), keras.Variable)
        mean, variance = (layer.adapt_mean, layer.adapt_variance) if adapted else (layer.mean, layer.variance)
        return [(mean, [(f"{name}.mean", module.mean)], lambda a: [a.reshape(-1)],
                 lambda b: b[0].reshape(tuple(mean.shape))),
                (variance, [(f"{name}.std", module.std)],
                 lambda a: [np.maximum(np.sqrt(a.reshape(-1)), 1e-7)],
                 lambda b: (b[0] ** 2).reshape(tuple(variance.shape)))]
    if isinstance(module, nn.Linear):
        _expect(layer, module, keras.layers.Dense, name)
        flattened = getattr(module, "flattened_from", None)
        result = [(layer.kernel, [(f"{name}.weight", module.weight)],
                   lambda a: [_dense_to_torch(a, flattened)], lambda b: _dense_to_keras(b[0], flattened))]
        if layer.use_bias:
            result.append((layer.bias, [(f"{name}.bias", module.bias)], *same))
        return result
    if isinstance(module, nn.Conv2d):
        _expect(layer, module, keras.layers.Conv2D, name)
        result = [(layer.kernel, [(f"{name}.weight", module.weight)],
                   lambda a: [a.transpose(3, 2, 0, 1)], lambda b: b[0].transpose(2, 3, 1, 0))]
        if layer.use_bias:
            result.append((layer.bias, [(f"{name}.bias", module.bias)], *same))
        return result
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        _expect(layer, module, keras.layers.BatchNormalization, name)
        module.eps = layer.epsilon
        module.momentum = 1.0 - layer.momentum
        return [(layer.gamma, [(f"{name}.weight", module.weight)], *same),
                (layer.beta, [(f"{name}.bias", module.bias)], *same),
                (layer.moving_mean, [(f"{name}.running_mean", module.running_mean)], *same),
                (layer.moving_variance, [(f"{name}.running_var", module.running_var)], *same)]
    if isinstance(module, nn.Embedding):
        _expect(layer, module, keras.layers.Embedding, name)
        return [(layer.embeddings, [(f"{name}.weight", module.weight)], *same)]
    if isinstance(module, (nn.LSTMCell, nn.GRUCell)):
        _expect(layer, module,
                keras.layers.LSTMCell if isinstance(module, nn.LSTMCell) else keras.layers.GRUCell, name)
        return _cell_pairs(layer, lambda kind: (f"{name}.{kind}", getattr(module, kind)),
                           4 if isinstance(module, nn.LSTMCell) else 3, isinstance(module, nn.GRUCell), name)
    raise TransferError(f"no transfer rule for {name} ({type(module).__name__})")


def _dense_to_torch(kernel, flattened):
    if flattened:  # Keras rows are (row, col, channel); PyTorch columns are (channel, row, col)
        channels, rows, cols = flattened
        kernel = kernel.reshape(rows, cols, channels, -1).transpose(2, 0, 1, 3).reshape(-1, kernel.shape[-1])
    return kernel.T


def _dense_to_keras(weight, flattened):
    kernel = weight.T
    if flattened:
        channels, rows, cols = flattened
        kernel = kernel.reshape(channels, rows, cols, -1).transpose(1, 2, 0, 3).reshape(-1, kernel.shape[-1])
    return kernel


def _recurrent_pairs(layer, module, name, index):
    """One Keras recurrent layer (maybe Bidirectional) <-> layer `index` of a PyTorch RNN module."""
    directions = [(layer.forward_layer, ""), (layer.backward_layer, "_reverse")] if isinstance(
        layer, keras.layers.Bidirectional) else [(layer, "")]
    if (len(directions) == 2) != module.bidirectional:
        raise TransferError(f"Keras layer '{layer.name}' and {name} differ in direction "
                            "(bidirectional or not).")
    result = []
    for keras_rnn, suffix in directions:
        expected = {nn.RNN: keras.layers.SimpleRNN, nn.LSTM: keras.layers.LSTM, nn.GRU: keras.layers.GRU}
        _expect(keras_rnn, module, expected[type(module)], name)

        def p(kind, name=name, index=index, suffix=suffix, module=module):  # bound now, called in this pass
            return f"{name}.{kind}_l{index}{suffix}", getattr(module, f"{kind}_l{index}{suffix}")
        result += _cell_pairs(keras_rnn.cell, p, GATES[type(module)], isinstance(module, nn.GRU),
                              keras_rnn.name)
    return result


def _cell_pairs(cell, parameter, gates, is_gru, keras_name):
    """A Keras recurrent cell <-> PyTorch weight_ih, weight_hh, bias_ih, bias_hh (`parameter(kind)` gives
    (name, tensor)): kernels transposed, gate blocks reordered for the GRU."""
    if is_gru and not cell.reset_after:
        raise TransferError(f"Keras GRU '{keras_name}' has reset_after=False; PyTorch's GRU is reset_after.")
    # Keras GRU blocks are (z, r, h); PyTorch's are (r, z, n).
    order = [1, 0, 2] if is_gru else list(range(gates))
    reorder = lambda a: np.concatenate([np.split(a, gates, axis=0)[i] for i in order], axis=0)  # noqa: E731
    restore = lambda a: np.concatenate([np.split(a, gates, axis=0)[order.index(i)] for i in range(gates)],  # noqa: E731
                                       axis=0)
    result = [(cell.kernel, [parameter("weight_ih")], lambda a: [reorder(a.T)], lambda b: restore(b[0]).T),
              (cell.recurrent_kernel, [parameter("weight_hh")], lambda a: [reorder(a.T)],
               lambda b: restore(b[0]).T)]
    if is_gru:  # bias (2, 3H): input bias, recurrent bias
        result.append((cell.bias, [parameter("bias_ih"), parameter("bias_hh")],
                       lambda a: [reorder(a[0]), reorder(a[1])],
                       lambda b: np.stack([restore(b[0]), restore(b[1])])))
    else:  # one Keras bias = PyTorch's two summed
        result.append((cell.bias, [parameter("bias_ih"), parameter("bias_hh")],
                       lambda a: [reorder(a), np.zeros_like(a)], lambda b: restore(b[0] + b[1])))
    return result


# ----------------------------------------------------------------------------------------- parameter counts
def parameter_rows(keras_model, torch_model):
    """Rows {keras layer, keras params, torch module, torch params, why} for a side-by-side count table.

    Keras counts every weight (trainable or not: batch-norm moving statistics, Normalization's mean,
    variance and count); PyTorch's `parameters()` leaves buffers (running statistics) out. LSTM and
    SimpleRNN layers (and cells) have one bias in Keras and two in PyTorch. A twin with `layer_pairs` (the
    caption decoder) names the Keras partner of each module; the others are paired in order.
    """
    if hasattr(torch_model, "layer_pairs"):
        return [_row(layer.name, layer.count_params(), name, module,
                     sum(p.numel() for p in module.parameters()))
                for layer, module, name in torch_model.layer_pairs(keras_model)]
    rows = []
    k_layers = keras_leaves(keras_model)
    for name, module in torch_leaves(torch_model):
        count = module.num_layers if isinstance(module, RNN_TYPES) else 1
        layers, k_layers = k_layers[:count], k_layers[count:]
        rows.append(_row(", ".join(layer.name for layer in layers),
                         sum(layer.count_params() for layer in layers), name, module,
                         sum(p.numel() for p in module.parameters(recurse=False))))
    return rows


def _row(keras_name, keras_count, torch_name, module, torch_count):
    return {"keras layer": keras_name, "keras params": keras_count, "torch module": torch_name,
            "torch params": torch_count, "why they differ": _why(module, keras_count, torch_count)}


def _why(module, keras_count, torch_count):
    if keras_count == torch_count:
        return ""
    if isinstance(module, Standardize):
        return "Keras stores mean, variance and a count as weights; PyTorch keeps mean and std as buffers"
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return "Keras counts the moving mean and variance (non-trainable); PyTorch keeps them as buffers"
    if isinstance(module, (nn.LSTM, nn.RNN)):
        gates = GATES[type(module)] * module.hidden_size
        directions = 2 if module.bidirectional else 1
        return (f"PyTorch has a second bias vector: + {gates} per layer and direction "
                f"(x {module.num_layers * directions})")
    if isinstance(module, nn.LSTMCell):
        return (f"PyTorch's LSTMCell has a second bias vector: + {4 * module.hidden_size} "
                "(the twin keeps it at zero)")
    return "different structure"
