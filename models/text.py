"""Text classifiers on raw strings: recurrent networks and a bag-of-n-grams reference.

    raw review -> TextVectorization (inside the model) -> Embedding (mask_zero: padding is ignored)
                  [+ an embedding of the hashed bigram ending at each word, `bigram_buckets` > 0]
               -> SimpleRNN / LSTM / GRU (1 or more layers), optionally Bidirectional,
                  or a BiLSTM whose outputs are pooled by additive attention,
                  or a BiGRU whose outputs are max- and mean-pooled over time (`bigru_pool`)
               -> Dense(1, sigmoid)

    raw review -> token ids -> mean of the word and hashed-bigram embeddings (fastText) -> Dense(1, sigmoid)

    raw review -> sparse bag of 1- to 3-grams -> x naive-Bayes log-count ratio of each n-gram (fixed)
               -> Dense(1, sigmoid): NBSVM (Wang & Manning 2012) with logistic regression, `nbsvm`

Every name the lesson accepts maps to its builder in BUILDERS; ARCHITECTURES are the ones that read token-id
sequences (they also run without the vectoriser, on every backend: `build_token_classifier`).

Parameters per recurrent layer with H units on I inputs (Keras keeps one bias vector; PyTorch two):
SimpleRNN H*I + H^2 + H, LSTM 4(H*I + H^2 + H), GRU with reset_after=True 3(H*I + H^2 + 2H); a
Bidirectional layer doubles them.

The fast (cuDNN) kernels on a GPU need the defaults: tanh activation, sigmoid recurrent activation,
recurrent_dropout=0, unroll=False, use_bias=True, reset_after=True (GRU) and right-padded sequences (which
TextVectorization produces). `--recurrent-dropout` > 0 turns them off; SimpleRNN has no cuDNN kernel.
"""

import keras
import numpy as np
from keras import ops

from common import registry
from common.errors import UserError

RECURRENT = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
ARCHITECTURES = ("simple_rnn", "lstm", "gru", "bilstm", "bigru", "bilstm_attention", "bigru_pool", "ngram")
BIGRAM_HASH_MULTIPLIER = 7919  # a prime: bigram (a, b) -> (a * 7919 + b) mod buckets


def hashed_bigrams(ids, buckets):
    """The bigram (previous word, word) at every position, hashed into [0, buckets), and whether it is a
    real bigram (both words are tokens, not padding). Position 0 pairs the first word with padding."""
    ids = ops.cast(ids, "int32")
    previous = ops.pad(ids[:, :-1], [[0, 0], [1, 0]])
    return (previous * BIGRAM_HASH_MULTIPLIER + ids) % buckets, (previous > 0) & (ids > 0)


