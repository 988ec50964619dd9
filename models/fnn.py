"""Fully connected networks for tabular data: the course's FNN and its one-layer baseline.

    raw features -> Normalization (mean/variance of the training rows, stored in the model)
                 -> [Dense -> BatchNorm? -> activation -> Dropout?] x len(hidden_units)
                 -> Dense(num_classes) -> softmax

Because normalisation is a layer inside the model, the saved model takes raw feature rows: nothing has to be
remembered at prediction time. With `hidden_units=()` the same factory gives softmax (multinomial logistic)
regression, the linear baseline every FNN has to beat.
"""

import keras

from common import registry


def build_fnn(config, data, hidden_units=None, name="fnn"):
    """Build an FNN from `config` for `data` (anything with num_features, num_classes and x_train).

    Reads from config: hidden_units, activation, initializer, dropout, batch_norm, l2, input_l1.
    `hidden_units` overrides the config's widths (the baseline passes `()`).
    """
    units = tuple(config.hidden_units if hidden_units is None else hidden_units)
    # float32 even under mixed precision: raw features reach variances (RAM: about 1e6) past float16's
    # largest number, 65504, and an infinite variance would scale every input to 0.
    normalize = keras.layers.Normalization(name="normalize", dtype="float32")
    normalize.adapt(data.x_train)  # statistics of the training rows only: no leak from validation/test

    inputs = keras.Input(shape=(data.num_features,), name="features")
    x = normalize(inputs)
    # L1 on the first layer's kernel pushes the weights of uninformative input features to exactly zero:
    # learned feature selection. L2 on every kernel keeps all weights small.
    first_penalty = registry.regularizer(l1=config.input_l1, l2=config.l2)
    penalty = registry.regularizer(l2=config.l2)
    for i, width in enumerate(units, start=1):
        # With batch norm the Dense bias is redundant (BN has its own shift), as in ResNets.
        x = keras.layers.Dense(width, use_bias=not config.batch_norm,
                               kernel_initializer=registry.initializer(config.initializer),
                               kernel_regularizer=first_penalty if i == 1 else penalty, name=f"hidden_{i}")(x)
        if config.batch_norm:
            x = keras.layers.BatchNormalization(name=f"batch_norm_{i}")(x)
        x = registry.activation(config.activation)(x)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout, name=f"dropout_{i}")(x)
    logits = keras.layers.Dense(data.num_classes, kernel_initializer=registry.initializer(config.initializer),
                                kernel_regularizer=penalty if units else first_penalty, name="logits")(x)
    # float32 output even under mixed precision: softmax in float16 loses the small probabilities.
    outputs = keras.layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    return keras.Model(inputs, outputs, name=name)


def build_softmax_regression(config, data):
    """The linear baseline: normalisation and one softmax layer (multinomial logistic regression)."""
    return build_fnn(config, data, hidden_units=(), name="softmax_regression")


def fnn_parameter_count(num_features, hidden_units, num_classes, batch_norm=False):
    """Trainable parameters by formula: each Dense has in*out weights + out biases (no bias with batch norm,
    which adds 2 trainable parameters per unit: scale and shift)."""
    total, fan_in = 0, num_features
    for width in hidden_units:
        total += fan_in * width + (2 * width if batch_norm else width)
        fan_in = width
    return total + fan_in * num_classes + num_classes
