"""Show, attend and tell (Xu et al. 2015): a CNN encoder, an LSTM/GRU decoder with Bahdanau attention.

The encoder turns an image into a grid of feature vectors (7x7 = 49 positions for EfficientNet-Lite0 at 224
pixels). At every word the decoder scores each position against its hidden state (additive attention,
Bahdanau et al. 2015), takes the softmax-weighted average of the features as the *context*, gates it, and
feeds [word embedding, context] to the recurrent cell, whose output predicts the next word.

    captioner = build_captioner(config, vocabulary_size, input_shape)  # (features | image, tokens) -> logits
    generate(captioner, inputs, start_id, end_id, max_length, beam_size)  # greedy (k=1) or beam search

Training uses teacher forcing (the reference caption, shifted, is the decoder input) with a loss that skips
padding, plus the *doubly stochastic* attention penalty: every position should get about the same total
attention over the caption, so the decoder looks at the whole image.

Two kinds of encoder input: cached features of a frozen pretrained CNN (the usual case; computed once per
image) or raw images, encoded by a small CNN trained together with the decoder (`--encoder cnn`).
"""

import keras
import numpy as np
from keras import layers, ops

PACKAGE = "keras_tutorials"
UNKNOWN = 1  # TextVectorization's id for out-of-vocabulary words (0 is padding)


@keras.saving.register_keras_serializable(package=PACKAGE)
class BahdanauAttention(layers.Layer):
    """score(h, f_p) = v^T tanh(W_f f_p + W_h h); weights = softmax over positions p;
    context = sum_p w_p f_p."""

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.feature_projection = layers.Dense(units, name="feature_projection")
        self.state_projection = layers.Dense(units, use_bias=False, name="state_projection")
        self.score = layers.Dense(1, name="score")

    def build(self, features_shape, state_shape):
        self.feature_projection.build(features_shape)
        self.state_projection.build(state_shape)
        self.score.build(tuple(features_shape[:-1]) + (self.units,))

    def keys(self, features):
        """W_f f_p for every position: it does not depend on the word, so it is computed once per image."""
        return self.feature_projection(features)

    def call(self, features, keys, state):
        scores = self.score(ops.tanh(keys + ops.expand_dims(self.state_projection(state), 1)))[..., 0]
        weights = ops.softmax(scores, axis=-1)  # (batch, positions), sums to 1
        context = ops.sum(ops.expand_dims(weights, -1) * features, axis=1)
        return context, weights

    def get_config(self):
        return {**super().get_config(), "units": self.units}


# Every `--cell` name -> its Keras cell: the lesson's --cell reads this mapping.
CELLS = {"lstm": layers.LSTMCell, "gru": layers.GRUCell}