@keras.saving.register_keras_serializable(package="keras_tutorials")
class AttentionPooling(keras.layers.Layer):
    """Additive (Bahdanau-style) attention pooling over time: score_t = v^T tanh(W h_t + b), weights =
    softmax of the scores over the unmasked steps, output = sum_t weight_t h_t.

    Returns (pooled, weights) so the lesson can show which words the model looked at.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.supports_masking = True

    def build(self, input_shape):
        self.project = keras.layers.Dense(self.units, activation="tanh", name="project")
        self.project.build(input_shape)
        self.score = keras.layers.Dense(1, use_bias=False, name="score")
        self.score.build((*input_shape[:-1], self.units))

    def call(self, sequence, mask=None):
        scores = ops.squeeze(self.score(self.project(sequence)), axis=-1)
        if mask is not None:
            scores = ops.where(mask, scores, ops.full_like(scores, -1e9))
        weights = ops.softmax(scores, axis=-1)
        pooled = ops.sum(sequence * ops.expand_dims(weights, -1), axis=1)
        return pooled, weights

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1]), input_shape[:-1]

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="keras_tutorials")
class NgramEmbeddingAverage(keras.layers.Layer):
    """fastText's sentence vector: the mean embedding of every word and every bigram of the review.

    Bigrams are hashed into `buckets` extra rows of the table (Joulin et al. 2016 use the same trick):
    bigram (a, b) -> vocabulary_size + (a * 7919 + b) mod buckets. Padding (id 0) and bigrams touching it
    (and the first word, which has no bigram) are left out of the mean.
    """

    def __init__(self, vocabulary_size, buckets, embedding_dim, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.buckets = buckets
        self.embedding_dim = embedding_dim

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            shape=(self.vocabulary_size + self.buckets, self.embedding_dim),
            initializer=keras.initializers.RandomUniform(-0.05, 0.05), name="embeddings")

    def call(self, ids):
        ids = ops.cast(ids, "int32")
        bigrams, is_bigram = hashed_bigrams(ids, self.buckets)
        all_ids = ops.concatenate([ids, self.vocabulary_size + bigrams], axis=1)
        mask = ops.concatenate([ids > 0, is_bigram], axis=1)
        mask = ops.expand_dims(ops.cast(mask, self.compute_dtype), -1)
        vectors = ops.take(self.embeddings, all_ids, axis=0)
        return ops.sum(vectors * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.embedding_dim)

    def get_config(self):
        return {**super().get_config(), "vocabulary_size": self.vocabulary_size, "buckets": self.buckets,
                "embedding_dim": self.embedding_dim}


@keras.saving.register_keras_serializable(package="keras_tutorials")
class BigramEmbedding(keras.layers.Layer):
    """A vector for the hashed bigram ending at each word (Johnson & Zhang's region embedding of size 2,
    supervised): added to the word's own embedding, it tells the recurrent layer "not good" apart from
    "good" at the word itself. Position 0 and bigrams touching padding use row 0 of the table, hashed
    bigrams rows 1..buckets. It masks padding like the word embedding does (Keras' Add drops the mask
    when one input has none).
    """

    def __init__(self, buckets, embedding_dim, **kwargs):
        super().__init__(**kwargs)
        self.buckets = buckets
        self.embedding_dim = embedding_dim

    def build(self, input_shape):
        self.embeddings = self.add_weight(shape=(self.buckets + 1, self.embedding_dim),
                                          initializer=keras.initializers.RandomUniform(-0.05, 0.05),
                                          name="embeddings")

    def call(self, ids):
        bigrams, is_bigram = hashed_bigrams(ids, self.buckets)
        return ops.take(self.embeddings, ops.where(is_bigram, bigrams + 1, 0), axis=0)

    def compute_mask(self, ids, mask=None):
        return ops.not_equal(ids, 0)

    def compute_output_shape(self, input_shape):
        return (*input_shape, self.embedding_dim)

    def get_config(self):
        return {**super().get_config(), "buckets": self.buckets, "embedding_dim": self.embedding_dim}


@keras.saving.register_keras_serializable(package="keras_tutorials")
class MaxMeanPooling(keras.layers.Layer):
    """Max and mean over the unmasked time steps, concatenated: every state of the sequence can speak,
    not only the last one (Johnson & Zhang 2016 found max pooling over LSTM states beat the last state)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, sequence, mask=None):
        if mask is None:
            return ops.concatenate([ops.max(sequence, axis=1), ops.mean(sequence, axis=1)], axis=-1)
        keep = ops.expand_dims(ops.cast(mask, sequence.dtype), -1)
        largest = ops.max(ops.where(keep > 0, sequence, ops.full_like(sequence, -1e9)), axis=1)
        mean = ops.sum(sequence * keep, axis=1) / ops.maximum(ops.sum(keep, axis=1), 1.0)
        return ops.concatenate([largest, mean], axis=-1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])


@keras.saving.register_keras_serializable(package="keras_tutorials")
class NaiveBayesScaling(keras.layers.Layer):
    """Multiplies each feature by its naive-Bayes log-count ratio r (fixed: computed from the training
    counts before training, saved with the model, never trained). Takes sparse or dense vectors."""

    def __init__(self, size, **kwargs):
        super().__init__(**kwargs)
        self.size = size

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.size:
            raise ValueError(f"{self.size} ratios for vectors of {input_shape[-1]} features")
        self.ratios = self.add_weight(shape=(self.size,), initializer="zeros", trainable=False, name="ratios")

    def call(self, features):
        import tensorflow as tf  # sparse vectors come from TextVectorization, which needs TensorFlow

        # TextVectorization's sparse vectors hold int64 values: cast them to this layer's float type.
        ratios = ops.cast(self.ratios, self.compute_dtype)
        if isinstance(features, tf.SparseTensor):  # scale the stored values only: the zeros stay zeros
            values = ops.cast(features.values, self.compute_dtype) * ops.take(ratios, features.indices[:, -1])
            return tf.SparseTensor(features.indices, values, features.dense_shape)
        return ops.cast(features, self.compute_dtype) * ratios

    def compute_output_shape(self, input_shape):
        # One vector per review: TextVectorization declares (batch, 1, size) for the model's (batch, 1)
        # strings but returns (batch, size), which is what the layers after it must be told.
        return (input_shape[0], self.size)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


def log_count_ratios(positive, negative, alpha=1.0):
    """NBSVM's r = log((p / |p|_1) / (q / |q|_1)) with p = alpha + the per-feature counts in positive
    examples and q = alpha + those in negative ones: how much more often a feature occurs in positive
    reviews than in negative ones, relative to their sizes (0: no evidence either way)."""
    p = alpha + np.asarray(positive, dtype="float64")
    q = alpha + np.asarray(negative, dtype="float64")
    return np.log((p / p.sum()) / (q / q.sum())).astype("float32")


