"""Plain PyTorch versions of the Keras factories, written the way PyTorch course code writes them.

Each class takes the same config as its Keras factory, so `twins.transfer.keras_to_torch` can copy a
trained Keras model's weights into it and the two give the same outputs (tests/twins_test.py). The
modules are registered in the order of the Keras layers that own weights; that order is what the
transfer pairs them by.

Where the two frameworks differ by default, the twin follows Keras (the transfer sets the values):
- inputs are normalised by a fixed per-channel mean and standard deviation (Keras' `Normalization` layer);
- batch norm: Keras' momentum 0.99 is PyTorch's 0.01 (one minus it), Keras' epsilon 1e-3 vs PyTorch 1e-5;
- LeakyReLU: the registry already uses PyTorch's slope 0.01 (Keras' own default is 0.3);
- models end in logits (PyTorch losses take logits); `probabilities()` applies softmax / sigmoid.
"""

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": lambda: nn.LeakyReLU(0.01), "sigmoid": nn.Sigmoid,
               "tanh": nn.Tanh, "swish": nn.SiLU, "gelu": nn.GELU,
               "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "elu": nn.ELU, "selu": nn.SELU,
               "linear": nn.Identity}


def activation(name):
    from common.registry import check_name

    return ACTIVATIONS[check_name("activation", name)]()


class Standardize(nn.Module):
    """(x - mean) / std with fixed statistics of the training data: Keras' Normalization layer."""

    def __init__(self, num_features, channel_dim=-1):
        super().__init__()
        self.channel_dim = channel_dim
        self.register_buffer("mean", torch.zeros(num_features))
        self.register_buffer("std", torch.ones(num_features))

    def forward(self, x):
        shape = [1] * x.dim()
        shape[self.channel_dim] = -1
        return (x - self.mean.view(shape)) / self.std.view(shape)


class Classifier(nn.Module):
    """Shared: `probabilities()` turns the logits into what the Keras model outputs."""

    def probabilities(self, *inputs):
        logits = self(*inputs)
        return torch.sigmoid(logits) if logits.shape[-1] == 1 else torch.softmax(logits, dim=-1)


# ------------------------------------------------------------------------------------------------------- FNN
class FNN(Classifier):
    """models.fnn.build_fnn: Standardize -> [Linear -> BatchNorm1d? -> activation -> Dropout?]* -> Linear."""

    def __init__(self, config, num_features, num_classes, hidden_units=None):
        super().__init__()
        units = tuple(config.hidden_units if hidden_units is None else hidden_units)
        self.normalize = Standardize(num_features)
        layers, fan_in = [], num_features
        for width in units:
            layers.append(nn.Linear(fan_in, width, bias=not config.batch_norm))
            if config.batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(activation(config.activation))
            if config.dropout:
                layers.append(nn.Dropout(config.dropout))
            fan_in = width
        self.hidden = nn.Sequential(*layers)
        self.logits = nn.Linear(fan_in, num_classes)

    def forward(self, x):
        return self.logits(self.hidden(self.normalize(x)))