@keras.saving.register_keras_serializable(package=PACKAGE)
class AttentionDecoder(layers.Layer):
    """Embedding + LSTM/GRU cell + Bahdanau attention over the encoder's positions -> next-word logits.

    `call([features, tokens])` runs teacher forcing over the whole caption; `step` advances one word and is
    what greedy and beam search use.
    """

    def __init__(self, vocabulary_size, embedding_dim=256, units=512, attention_units=512, cell="lstm",
                 dropout=0.5, attention_penalty=1.0, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.embedding_dim = embedding_dim
        self.units = units
        self.attention_units = attention_units
        self.cell_type = cell
        self.dropout_rate = dropout
        self.attention_penalty = attention_penalty
        self.embedding = layers.Embedding(vocabulary_size, embedding_dim, name="embedding")
        self.attention = BahdanauAttention(attention_units, name="attention")
        self.gate = layers.Dense(1, activation="sigmoid", name="context_gate")  # Xu et al.'s beta
        self.cell = CELLS[cell](units, name=cell)
        self.init_state = [layers.Dense(units, activation="tanh", name=f"init_{n}")
                           for n in (("h", "c") if cell == "lstm" else ("h",))]
        self.dropout = layers.Dropout(dropout)
        self.classifier = layers.Dense(vocabulary_size, name="next_word")

    def build(self, input_shape):
        features_shape, _ = input_shape
        feature_dim = features_shape[-1]
        self.embedding.build((None,))
        self.attention.build(features_shape, (None, self.units))
        self.gate.build((None, self.units))
        self.cell.build((None, self.embedding_dim + feature_dim))
        for dense in self.init_state:
            dense.build((None, feature_dim))
        self.classifier.build((None, self.units))

    def keys(self, features):
        """What attention reads of the image, computed once per image before the words."""
        return self.attention.keys(features)

    def initial_state(self, features):
        """The cell's first state from the mean feature vector (Xu et al.)."""
        mean = ops.mean(features, axis=1)
        return [dense(mean) for dense in self.init_state]

    def step(self, features, keys, tokens, state, training=False):
        """One word: (features, keys, previous token ids, state) -> (logits, new state, attention weights)."""
        context, weights = self.attention(features, keys, state[0])
        context = self.gate(state[0]) * context
        inputs = ops.concatenate([self.embedding(tokens), context], axis=-1)
        output, state = self.cell(inputs, state, training=training)
        state = list(state) if isinstance(state, (list, tuple)) else [state]
        logits = self.classifier(self.dropout(output, training=training))
        return logits, state, weights

    def call(self, inputs, training=None):
        features, tokens = inputs
        keys = self.keys(features)
        state = self.initial_state(features)
        logits, weights = [], []
        for t in range(tokens.shape[1]):  # teacher forcing: the reference word, not the predicted one
            step_logits, state, step_weights = self.step(features, keys, tokens[:, t], state, training)
            logits.append(step_logits)
            weights.append(step_weights)
        logits = ops.stack(logits, axis=1)
        weights = ops.stack(weights, axis=1)  # (batch, time, positions)
        if self.attention_penalty:
            self.add_loss(self.attention_penalty * attention_penalty(weights, tokens))
        return logits

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1]) + (self.vocabulary_size,)

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size,
                "embedding_dim": self.embedding_dim, "units": self.units,
                "attention_units": self.attention_units, "cell": self.cell_type, "dropout": self.dropout_rate,
                "attention_penalty": self.attention_penalty}


def attention_penalty(weights, tokens):
    """Doubly stochastic attention: mean over images and positions of (1 - attention summed over words)^2.

    Only real words count (padding steps are left out of the sum).
    """
    real = ops.cast(ops.not_equal(tokens, 0), weights.dtype)[..., None]
    total = ops.sum(weights * real, axis=1)  # (batch, positions)
    return ops.mean(ops.square(1.0 - total))