def build_nbsvm(config, data):
    """NBSVM's linear model on raw strings. Reads from data: vectorizer (sparse n-gram vectors, inside the
    model) and nb_ratios (`log_count_ratios` of the training counts; all ones: plain logistic regression on
    the same n-grams). The weights start at zero (the loss is convex: no symmetry to break)."""
    review = keras.Input(shape=(1,), dtype="string", name="review")
    scaling = NaiveBayesScaling(len(data.nb_ratios), name="nb_scaling")
    x = scaling(data.vectorizer(review))
    scaling.ratios.assign(data.nb_ratios)
    outputs = keras.layers.Dense(1, activation="sigmoid", kernel_initializer="zeros", dtype="float32",
                                 name="positive")(x)
    return keras.Model(review, outputs, name=config.model)


def linear_part(model):
    """The layers after the vectoriser as a model of their own, sharing their weights: n-gram vectors ->
    P(positive). It trains on vectors computed once, instead of vectorising every review in every epoch."""
    vectorize = model.get_layer("vectorize")
    features = keras.Input(shape=(vectorize.vocabulary_size(),), sparse=True, name="ngrams")
    x = features
    for layer in model.layers[model.layers.index(vectorize) + 1:]:
        x = layer(x)
    return keras.Model(features, x, name=model.name)


def build_text_classifier(config, data):
    """A sentiment classifier taking raw strings. Reads from config: model, embedding_dim, units,
    num_layers, dropout, recurrent_dropout, initializer; from data: vectorizer (adapted, inside the model).
    """
    inputs = keras.Input(shape=(1,), dtype="string", name="review")
    outputs = classifier_head(data.vectorizer(inputs), config, data.vectorizer.vocabulary_size())
    return keras.Model(inputs, outputs, name=config.model)


def build_token_classifier(config, vocabulary_size, sequence_length):
    """The same classifier on token ids (0 = padding), without the vectoriser: what runs on every Keras
    backend (TextVectorization needs TensorFlow) and what the PyTorch twins mirror."""
    inputs = keras.Input(shape=(sequence_length,), dtype="int32", name="token_ids")
    return keras.Model(inputs, classifier_head(inputs, config, vocabulary_size), name=config.model)


def classifier_head(tokens, config, vocabulary_size):
    """token ids -> embedding (padding masked) -> recurrent stack or n-gram average -> dropout -> sigmoid."""
    if config.model == "ngram":
        x = NgramEmbeddingAverage(vocabulary_size, config.ngram_buckets, config.embedding_dim,
                                  name="ngram_embedding")(tokens)
    else:
        x = keras.layers.Embedding(vocabulary_size, config.embedding_dim, mask_zero=True,
                                   name="embedding")(tokens)
        if getattr(config, "bigram_buckets", 0):
            bigrams = BigramEmbedding(config.bigram_buckets, config.embedding_dim,
                                      name="bigram_embedding")(tokens)
            x = keras.layers.Add(name="word_plus_bigram")([x, bigrams])
        x = recurrent_stack(x, config)
    if config.dropout:
        x = keras.layers.Dropout(config.dropout, name="dropout")(x)
    return keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="positive")(x)


def recurrent_stack(x, config):
    """`num_layers` recurrent layers; all but the last return sequences (pooling needs every step)."""
    kind = config.model
    cell = recurrent_cell(kind)
    pooled = kind in ("bilstm_attention", "bigru_pool")
    for i in range(1, config.num_layers + 1):
        last = i == config.num_layers
        layer = RECURRENT[cell](config.units, return_sequences=not last or pooled,
                                dropout=config.dropout, recurrent_dropout=config.recurrent_dropout,
                                kernel_initializer=registry.initializer(config.initializer),
                                name=f"{cell}_{i}")
        if kind.startswith("bi"):
            layer = keras.layers.Bidirectional(layer, name=f"bidirectional_{i}")
        x = layer(x)
    if kind == "bilstm_attention":
        x, _ = AttentionPooling(config.units, name="attention")(x)
    elif kind == "bigru_pool":
        x = MaxMeanPooling(name="max_mean_pool")(x)
    return x