# ---------------------------------------------------------------------------------------------- course CNN
class CourseCNN(Classifier):
    """The course's first CNN (NCHW): conv 16 5x5 -> act -> pool -> conv 32 5x5 -> act -> pool -> fc."""

    def __init__(self, config, in_channels=3, num_classes=10, size=32):
        super().__init__()
        self.normalize = Standardize(in_channels, channel_dim=1)
        self.conv1 = nn.Conv2d(in_channels, 16, 5, padding=2)
        self.act1 = activation(config.activation)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(16, 32, 5, padding=2)
        self.act2 = activation(config.activation)
        self.pool2 = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(config.dropout) if config.dropout else nn.Identity()
        self.fc = nn.Linear(32 * (size // 4) ** 2, num_classes)
        # PyTorch flattens (channels, rows, cols), Keras (rows, cols, channels): the transfer reorders.
        self.fc.flattened_from = (32, size // 4, size // 4)

    def forward(self, x):
        x = self.pool1(self.act1(self.conv1(self.normalize(x))))
        x = self.pool2(self.act2(self.conv2(x)))
        return self.fc(self.dropout(torch.flatten(x, 1)))


# --------------------------------------------------------------------------------------------------- ResNet
class ShortcutA(nn.Module):
    """Every other pixel, new channels zero-padded on both sides (He et al.'s option A)."""

    def __init__(self, filters):
        super().__init__()
        self.filters = filters

    def forward(self, x):
        extra = self.filters - x.shape[1]
        return nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, extra // 2, extra - extra // 2))


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> act -> conv3x3 -> BN, plus the shortcut, then act."""

    def __init__(self, in_channels, filters, stride, config):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, filters, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(filters)
        self.act1 = activation(config.activation)
        self.conv2 = nn.Conv2d(filters, filters, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(filters)
        self.act2 = activation(config.activation)
        self.shortcut = ShortcutA(filters) if stride != 1 or in_channels != filters else nn.Identity()

    def forward(self, x):
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        return self.act2(self.shortcut(x) + y)


class ResNetCIFAR(Classifier):
    """ResNet-(6n+2) for CIFAR: conv 16 -> 3 stages of n blocks (16, 32, 64) -> global average pool -> fc."""

    def __init__(self, config, blocks_per_stage, in_channels=3, num_classes=10):
        super().__init__()
        self.normalize = Standardize(in_channels, channel_dim=1)
        self.conv = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.act = activation(config.activation)
        blocks, fan_in = [], 16
        for stage, filters in enumerate((16, 32, 64)):
            for block in range(blocks_per_stage):
                blocks.append(BasicBlock(fan_in, filters, 2 if stage and not block else 1, config))
                fan_in = filters
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.blocks(self.act(self.bn(self.conv(self.normalize(x)))))
        return self.fc(x.mean(dim=(2, 3)))


# ------------------------------------------------------------------------------------------------- fast net
class FastNet(Classifier):
    """models.cnn's `fast`: 2x2 stem -> [conv -> pool -> BN -> act -> conv -> BN -> act] x 3 -> max -> fc."""

    def __init__(self, config, in_channels=3, num_classes=10):
        super().__init__()
        self.normalize = Standardize(in_channels, channel_dim=1)
        self.stem = nn.Conv2d(in_channels, config.stem_width, 2)
        self.stem_act = activation(config.activation)
        blocks, fan_in = [], config.stem_width
        for filters in config.widths:
            blocks += [nn.Conv2d(fan_in, filters, 3, padding=1, bias=False), nn.MaxPool2d(2),
                       nn.BatchNorm2d(filters), activation(config.activation),
                       nn.Conv2d(filters, filters, 3, padding=1, bias=False), nn.BatchNorm2d(filters),
                       activation(config.activation)]
            fan_in = filters
        self.blocks = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(config.dropout) if config.dropout else nn.Identity()
        self.fc = nn.Linear(fan_in, num_classes, bias=False)
        self.logit_scale = config.logit_scale

    def forward(self, x):
        x = self.blocks(self.stem_act(self.stem(self.normalize(x))))
        return self.fc(self.dropout(x.amax(dim=(2, 3)))) * self.logit_scale


# ---------------------------------------------------------------------------------------------------- text
RECURRENT = {"simple_rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class TextRNN(Classifier):
    """Embedding -> (bi)directional SimpleRNN/LSTM/GRU layers -> Linear(1), on token ids (0 = padding).

    Padding is handled with `pack_padded_sequence`: every sequence stops at its own length, which is what
    Keras' `mask_zero=True` does for padding at the end.

    PyTorch's LSTM and RNN add two bias vectors where Keras has one; both receive the same gradient, so
    the pair learns twice as fast as Keras' single bias. With `single_bias` (the default) the second
    one stays at zero and frozen, so the twin also *trains* like the Keras model. The GRU keeps both:
    Keras' GRU (reset_after=True) has two as well.
    """

    def __init__(self, config, vocabulary_size, single_bias=True):
        super().__init__()
        kind = config.model
        cell = "lstm" if kind.startswith("bilstm") else "gru" if kind == "bigru" else kind
        if cell not in RECURRENT or kind == "bilstm_attention" or getattr(config, "bigram_buckets", 0):
            raise ValueError(f"no PyTorch twin for text model {kind!r} (or with bigram inputs)")
        self.embedding = nn.Embedding(vocabulary_size, config.embedding_dim)
        self.rnn = RECURRENT[cell](config.embedding_dim, config.units, num_layers=config.num_layers,
                                   batch_first=True, bidirectional=kind.startswith("bi"))
        self.dropout = nn.Dropout(config.dropout) if config.dropout else nn.Identity()
        self.fc = nn.Linear(config.units * (2 if kind.startswith("bi") else 1), 1)
        if single_bias and cell != "gru":
            for name, parameter in self.rnn.named_parameters():
                if name.startswith("bias_hh"):
                    nn.init.zeros_(parameter)
                    parameter.requires_grad_(False)

    def forward(self, ids):
        lengths = (ids != 0).sum(dim=1).clamp(min=1).cpu()
        packed = pack_padded_sequence(self.embedding(ids), lengths, batch_first=True, enforce_sorted=False)
        _, state = self.rnn(packed)
        h = state[0] if isinstance(state, tuple) else state  # LSTM returns (h, c)
        last = torch.cat([h[-2], h[-1]], dim=1) if self.rnn.bidirectional else h[-1]
        return self.fc(self.dropout(last))


# ------------------------------------------------------------------------------------------------ captioning
class BahdanauAttention(nn.Module):
    """score = v^T tanh(W_f f + W_h h), softmax over positions, context = weighted sum of the features."""

    def __init__(self, feature_dim, state_dim, units):
        super().__init__()
        self.feature_projection = nn.Linear(feature_dim, units)
        self.state_projection = nn.Linear(state_dim, units, bias=False)
        self.score = nn.Linear(units, 1)

    def forward(self, features, keys, state):
        scores = self.score(torch.tanh(keys + self.state_projection(state).unsqueeze(1))).squeeze(-1)
        weights = torch.softmax(scores, dim=-1)
        return (weights.unsqueeze(-1) * features).sum(dim=1), weights


class Captioner(nn.Module):
    """models.captioning.build_captioner on cached features: Linear+ReLU projection, then the show-attend-tell
    decoder (embedding, Bahdanau attention, context gate, LSTMCell/GRUCell, next-word Linear), unrolled with
    teacher forcing. `forward` returns logits and attention weights (for the doubly stochastic penalty).

    The LSTMCell's second bias is frozen at zero (`single_bias`), as in TextRNN: the twin trains like Keras.
    """

    def __init__(self, config, vocabulary_size, feature_dim, single_bias=True):
        super().__init__()
        self.encoded = nn.Linear(feature_dim, config.feature_units)
        self.feature_dropout = nn.Dropout(config.feature_dropout)
        units, width = config.units, config.feature_units
        self.embedding = nn.Embedding(vocabulary_size, config.embedding_dim)
        self.attention = BahdanauAttention(width, units, config.attention_units)
        self.context_gate = nn.Linear(units, 1)
        self.cell_type = config.cell
        self.cell = (nn.LSTMCell if config.cell == "lstm" else nn.GRUCell)(
            config.embedding_dim + width, units)
        self.init_h = nn.Linear(width, units)
        self.init_c = nn.Linear(width, units) if config.cell == "lstm" else None
        self.dropout = nn.Dropout(config.dropout)
        self.next_word = nn.Linear(units, vocabulary_size)
        if single_bias and config.cell == "lstm":
            nn.init.zeros_(self.cell.bias_hh)
            self.cell.bias_hh.requires_grad_(False)

    def layer_pairs(self, keras_model):
        """(Keras layer, module, name) for every weight-holding layer, paired by name (for twins.transfer)."""
        decoder = keras_model.get_layer("decoder")
        attention = decoder.attention
        pairs = [(keras_model.get_layer("encoded"), self.encoded, "encoded"),
                 (decoder.embedding, self.embedding, "embedding"),
                 (attention.feature_projection, self.attention.feature_projection,
                  "attention.feature_projection"),
                 (attention.state_projection, self.attention.state_projection, "attention.state_projection"),
                 (attention.score, self.attention.score, "attention.score"),
                 (decoder.gate, self.context_gate, "context_gate"), (decoder.cell, self.cell, "cell"),
                 (decoder.init_state[0], self.init_h, "init_h")]
        if self.init_c is not None:
            pairs.append((decoder.init_state[1], self.init_c, "init_c"))
        return pairs + [(decoder.classifier, self.next_word, "next_word")]

    @staticmethod
    def loss(outputs, targets, input_tokens, attention_penalty):
        """The lesson's loss: cross-entropy over real words (id > 0) plus the doubly stochastic attention
        penalty (every position attended about once over the caption's real input words)."""
        logits, weights = outputs
        real = (targets != 0).float()
        cross_entropy = nn.functional.cross_entropy(logits.transpose(1, 2), targets.long(), reduction="none")
        attended = (weights * (input_tokens != 0).float().unsqueeze(-1)).sum(dim=1)
        return (cross_entropy * real).sum() / real.sum() + attention_penalty * ((1.0 - attended) ** 2).mean()

    def forward(self, features, tokens):
        features = self.feature_dropout(torch.relu(self.encoded(features)))
        keys = self.attention.feature_projection(features)
        mean = features.mean(dim=1)
        h = torch.tanh(self.init_h(mean))
        c = torch.tanh(self.init_c(mean)) if self.init_c is not None else None
        logits, weights = [], []
        for t in range(tokens.shape[1]):
            context, step_weights = self.attention(features, keys, h)
            context = torch.sigmoid(self.context_gate(h)) * context
            inputs = torch.cat([self.embedding(tokens[:, t]), context], dim=-1)
            if c is not None:
                h, c = self.cell(inputs, (h, c))
            else:
                h = self.cell(inputs, h)
            logits.append(self.next_word(self.dropout(h)))
            weights.append(step_weights)
        return torch.stack(logits, dim=1), torch.stack(weights, dim=1)