@keras.saving.register_keras_serializable(package=PACKAGE)
class TransformerDecoder(layers.Layer):
    """A small Transformer decoder (Vaswani et al. 2017) over the encoder's positions -> next-word logits.

    Word embedding + learned position embedding, then `blocks` blocks of: causal self-attention over the
    words so far, cross-attention from each word to the image positions, a two-layer feed-forward net; each
    sub-layer reads a layer-normalised input and adds its output back (pre-norm residuals, which train
    without a warm-up). All words of a caption are computed at once in training; `step` gives the same
    interface as `AttentionDecoder.step`: its state is the caption so far, run again each word (captions are
    short: no key/value cache).
    """

    def __init__(self, vocabulary_size, max_length, dim=256, heads=4, blocks=2, feed_forward_units=1024,
                 dropout=0.1, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.max_length = max_length
        self.dim = dim
        self.heads = heads
        self.blocks = blocks
        self.feed_forward_units = feed_forward_units
        self.dropout_rate = dropout
        self.embedding = layers.Embedding(vocabulary_size, dim, name="embedding")
        self.position = layers.Embedding(max_length, dim, name="position")
        self.stack = []
        for i in range(blocks):
            self.stack.append({
                "self_norm": layers.LayerNormalization(name=f"block{i}_self_norm"),
                "self_attention": layers.MultiHeadAttention(heads, dim // heads, dropout=dropout,
                                                            name=f"block{i}_self_attention"),
                "cross_norm": layers.LayerNormalization(name=f"block{i}_cross_norm"),
                "cross_attention": layers.MultiHeadAttention(heads, dim // heads, dropout=dropout,
                                                             name=f"block{i}_cross_attention"),
                "ff_norm": layers.LayerNormalization(name=f"block{i}_ff_norm"),
                "ff_in": layers.Dense(feed_forward_units, activation="gelu", name=f"block{i}_ff_in"),
                "ff_out": layers.Dense(dim, name=f"block{i}_ff_out")})
        self.dropout = layers.Dropout(dropout)
        self.norm = layers.LayerNormalization(name="final_norm")
        self.classifier = layers.Dense(vocabulary_size, name="next_word")

    def build(self, input_shape):
        features_shape, _ = input_shape
        words = (None, None, self.dim)
        self.embedding.build((None, None))
        self.position.build((None,))
        for block in self.stack:
            block["self_norm"].build(words)
            block["self_attention"].build(words, words)
            block["cross_norm"].build(words)
            block["cross_attention"].build(words, tuple(features_shape))
            block["ff_norm"].build(words)
            block["ff_in"].build(words)
            block["ff_out"].build((None, None, self.feed_forward_units))
        self.norm.build(words)
        self.classifier.build(words)

    def decode(self, features, tokens, training=False):
        """Logits of the next word after every prefix of `tokens`, and the last block's cross-attention
        weights averaged over heads: (batch, words, positions)."""
        positions = ops.arange(ops.shape(tokens)[1])
        x = self.dropout(self.embedding(tokens) + self.position(positions)[None], training=training)
        weights = None
        for block in self.stack:
            h = block["self_norm"](x)
            x = x + self.dropout(block["self_attention"](h, h, use_causal_mask=True, training=training),
                                 training=training)
            h = block["cross_norm"](x)
            context, weights = block["cross_attention"](h, features, return_attention_scores=True,
                                                        training=training)
            x = x + self.dropout(context, training=training)
            h = block["ff_norm"](x)
            x = x + self.dropout(block["ff_out"](block["ff_in"](h)), training=training)
        return self.classifier(self.norm(x)), ops.mean(weights, axis=1)

    def call(self, inputs, training=None):
        features, tokens = inputs
        return self.decode(features, tokens, training)[0]

    # The word-by-word interface of greedy and beam search (`generate`).
    def keys(self, features):
        return features  # cross-attention projects the positions itself

    def initial_state(self, features):
        return [ops.zeros((ops.shape(features)[0], 0), dtype="int32")]  # no words yet

    def step(self, features, keys, tokens, state, training=False):
        words = ops.concatenate([state[0], ops.cast(ops.expand_dims(tokens, 1), "int32")], axis=1)
        logits, weights = self.decode(features, words, training)
        return logits[:, -1], [words], weights[:, -1]

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[1]) + (self.vocabulary_size,)

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size,
                "max_length": self.max_length, "dim": self.dim, "heads": self.heads, "blocks": self.blocks,
                "feed_forward_units": self.feed_forward_units,
                "dropout": self.dropout_rate}


# Every `--decoder` name: Show, Attend and Tell's recurrent decoder (its cell is --cell) or a Transformer.
DECODERS = ("rnn", "transformer")


# -------------------------------------------------------------------------------------------- loss, metric
@keras.saving.register_keras_serializable(package=PACKAGE)
def masked_crossentropy(y_true, y_pred, label_smoothing=0.0):
    """Cross-entropy per real word (token id > 0); padding after `<end>` adds nothing.

    `label_smoothing` e mixes e of the uniform distribution over the vocabulary into each one-hot target:
    (1 - e) * (-log p(word)) + e * mean over the vocabulary of (-log p).
    """
    y_true = ops.cast(y_true, "int32")
    mask = ops.cast(ops.not_equal(y_true, 0), "float32")
    log_p = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
    losses = -ops.take_along_axis(log_p, ops.expand_dims(y_true, -1), axis=-1)[..., 0]
    if label_smoothing:
        losses = (1.0 - label_smoothing) * losses - label_smoothing * ops.mean(log_p, axis=-1)
    return ops.sum(losses * mask) / ops.maximum(ops.sum(mask), 1.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class MaskedCrossentropy(keras.losses.Loss):
    """`masked_crossentropy` as a Keras loss object, with its label smoothing."""

    def __init__(self, label_smoothing=0.0, name="masked_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        return masked_crossentropy(y_true, y_pred, self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


@keras.saving.register_keras_serializable(package=PACKAGE)
def masked_accuracy(y_true, y_pred):
    """Share of real words predicted exactly (teacher forcing)."""
    y_true = ops.cast(y_true, "int32")
    mask = ops.cast(ops.not_equal(y_true, 0), "float32")
    hits = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
    return ops.sum(hits * mask) / ops.maximum(ops.sum(mask), 1.0)


# ---------------------------------------------------------------------------------------------- the model
def small_cnn_encoder(inputs, widths=(32, 64, 128)):
    """A small CNN trained from scratch: conv-BN-ReLU-max-pool blocks, each halving the grid; a 64-pixel
    image becomes 8x8 positions of `widths[-1]` features."""
    x = layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    for i, width in enumerate(widths):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"cnn{i}_conv")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"cnn{i}_bn")(x)  # few steps per epoch
        x = layers.ReLU(name=f"cnn{i}_relu")(x)
        x = layers.MaxPooling2D(name=f"cnn{i}_pool")(x)
    return x


