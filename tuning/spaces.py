"""Search spaces: functions from KerasTuner's `hp` to config overrides ({config field: value}).

A space returns values under the names of the task's config fields, so the best trial becomes a `--config`
file without translation. The shared part (activation, initializer, dropout, learning rate, optimizer with
its conditional momentum, weight decay, batch size) is the same for every task; each task adds its own
architecture choices.
"""

ACTIVATIONS = ["relu", "leaky_relu", "tanh", "sigmoid", "swish", "gelu"]
INITIALIZERS = ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal"]
OPTIMIZERS = ["sgd", "momentum", "adagrad", "rmsprop", "adam"]

# `--compare NAME`: every value of one hyperparameter, everything else at the task's defaults (a task may
# offer fewer or more, see tuning/tasks.py).
COMPARISONS = {
    "activation": ACTIVATIONS,
    "initializer": INITIALIZERS,
    "optimizer": OPTIMIZERS,
    "dropout": [0.0, 0.2, 0.4, 0.6],
}


def shared(hp, skip=()):
    """The hyperparameters every task tunes (minus those in `skip` that a task cannot vary)."""
    choices = {
        "activation": lambda: hp.Choice("activation", ACTIVATIONS),
        "initializer": lambda: hp.Choice("initializer", INITIALIZERS),
        "dropout": lambda: hp.Float("dropout", 0.0, 0.6, step=0.1),
        "learning_rate": lambda: hp.Float("learning_rate", 1e-4, 1e-1, sampling="log"),
        "optimizer": lambda: hp.Choice("optimizer", OPTIMIZERS),
        "weight_decay": lambda: hp.Choice("weight_decay", [0.0, 1e-5, 1e-4, 1e-3]),
        "batch_size": lambda: hp.Choice("batch_size", [32, 64, 128]),
    }
    values = {name: sample() for name, sample in choices.items() if name not in skip}
    # Momentum exists only for the momentum optimizer: a conditional hyperparameter, so the tuner neither
    # samples nor reports it for the others.
    with hp.conditional_scope("optimizer", ["momentum"]):
        if values["optimizer"] == "momentum":
            values["momentum"] = hp.Float("momentum", 0.5, 0.99)
    return values


def phone_price(hp):
    """Shared space plus depth/width of the FNN, batch norm and the input L1 penalty."""
    values = shared(hp)
    depth = hp.Int("num_layers", 1, 3)
    units = []
    for i in range(1, 4):
        with hp.conditional_scope("num_layers", list(range(i, 4))):
            if i <= depth:
                units.append(hp.Choice(f"units_{i}", [16, 32, 64, 128]))
    values["hidden_units"] = tuple(units)
    values["batch_norm"] = hp.Boolean("batch_norm")
    values["input_l1"] = hp.Choice("input_l1", [0.0, 1e-3, 3e-3, 1e-2])
    return values


def imdb(hp):
    """Shared space plus the recurrent architecture, its width and the embedding size.

    Not tuned here: the activation (the recurrent cells keep tanh, which their fast cuDNN kernels need) and
    the batch size (the review pipeline is batched once, when the data is loaded).
    """
    values = shared(hp, skip=("activation", "batch_size"))
    values["model"] = hp.Choice("model", imdb_models())
    values["units"] = hp.Choice("units", [32, 64, 128])
    values["embedding_dim"] = hp.Choice("embedding_dim", [32, 64, 128])
    return values


def cifar10(hp):
    """Shared space (batch sizes for images) plus the architecture and the regularisers of the recipe."""
    values = shared(hp, skip=("batch_size",))
    values["batch_size"] = hp.Choice("batch_size", [128, 256, 512])
    values["model"] = hp.Choice("model", cifar10_models())
    values["schedule"] = hp.Choice("schedule", ["onecycle", "cosine", "constant"])
    values["label_smoothing"] = hp.Choice("label_smoothing", [0.0, 0.1, 0.2])
    values["cutout"] = hp.Choice("cutout", [0, 8])
    return values


def model_names(builders, left_out):
    """The names of a models/ mapping (name -> builder), in its order, less `left_out`: a model added to the
    mapping joins the search unless it is left out here. Each name left out must be in the mapping, so a
    renamed model cannot slip back in unnoticed."""
    unknown = [name for name in left_out if name not in builders]
    if unknown:
        raise ValueError(f"models left out of the search but not in the mapping: {', '.join(unknown)}")
    return [name for name in builders if name not in left_out]


def cifar10_models(compare=False):
    """The CIFAR-10 models the search samples, or (`compare`) that `--compare model` trains: those of
    models/cnn.py's BUILDERS less the deeper ResNets (2-3x ResNet-20's time per trial) and, in the search,
    the course CNN (the baseline the searched models have to beat)."""
    from models import cnn

    return model_names(cnn.BUILDERS, ("resnet32", "resnet56") + (() if compare else ("course_cnn",)))


def imdb_models(compare=False):
    """The IMDB models the search samples, or (`compare`) that `--compare model` trains: those of
    models/text.py's BUILDERS less the bag-of-n-grams references (ngram trains with its own size and
    epochs, nbsvm needs n-gram counts the tuner's data lacks) and, in the search, the plain SimpleRNN (the
    recurrent baseline)."""
    from models import text

    return model_names(text.BUILDERS, ("ngram", "nbsvm") + (() if compare else ("simple_rnn",)))


def comparison(name, choices):
    """A space of one hyperparameter, for `--compare NAME`: a grid over `choices`."""

    def space(hp):
        return {name: hp.Choice(name, choices)}

    space.__name__ = f"compare_{name}"
    return space


def describe(space):
    """Every hyperparameter `space` can ask for, conditional ones included, as KerasTuner configs.

    A resumed search compares this with what it started with. Conditional hyperparameters appear only
    when their condition holds, so each condition seen is set once and the space asked again (KerasTuner
    explores a HyperModel's space the same way before a search).
    """
    import keras_tuner

    found = keras_tuner.HyperParameters()
    pending, seen = [[]], []
    while pending:
        conditions = pending.pop(0)
        seen.append(conditions)
        hp = found.copy()
        for condition in conditions:
            hp.values[condition.name] = condition.values[0]
        hp.ensure_active_values()  # values for what this condition switches on (which ones does not matter)
        space(hp)
        found.merge(hp, overwrite=False)
        pending += [scope for scope in hp.active_scopes + hp.inactive_scopes
                    if scope not in seen and scope not in pending]
    return found.get_config()["space"]