def language_model(classifier, vocabulary):
    """Dai & Le's (2015) pretraining model for `classifier`: its own embeddings and first recurrent layer
    (the same layer objects, so the weights it learns are the classifier's), read token ids and predict,
    at every position, the next word from the forward states and (a bidirectional layer) an earlier word
    from the backward states. Heads over the `vocabulary` most frequent words (id 1, "unknown", stands for
    every rarer one); they are dropped after pretraining.

    What the backward states predict: the previous word, or (with bigram vectors, whose vector at a word
    already names the word before it) the word before that, so no state sees the word it predicts.
    """
    first = next((layer for layer in classifier.layers
                  if isinstance(getattr(layer, "forward_layer", layer), tuple(RECURRENT.values()))), None)
    inner = getattr(first, "forward_layer", first)
    if first is None or not inner.return_sequences:
        raise UserError(f"--pretrain-epochs pretrains the first recurrent layer as a language model, which "
                        f"needs its state at every word: use bigru_pool or bilstm_attention, or "
                        f"--num-layers 2 (--model {classifier.name} keeps only its last state).")
    tokens = keras.Input(shape=(None,), dtype="int32", name="token_ids")
    x = classifier.get_layer("embedding")(tokens)
    names = {layer.name for layer in classifier.layers}
    if "bigram_embedding" in names:
        x = classifier.get_layer("word_plus_bigram")([x, classifier.get_layer("bigram_embedding")(tokens)])
    states = first(x)
    units = inner.units
    outputs = [keras.layers.Dense(vocabulary, dtype="float32", name="next_word")(states[..., :units])]
    if first is not inner:
        outputs.append(keras.layers.Dense(vocabulary, dtype="float32", name="earlier_word")(
            states[..., units:]))
    return keras.Model(tokens, outputs, name=f"{classifier.name}_language_model")


def backward_offset(language):
    """How far back the backward states of a `language_model` predict: 0 when it has none (a
    unidirectional layer), 2 words with bigram vectors (a word's vector already names the one before it),
    else 1."""
    if len(language.outputs) == 1:
        return 0
    return 2 if any(layer.name == "bigram_embedding" for layer in language.layers) else 1


def recurrent_cell(kind):
    """The recurrent layer an architecture is made of: bilstm* -> lstm, bigru* -> gru, else its own name."""
    return "lstm" if kind.startswith("bilstm") else "gru" if kind.startswith("bigru") else kind


def recurrent_parameter_count(kind, units, inputs):
    """Trainable parameters of one (unidirectional) Keras recurrent layer."""
    if kind == "simple_rnn":
        return units * inputs + units * units + units
    if kind == "lstm":
        return 4 * (units * inputs + units * units + units)
    if kind == "gru":  # reset_after=True: separate input and recurrent biases
        return 3 * (units * inputs + units * units + 2 * units)
    raise ValueError(kind)


def parameter_table(model):
    """Rows {layer, params, formula} explaining where a text model's parameters are."""
    rows = []
    for layer in model.layers:
        count = layer.count_params()
        if not count:
            continue
        inner = getattr(layer, "forward_layer", layer)
        formula = ""
        kind = {"SimpleRNN": "simple_rnn", "LSTM": "lstm", "GRU": "gru"}.get(type(inner).__name__)
        if kind:
            formula = {"simple_rnn": "H*I + H^2 + H", "lstm": "4(H*I + H^2 + H)",
                       "gru": "3(H*I + H^2 + 2H)"}[kind] + (f" with H={inner.units}, "
                                                             f"I={inner.cell.kernel.shape[0]}")
            formula = f"2 x {formula}" if layer is not inner else formula
        elif isinstance(layer, keras.layers.Embedding):
            formula = f"vocabulary {layer.input_dim} x {layer.output_dim}"
        elif isinstance(layer, NaiveBayesScaling):
            formula = f"{layer.size} fixed log-count ratios (not trained)"
        elif isinstance(layer, BigramEmbedding):
            formula = f"(bigram buckets {layer.buckets} + 1) x {layer.embedding_dim}"
        elif isinstance(layer, keras.layers.Dense):
            formula = f"{layer.kernel.shape[0]} x {layer.units} + {layer.units}"
        rows.append({"layer": layer.name, "params": count, "formula": formula})
    return rows


# Every name the lesson accepts -> its builder (config, data) -> a keras.Model taking raw strings. A new model
# is a builder and an entry here: the lesson's --model and the tuner (tuning/spaces.py) read this mapping.
BUILDERS = {**dict.fromkeys(ARCHITECTURES, build_text_classifier), "nbsvm": build_nbsvm}


def build_text_model(config, data):
    """The model named by `config.model` (a key of BUILDERS), built by its builder."""
    if config.model not in BUILDERS:
        raise UserError(f"unknown model '{config.model}'; valid: {', '.join(BUILDERS)}.")
    return BUILDERS[config.model](config, data)


def attention_weights_model(model):
    """A model from raw strings to (token ids, attention weights) for the attention view."""
    vectorize = model.get_layer("vectorize")
    attention = model.get_layer("attention")
    return keras.Model(model.inputs, [vectorize.output, attention.output[1]])