def build_captioner(config, vocabulary_size, input_shape):
    """(encoder input, caption tokens without the last) -> logits of the caption tokens without `<start>`.

    `input_shape` is (positions, features) for cached features, or (height, width, 3) for `--encoder cnn`.
    """
    encoder_input = keras.Input(shape=tuple(input_shape), name="encoder_input")
    tokens = keras.Input(shape=(config.max_words + 1,), dtype="int32", name="tokens")
    if len(input_shape) == 3:
        grid = small_cnn_encoder(encoder_input, config.cnn_widths)
        features = layers.Reshape((-1, grid.shape[-1]), name="positions")(grid)
    else:
        features = encoder_input
    features = layers.Dense(config.feature_units, activation="relu", name="encoded")(features)
    features = layers.Dropout(config.feature_dropout, name="feature_dropout")(features)
    if config.decoder == "transformer":
        decoder = TransformerDecoder(vocabulary_size, config.max_words + 1, config.embedding_dim,
                                     config.heads, config.blocks, config.feed_forward_units, config.dropout,
                                     name="decoder")
    else:
        decoder = AttentionDecoder(vocabulary_size, config.embedding_dim, config.units,
                                   config.attention_units, config.cell, config.dropout,
                                   config.attention_penalty, name="decoder")
    logits = decoder([features, tokens])
    name = "transformer" if config.decoder == "transformer" else config.cell
    return keras.Model([encoder_input, tokens], logits, name=f"captioner_{name}")


def encoder_part(captioner):
    """The captioner's layers from its input to the (trainable) projected features, as a model."""
    return keras.Model(captioner.inputs[0], captioner.get_layer("encoded").output)


# --------------------------------------------------------------------------------------------- decoding
def generate(captioner, inputs, start_id, end_id, max_length, beam_size=1, length_penalty=0.0,
             block_repeats=False, batch_size=256):
    """Token ids (n, max_length, 0-padded, `<end>` not included) and attention weights (n, max_length,
    positions).

    `beam_size` 1 is greedy decoding; beam search keeps the `beam_size` best partial captions by summed log
    probability and picks the finished one with the best score / length**length_penalty. Padding and
    [UNK] are never generated: a caption says what it can in known words. `block_repeats`: no caption holds
    the same two words in a row twice ("a blue shirt and a blue shirt"): a word that would repeat a bigram
    of its caption gets probability 0 (the n-gram blocking of many translation decoders).
    """
    encoder = encoder_part(captioner)
    decoder = captioner.get_layer("decoder")
    tokens, weights = [], []
    for begin in range(0, len(inputs), batch_size):
        features = encoder(np.asarray(inputs[begin:begin + batch_size], dtype="float32"), training=False)
        batch_tokens, batch_weights = _beam_search(decoder, features, start_id, end_id, max_length, beam_size,
                                                   length_penalty, block_repeats)
        tokens.append(batch_tokens)
        weights.append(batch_weights)
    return np.concatenate(tokens), np.concatenate(weights)


def greedy_decode(captioner, inputs, start_id, end_id, max_length):
    """The most likely next word, one word at a time: the plain loop that beam search with k=1 must equal."""
    features = encoder_part(captioner)(np.asarray(inputs, dtype="float32"), training=False)
    decoder = captioner.get_layer("decoder")
    keys, state = decoder.keys(features), decoder.initial_state(features)
    previous = np.full(len(inputs), start_id, dtype="int32")
    done = np.zeros(len(inputs), dtype=bool)
    tokens = np.zeros((len(inputs), max_length), dtype="int32")
    for t in range(max_length):
        logits, state, _ = decoder.step(features, keys, ops.convert_to_tensor(previous), state)
        logits = np.array(logits)  # a writable copy
        logits[:, :UNKNOWN + 1] = -np.inf  # padding and [UNK] are never generated
        previous = logits.argmax(axis=-1).astype("int32")
        done |= previous == end_id
        tokens[:, t] = np.where(done, 0, previous)
        if done.all():
            break
    return tokens


def _beam_search(decoder, features, start_id, end_id, max_length, k, length_penalty, block_repeats=False):
    n, positions = int(features.shape[0]), int(features.shape[1])
    features = ops.repeat(features, k, axis=0)  # beam b of image i is row i * k + b
    keys = decoder.keys(features)
    state = decoder.initial_state(features)
    previous = np.full(n * k, start_id, dtype="int32")
    scores = np.tile(np.r_[0.0, np.full(k - 1, -np.inf)], n).reshape(n, k)  # one live beam at the start
    finished = np.zeros((n, k), dtype=bool)
    history = np.zeros((n, k, max_length), dtype="int32")
    attention = np.zeros((n, k, max_length, positions), dtype="float32")
    lengths = np.zeros((n, k), dtype="int32")
    for t in range(max_length):
        logits, state, step_weights = decoder.step(features, keys, ops.convert_to_tensor(previous), state)
        log_probs = np.asarray(ops.log_softmax(logits, axis=-1), dtype="float64").reshape(n, k, -1)
        # A finished caption may only continue with padding (id 0), at no cost: it keeps its score.
        log_probs[finished] = -np.inf
        log_probs[..., 0][finished] = 0.0
        log_probs[..., :UNKNOWN + 1][~finished] = -np.inf  # padding and [UNK] are never generated
        if block_repeats:
            block_repeated_bigrams(log_probs, history, t)
        vocabulary = log_probs.shape[-1]
        total = (scores[..., None] + log_probs).reshape(n, -1)
        best = np.argsort(-total, axis=1, kind="stable")[:, :k]  # ties go to the lower index, as argmax does
        beam, token = best // vocabulary, (best % vocabulary).astype("int32")
        rows = (np.arange(n)[:, None] * k + beam).ravel()
        state = [ops.take(s, ops.convert_to_tensor(rows), axis=0) for s in state]
        scores = np.take_along_axis(total, best, axis=1)
        was_finished = np.take_along_axis(finished, beam, axis=1)
        history = np.take_along_axis(history, beam[..., None], axis=1)
        attention = np.take_along_axis(attention, beam[..., None, None], axis=1)
        lengths = np.take_along_axis(lengths, beam, axis=1)
        words = ~was_finished & (token != end_id)
        history[..., t] = np.where(words, token, 0)
        step_weights = np.asarray(step_weights).reshape(n, k, positions)[np.arange(n)[:, None], beam]
        attention[..., t, :] = np.where(words[..., None], step_weights, 0.0)
        lengths += words
        finished = was_finished | (token == end_id)
        previous = np.where(finished, end_id, token).ravel().astype("int32")
        if finished.all():
            break
    ranked = scores / np.maximum(lengths + 1, 1) ** length_penalty  # + 1: the <end> token was scored too
    choice = np.argmax(ranked, axis=1)
    pick = np.arange(n)
    return history[pick, choice], attention[pick, choice]


def block_repeated_bigrams(log_probs, history, t):
    """Sets log_probs[i, b, w] to -inf where word w after the caption's last word (history[i, b, t - 1])
    would repeat a bigram the caption (history[i, b, :t]) already holds."""
    if t < 2:
        return
    last = history[..., t - 1]
    for s in range(t - 1):
        image, beam = np.nonzero((history[..., s] == last) & (last > 0))
        log_probs[image, beam, history[image, beam, s + 1]] = -np.inf
