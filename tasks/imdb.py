"""IMDB sentiment: recurrent networks (SimpleRNN, LSTM, GRU, bidirectional, attention) and the linear models
they are measured against, on raw review text.

What you will learn: `TextVectorization` adapted on the training text and kept inside the model (the saved
model takes raw strings); embeddings with `mask_zero=True`, so padding never changes a prediction; the
recurrent family of `models/text.py` (`--model simple_rnn|lstm|gru|bilstm|bigru|bilstm_attention|bigru_pool`),
each layer's parameter count checked against its formula; the references a recurrent model has to beat, a
fastText-style bag of uni- and bigrams (`ngram`, trained beside it) and NBSVM (`nbsvm`); what the 50,000
unlabelled reviews add (self-training on a teacher's soft labels, language-model pretraining); attention
weights shaded on the words of test reviews (`--model bilstm_attention`). The data: the Large Movie Review
Dataset (Maas et al. 2011), 25,000 training and 25,000 test reviews, half positive, one text file each; a
validation part is carved from the training reviews with a fixed seed, the test reviews are read once.

Run it (the last section of tasks/imdb.py lists more recipes):

    python -m tasks.imdb                            # the default run: quick profile, GRU + n-gram reference
    python -m tasks.imdb --profile smoke            # seconds, a few batches
    python -m tasks.imdb --config recipes/imdb_nbsvm.json   # NBSVM: n-grams, ratios, logistic regression
    python -m tasks.imdb --config recipes/imdb_bigru_nbsvm_teacher.json --epochs 3   # the best BiGRU here
    python -m tasks.imdb predict --run runs/imdb/<run-id> "A moving, beautifully shot film." "Dull."

How long: minutes on a laptop CPU for the default run; the self-training recipes take about half an hour.
Expected result: the 'IMDB' section of benchmarks/RESULTS.md (a row per model and recipe, each with its
time); the lesson page (`make pages`) shows the default run's row at the top.
"""

# %% Setup
import dataclasses
import html
import sys
import time
import typing
from pathlib import Path

if __package__ in (None, ""):  # `python tasks/imdb.py`: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import quiet_tensorflow, run, task_main

quiet_tensorflow()

import keras  # noqa: E402
import numpy as np  # noqa: E402

from common import export, registry, runs, trained, training  # noqa: E402
from common.config import TrainConfig, build_config, setting  # noqa: E402
from common.errors import UserError  # noqa: E402
from common.tables import format_table  # noqa: E402
from datasets import imdb  # noqa: E402
from models import text as text_models  # noqa: E402

# %% Settings
# Every field is a flag and a `--config` key; the recipes in `recipes/imdb_*.json` are such files.
MAX_TABLE = 2**31  # numbers in one embedding table (8 GB of float32)


@dataclasses.dataclass
class ImdbConfig(TrainConfig):
    TASK: typing.ClassVar[str] = "imdb"
    PROFILES: typing.ClassVar[dict] = {
        "smoke": dict(epochs=2, ngram_epochs=2, max_batches=4, vocabulary_size=2000,
                      ngram_vocabulary_size=2000, ngram_buckets=5000, sequence_length=64, embedding_dim=16,
                      ngram_embedding_dim=16, units=16, nbsvm_vocabulary_size=2000, early_stopping=0,
                      tensorboard=False, export=False, verbose=0),
        "quick": dict(),
        "full": dict(model="bilstm_attention", sequence_length=400, units=64, epochs=6, early_stopping=2),
    }

    model: str = setting(
        "gru", "model", "architecture (models/text.py), one of: %(choices)s", choices=text_models.BUILDERS)
    ngram_reference: bool = setting(
        True, "model", "also train the bag-of-n-grams (fastText-style) reference", aliases=("baseline",))
    export: bool = setting(
        True, "run", "export the lesson's model (model.export): SavedModel on raw strings, ONNX and LiteRT "
        "on token ids; each file scored on the test reviews (exports.md)")
    epochs: int = 4
    early_stopping: int = 1
    batch_size: int = 64
    learning_rate: float = 1e-3
    clipnorm: typing.Optional[float] = 1.0
    loss: str = setting("binary_crossentropy", "training", "loss (common/registry.py)", registry="loss")
    vocabulary_size: int = setting(
        20000, "data", "words the recurrent models know: the most frequent in the training reviews (the rest "
        "share one id)")
    # The n-gram model's size, length and rate, compared with its earlier, smaller settings (20,000 words,
    # 100,000 buckets, 500 tokens, lr 1e-3) in the n-gram rows of benchmarks/RESULTS.md' IMDB section.
    ngram_vocabulary_size: int = setting(
        50000, "data", "words known to the n-gram model (it is cheap per word, so it can know more)")
    ngram_buckets: int = setting(
        1000000, "model", "hash buckets for the bigrams of the n-gram model (fewer buckets = more bigrams "
        "share a row)")
    ngram_embedding_dim: int = setting(
        32, "model", "embedding size of the n-gram model (its table is large: keep it small)")
    ngram_epochs: int = setting(5, "training", "epochs of the n-gram model")
    ngram_learning_rate: float = setting(3e-3, "training", "learning rate of the n-gram model")
    ngram_sequence_length: int = setting(
        800, "data", "tokens kept per review by the n-gram model (it is cheap, so it reads more)")
    nbsvm_ngrams: int = setting(3, "data", "nbsvm: n-grams of 1 up to this many words")
    nbsvm_vocabulary_size: int = setting(
        1000000, "data", "nbsvm: the most frequent n-grams of the training reviews it knows (all others "
        "share index 0)")
    nbsvm_output_mode: str = setting(
        "multi_hot", "data", "nbsvm: whether an n-gram occurs in the review (multi_hot, as in NBSVM) or how "
        "often (count)", choices=("multi_hot", "count"))
    nb_scaling: bool = setting(
        True, "model", "nbsvm: scale each n-gram by its naive-Bayes log-count ratio (off: plain logistic "
        "regression)")
    nb_alpha: float = setting(
        1.0, "model", "nbsvm: count added to every n-gram in each class before the ratios are taken "
        "(smoothing)")
    sequence_length: int = setting(300, "data", "tokens kept per review")
    embedding_dim: int = setting(64, "model", "size of each word's embedding vector (recurrent models)")
    bigram_buckets: int = setting(
        0, "model", "recurrent models: add to each word's vector that of the hashed bigram ending there, "
        "from this many rows (0 = words only)")
    units: int = setting(
        64, "model", "units of each recurrent layer (per direction) and of the attention pooling")
    num_layers: int = setting(1, "model", "recurrent layers stacked")
    dropout: float = setting(
        0.3, "model", "dropout on the recurrent layers' inputs and before the output layer (0 = off)")
    recurrent_dropout: float = setting(
        0.0, "model", "dropout inside the recurrence; > 0 disables the fast cuDNN kernels on GPU")
    initializer: str = setting(
        "glorot_uniform", "model", "initializer of the recurrent layers' kernels", registry="initializer")
    unlabelled: int = setting(
        0, "training", "self-training: recurrent models also learn from this many of the 50,000 unlabelled "
        "reviews (train/unsup), each labelled with the teacher's P(positive); the teacher is then trained "
        "first")
    teacher: str = setting(
        "ngram", "training", "self-training's teacher: ngram (the n-gram model, also the reference), nbsvm "
        "(trained with recipes/imdb_nbsvm.json's settings, in the sub-folder nbsvm_teacher/) or none (no "
        "self-training: the unlabelled reviews only feed --pretrain-epochs)",
        choices=("ngram", "nbsvm", "none"))
    self_training_rounds: int = setting(
        1, "training", "self-training in rounds (born-again networks, Furlanello et al. 2018): each round "
        "after the first trains a fresh student on the soft labels of a joint teacher, the mean P(positive) "
        "of the first teacher and every student before it; the last student is the lesson's model")
    pretrain_epochs: int = setting(
        0, "training", "language-model pretraining (Dai & Le 2015): before the classifier trains, its "
        "embeddings and first recurrent layer learn to predict the next word (bidirectional: and an earlier "
        "one) on the training reviews and the --unlabelled ones, for this many epochs (0 = off)")
    pretrain_vocabulary: int = setting(
        4000, "training", "pretraining: the most frequent words the language model predicts (rarer ones: one "
        "class)")
    pretrain_length: int = setting(256, "training", "pretraining: the first this many tokens of each review")
    pretrain_learning_rate: float = setting(
        3e-3, "training", "pretraining: Adam's learning rate (gradients clipped to norm 1)")
    source: str = setting(
        "folder", "data", "folder: the aclImdb review files (data root, Keras cache or the official "
        "archive); keras: keras.datasets.imdb's integer sequences (Keras cache or download) decoded back to "
        "words; tfds: TensorFlow Datasets' prepared imdb_reviews (--data-dir is then the TFDS data dir, else "
        "$TFDS_DATA_DIR or ~/tensorflow_datasets)", choices=("folder", "keras", "tfds"))
    val_fraction: float = setting(0.1, "data", "share of the training reviews held out for validation")
    split_seed: int = setting(
        42, "data", "seed of the validation split and of the choice of --unlabelled reviews")
    max_batches: typing.Optional[int] = setting(
        None, "data", "use only this many batches of each split (smoke tests)")

    RANGES: typing.ClassVar[dict] = {
        "dropout": "[0, 1)", "recurrent_dropout": "[0, 1)", "val_fraction": "(0, 1)",
        # TextVectorization reserves 0 (padding) and 1 (unknown word): a vocabulary needs room for a word.
        "vocabulary_size": ">= 3", "ngram_vocabulary_size": ">= 3", "ngram_buckets": ">= 1",
        "ngram_embedding_dim": ">= 1", "ngram_epochs": ">= 1", "ngram_learning_rate": "> 0",
        "ngram_sequence_length": ">= 1", "sequence_length": ">= 1", "embedding_dim": ">= 1", "units": ">= 1",
        "num_layers": ">= 1", "max_batches": ">= 1",
        # The n-gram vectors of nbsvm keep only index 0 for everything unknown (no padding).
        "nbsvm_ngrams": ">= 1", "nbsvm_vocabulary_size": ">= 2", "nb_alpha": "> 0",
        "pretrain_epochs": ">= 0", "pretrain_vocabulary": ">= 3", "pretrain_length": ">= 3",
        "pretrain_learning_rate": "> 0", "self_training_rounds": ">= 1"}

    def validate(self):
        super().validate()  # types, choices and RANGES of every field
        tables = {"--vocabulary-size + --bigram-buckets": (self.vocabulary_size + self.bigram_buckets)
                  * self.embedding_dim,
                  "--ngram-vocabulary-size + --ngram-buckets":
                  (self.ngram_vocabulary_size + self.ngram_buckets) * self.ngram_embedding_dim}
        for rows, size in tables.items():
            if size > MAX_TABLE:  # an extra zero typed by mistake; the table would not fit in memory
                raise UserError(f"the embedding table of {rows} rows would hold {size:,} numbers, more than "
                                f"{MAX_TABLE:,} (8 GB); choose fewer rows or a smaller embedding size.")
        if self.pretrain_epochs and self.model in ("ngram", "nbsvm"):
            raise UserError(f"--pretrain-epochs pretrains a recurrent model's first layer; --model "
                            f"{self.model} has none.")
        if self.self_training_rounds > 1 and not (self.unlabelled and self.teacher != "none"
                                                  and self.model not in ("ngram", "nbsvm")):
            raise UserError("--self-training-rounds above 1 needs self-training: a recurrent --model, "
                            "--unlabelled > 0 and --teacher ngram or nbsvm.")
        if self.unlabelled and self.source == "keras":
            raise UserError("--unlabelled needs --source folder or tfds: keras.datasets.imdb has no "
                            "unlabelled reviews.")


# %% Data: reviews, splits, vocabulary
# `datasets/imdb.py: load` reads the reviews of `--source`: the aclImdb files
# (`datasets/imdb.py: find_reviews`: the archive is extracted once into the cache, atomically, so a bad
# archive never costs a good cache), keras.datasets.imdb or TensorFlow Datasets. They become tf.data batches
# of raw strings with validation carved from the training reviews (`datasets/imdb.py: review_datasets`), and
# the vocabulary is adapted on the training reviews only (`datasets/imdb.py: adapt_vectorizer`): the test
# reviews are read once, for the final number.


# %% Recurrent models
# `models/text.py: build_text_classifier` stacks TextVectorization (inside the model, so it takes raw
# strings), an embedding, the recurrent layers (`models/text.py: recurrent_stack`) and a pooling: the last
# state, max+mean over the unmasked steps, or attention (`models/text.py: AttentionPooling`).
def train_one(config, data, folder, train_data=None, unlabelled=None):
    """Adapt the vectoriser this model needs on the training text, build, (pretrain,) train, evaluate.

    `train_data`: what to fit on instead of `data.train` (the labelled reviews plus pseudo-labelled ones);
    the vocabulary still comes from the labelled training reviews alone. `unlabelled`: reviews the
    language-model pretraining reads besides the training ones (`--pretrain-epochs`)."""
    labels = np.concatenate([y.numpy() for _, y in data.test])
    train_data = data.train if train_data is None else train_data
    if config.model == "nbsvm":
        result, model = train_nbsvm(config, data, folder, train_data, labels)
    else:
        length = config.ngram_sequence_length if config.model == "ngram" else config.sequence_length
        data.vectorizer = imdb.adapt_vectorizer(data.train, config.vocabulary_size, length)
        model = training.build_seeded(text_models.BUILDERS[config.model], config, data)
        pretraining = (pretrain(model, config, data, folder, unlabelled)
                       if config.pretrain_epochs and config.model != "ngram" else {})
        reviews = training.TrainingData(train_data, data.val, steps_per_epoch(train_data), test=data.test,
                                        test_labels=labels, class_names=data.class_names)
        result = {**compile_fit_evaluate(model, config, folder, reviews), **pretraining}
    (Path(folder) / "parameters.md").write_text(
        f"# {model.name}: {model.count_params():,} parameters\n\n"
        + format_table(text_models.parameter_table(model), ["layer", "params", "formula"]) + "\n")
    if config.model == "bilstm_attention":
        samples = [t.decode("utf-8", "replace") for t in next(iter(data.test.unbatch().batch(4)))[0].numpy()]
        write_attention_view(model, samples, folder)
    return result, model


# %% Compile, fit, evaluate
# Every model of the lesson (the recurrent ones, the n-gram reference, NBSVM's linear part, the students)
# trains through these Keras calls: binary cross-entropy on one sigmoid unit (the targets may be a teacher's
# soft P(positive)), the optimizer and schedule the flags choose (`common/training.py: optimizer`), and
# `common/training.py: FitState`, which makes the fit resume exactly after a kill.
def compile_fit_evaluate(model, config, folder, splits):
    """Compile `model`, fit it on `splits` (a `common/training.py: TrainingData`) and score it on the test
    reviews; returns what the run reports for it."""
    steps = splits.steps_per_epoch
    with training.scope():  # --distribution: the optimizer's and the metrics' variables are mirrored
        model.compile(
            optimizer=training.optimizer(config, steps),
            loss=registry.loss(config.loss, config.label_smoothing),
            metrics=[training.accuracy(config.loss, outputs=model.output_shape[-1])],  # P(positive) > 0.5?
            jit_compile=training.jit_compile(config),
            steps_per_execution=training.steps_per_call(config, steps))
    state = training.FitState(model, config, folder)
    if state.finished:
        outcome = state.load()
    else:
        model.fit(state.stream(splits.train, steps), steps_per_epoch=steps,
                  validation_data=state.prepare(splits.val),
                  initial_epoch=state.epoch, epochs=state.epochs(config.epochs),
                  callbacks=state.callbacks(monitor=training.monitor_of(splits)),
                  verbose=config.verbose, shuffle=False)  # the tf.data pipeline shuffles, seeded
        outcome = state.save()
    scores = model.evaluate(state.prepare(splits.test), return_dict=True, verbose=0)
    return training.classifier_results(model, splits, folder, outcome, scores)


# %% The linear bar: NBSVM
# Multi-hot 1- to 3-grams scaled by their naive-Bayes log-count ratios
# (`models/text.py: NaiveBayesScaling`), then logistic regression: seconds of training, and the number a
# recurrent model has to beat.
def train_nbsvm(config, data, folder, train_data, test_labels):
    """NBSVM: count the n-grams of the training reviews (the vocabulary), vectorise every split once, take
    the naive-Bayes ratios from the training vectors, then fit the linear part on the vectors. Its training
    time counts all of it, from the first count to the last epoch; evaluation and the saved file use the
    whole model, on raw strings."""
    for _ in data.train:  # read the review files first (into data.train's cache): loading, not training
        pass
    started = time.perf_counter()
    data.vectorizer = imdb.ngram_vectorizer(data.train, config.nbsvm_ngrams, config.nbsvm_vocabulary_size,
                                            config.nbsvm_output_mode)
    size = data.vectorizer.vocabulary_size()
    train_vectors = imdb.vectorized(train_data, data.vectorizer, seed=config.seed)
    val_vectors = imdb.vectorized(data.val, data.vectorizer)
    # (This first pass over the vectors also fills their cache.)
    data.nb_ratios = (text_models.log_count_ratios(*imdb.class_counts(train_vectors, size), config.nb_alpha)
                      if config.nb_scaling else np.ones(size, "float32"))
    model = training.build_seeded(text_models.build_nbsvm, config, data)
    steps = steps_per_epoch(train_vectors)
    prepared = time.perf_counter() - started
    test_vectors = imdb.vectorized(data.test, data.vectorizer)  # same order as test_labels
    vectors = training.TrainingData(train_vectors, val_vectors, steps, test=test_vectors,
                                    test_labels=test_labels, class_names=data.class_names)
    result = compile_fit_evaluate(text_models.linear_part(model), config, folder, vectors)
    # The saved file is the whole model, raw strings in: it shares the trained weights of its linear part.
    # (Uncompiled: an optimizer without state would only make loading warn.)
    runs.save_model(model, Path(folder) / "model.keras")
    result.update(prepare_time_s=round(prepared, 2), train_time_s=round(result["train_time_s"] + prepared, 2))
    return result, model


def steps_per_epoch(dataset):
    steps = int(dataset.cardinality())
    return steps if steps > 0 else sum(1 for _ in dataset)


# %% Pretraining on unlabelled text
# Dai & Le (2015): a recurrent classifier learns faster and generalises better when its embeddings and
# recurrent layer first learn to predict words, from text that needs no label: the training reviews and
# the 50,000 unlabelled ones. `models/text.py: language_model` puts next-word heads on the classifier's own
# layers; after pretraining the heads go and the classifier trains as usual, starting from those weights.
def pretrain(model, config, data, folder, unlabelled):
    """Pretrain `model`'s embeddings and first recurrent layer as a language model (in place); returns the
    pretraining's time and losses. A resumed run loads the pretrained weights it saved instead of
    pretraining again (the classifier's own backup, when there is one, then restores its later state)."""
    folder = Path(folder)
    record, weights = folder / "pretraining.json", folder / "pretrained.weights.h5"
    if record.exists() and weights.exists():
        model.load_weights(weights)
        return runs.read_json(record)
    language = text_models.language_model(model, min(config.pretrain_vocabulary,
                                                      data.vectorizer.vocabulary_size()))
    texts = imdb.pretraining_texts(data.train, unlabelled)
    words = language.outputs[0].shape[-1]
    batches = imdb.language_model_batches(texts, data.vectorizer, config.pretrain_length, words,
                                          text_models.backward_offset(language), config.batch_size,
                                          config.seed)
    crossentropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    language.compile(keras.optimizers.Adam(config.pretrain_learning_rate, clipnorm=1.0),
                     loss=[crossentropy] * len(language.outputs))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"pretraining {model.name} as a language model on {sum(1 for _ in texts):,} reviews "
          f"({config.pretrain_epochs} epochs)")
    started = time.perf_counter()
    history = language.fit(batches, epochs=config.pretrain_epochs, verbose=config.verbose,
                           callbacks=[keras.callbacks.CSVLogger(str(folder / "pretraining.csv"))])
    outcome = {"pretrain_time_s": round(time.perf_counter() - started, 2),
               "pretrain_epochs": config.pretrain_epochs,
               "pretrain_loss": [round(float(v), 4) for v in history.history["loss"]]}
    model.save_weights(weights)
    runs.write_json(record, outcome)
    return outcome


# %% Self-training with the unlabelled reviews
# A trained teacher labels the 50,000 unlabelled reviews with its P(positive); the recurrent model learns
# from those soft targets and the labelled reviews (`datasets/imdb.py: with_pseudo_labels`). With
# `--self-training-rounds 2` the student is trained twice: the first student's P(positive), averaged with
# its teacher's, labels the reviews again for a fresh second student. The bet: the two read the reviews
# differently (bags of n-grams, word order), so their mean could be a stronger teacher than either; the
# joint teacher's validation accuracy is printed so a run shows whether it is (docs/results.md: here not).
def teacher_predictions(model, data, unlabelled):
    """A teacher's P(positive) for every unlabelled review, and for every validation review (only to report
    how good a teacher it is: validation stays out of training)."""
    return model.predict(unlabelled, verbose=0)[:, 0], model.predict(data.val, verbose=0)[:, 0]


def joint_teacher(members, data):
    """The mean P(positive) of several teachers (each `teacher_predictions`) on the unlabelled reviews, and
    that mean teacher's validation accuracy."""
    unlabelled, val = (np.mean(predictions, axis=0) for predictions in zip(*members))
    val_labels = np.concatenate([labels.numpy() for _, labels in data.val])
    return unlabelled, float(np.mean((val > 0.5) == val_labels))


def pseudo_labelled(config, data, unlabelled, probabilities, teacher_name):
    """Self-training data: the teacher's P(positive) for each unlabelled review joins the labelled training
    reviews as its soft target."""
    print(f"self-training: {len(probabilities):,} unlabelled reviews labelled by {teacher_name} "
          f"({np.mean(probabilities > 0.5):.1%} positive, {np.mean(np.abs(probabilities - 0.5) > 0.4):.1%} "
          "with P > 0.9 or < 0.1)")
    return imdb.with_pseudo_labels(data.train, unlabelled, probabilities, config.batch_size, config.seed)


def earlier_students(config, data, run_, unlabelled, members, pseudo, results, summary):
    """`--self-training-rounds`: every round but the last trains a student (in student_round<k>/), which
    then joins the teachers; returns the soft-labelled data for the next round. The time a student spends
    labelling the reviews counts as its training time (the next round cannot start without it)."""
    for round_ in range(1, config.self_training_rounds):
        name = f"student round {round_}"
        results[name], student = train_one(config, data, run_.folder(f"student_round{round_}"), pseudo,
                                           unlabelled)
        started = time.perf_counter()
        members.append(teacher_predictions(student, data, unlabelled))
        probabilities, val_accuracy = joint_teacher(members, data)
        results[name].update(labelling_time_s=round(time.perf_counter() - started, 2),
                             next_teacher_val_accuracy=round(val_accuracy, 4))
        summary.append(summary_line(name, results[name]))
        pseudo = pseudo_labelled(config, data, unlabelled, probabilities,
                                 f"the mean of the {TEACHERS[config.teacher]} model and {round_} student"
                                 f"{'s' if round_ > 1 else ''} (validation accuracy {val_accuracy:.4f})")
    return pseudo


# %% Reading the attention
# The PNG shows the first words of each review as text laid out on its panel (positions are fractions of
# the panel's width and height); the HTML view shows every word.
ATTENTION_WORDS = 60  # a sentence or two: what fits on the three lines of a panel
PANEL_INCHES = (14, 1.6)  # width of the figure, height of each review's panel
CHAR_WIDTH = 0.0085  # panel width taken by one character (and the space after a word) at font size 9
LINE_END = 0.97  # a word that starts past this begins a new line
FIRST_LINE, LINE_HEIGHT = 0.8, 0.3  # three lines per panel: at 0.8, 0.5 and 0.2 of its height


def write_attention_view(model, reviews, folder):
    """The first words of each review shaded by attention weight, as HTML and PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vocabulary = model.get_layer("vectorize").get_vocabulary()
    token_ids, weights = text_models.attention_weights_model(model).predict(imdb.string_batch(reviews),
                                                                            verbose=0)
    probabilities = model.predict(imdb.string_batch(reviews), verbose=0)[:, 0]
    blocks, shown = [], ATTENTION_WORDS
    width, panel_height = PANEL_INCHES
    fig, axes = plt.subplots(len(reviews), 1, figsize=(width, panel_height * len(reviews)))
    for ax, ids, weight, p in zip(np.atleast_1d(axes), token_ids, weights, probabilities):
        words = [vocabulary[i] for i in ids if i != 0]
        weight = weight[:len(words)] / max(weight[:len(words)].max(), 1e-9)  # (all-zero weights: no division)
        # Orange shading whose opacity is the word's weight relative to the review's largest, in both views.
        spans = "".join(f'<span style="background: rgba(255,80,0,{w:.2f})">{html.escape(word)}</span> '
                        for word, w in zip(words, weight))
        blocks.append(f"<p><b>P(positive) = {p:.3f}</b><br>{spans}</p>")
        x, y = 0.0, FIRST_LINE
        for word, w in zip(words[:shown], weight[:shown]):
            ax.text(x, y, word, fontsize=9, transform=ax.transAxes,
                           bbox=dict(facecolor=(1, 0.3, 0, float(w)), edgecolor="none", pad=1))
            x += CHAR_WIDTH * (len(word) + 1)
            if x > LINE_END:
                x, y = 0.0, y - LINE_HEIGHT
        ax.set_title(f"P(positive) = {p:.3f} (first {min(shown, len(words))} words)", fontsize=9, loc="left")
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(Path(folder) / "attention.png", dpi=100)
    plt.close(fig)
    (Path(folder) / "attention.html").write_text(
        "<html><meta charset='utf-8'><body style='font-family: sans-serif; max-width: 60em'>"
        "<h2>Attention weights (darker = more weight)</h2>" + "\n".join(blocks) + "</body></html>\n")


# %% The lesson, end to end
def ngram_config(config):
    """The n-gram model keeps its own vocabulary, (small) embedding size, epochs and learning rate. Beside a
    recurrent model (as the reference, or as the teacher) it also trains with its profile's schedule and
    early stopping, so a recurrent recipe (say, a cosine schedule) never changes the reference number."""
    own_schedule = {}
    if config.model != "ngram":
        profile = build_config(ImdbConfig, profile=config.profile)
        own_schedule = dict(schedule=profile.schedule, early_stopping=profile.early_stopping)
    return dataclasses.replace(config, model="ngram", embedding_dim=config.ngram_embedding_dim,
                               epochs=config.ngram_epochs, vocabulary_size=config.ngram_vocabulary_size,
                               learning_rate=config.ngram_learning_rate, **own_schedule)


NBSVM_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "imdb_nbsvm.json"
TEACHERS = {"ngram": "n-gram", "nbsvm": "NBSVM"}  # --teacher -> its name in messages and tables


# What the NBSVM teacher shares with its student: the data, the split, the seed, where the run goes and how
# its processes run (a multi-worker run's teacher trains over the same workers: build_seeded sets the
# distribution from the model's config). Everything about training (schedule, optimizer, batch size,
# epochs...) is recipes/imdb_nbsvm.json's over the profile's, so the teacher is the recipe's model whatever
# the student's recipe says.
TEACHER_SHARES = ("seed", "data_dir", "source", "split_seed", "val_fraction", "max_batches", "output_dir",
                  "run_id", "verbose", "deterministic", "tensorboard", "distribution", "workers",
                  "worker_index")


def nbsvm_teacher_config(config):
    """The NBSVM teacher: the profile with recipes/imdb_nbsvm.json over it, and the student's data, split,
    seed and run settings (so it sees exactly the student's training reviews, never validation or test)."""
    shared = {name: getattr(config, name) for name in TEACHER_SHARES}
    return build_config(ImdbConfig, profile=config.profile, config_file=NBSVM_RECIPE, overrides=dict(
        shared, unlabelled=0, ngram_reference=False, export=False, pretrain_epochs=0))


def train(config):
    training.require_backend("imdb", ("tensorflow",), "its models keep TextVectorization inside, so that a "
                             "saved model takes raw strings, and only TensorFlow runs string tensors.")
    training.setup_precision(config)
    data = imdb.load(config)
    print(f"data: {data.source}")
    teacher = (config.teacher if config.unlabelled > 0 and config.teacher != "none"
               and config.model not in ("ngram", "nbsvm") else None)
    reads_unlabelled = teacher or (config.unlabelled > 0 and config.pretrain_epochs > 0)
    unlabelled = imdb.load_unlabelled(config, data.source) if reads_unlabelled else None
    run_ = training.start_run(config, data.source)
    lesson = {config.model: (ngram_config(config) if config.model == "ngram" else config, run_.folder())}
    with_reference = (config.ngram_reference or teacher == "ngram") and config.model != "ngram"
    reference = {"ngram": (ngram_config(config), run_.folder("ngram_reference"))} if with_reference else {}
    # The teacher goes first: it labels the reviews the recurrent model then learns from. (The n-gram
    # model, as the teacher, is also the reference.)
    if teacher == "nbsvm":
        plan = {"nbsvm": (nbsvm_teacher_config(config), run_.folder("nbsvm_teacher")), **lesson, **reference}
    else:
        plan = {**reference, **lesson} if teacher else {**lesson, **reference}
    results, summary, pseudo = {}, [], None
    members = []  # self-training's teachers so far: their (unlabelled, validation) P(positive)
    for name, (model_config, folder) in plan.items():
        if name == config.model and teacher:
            pseudo = earlier_students(config, data, run_, unlabelled, members, pseudo, results, summary)
        results[name], model = train_one(model_config, data, folder, pseudo, unlabelled)
        if config.export and name == config.model:
            results[name]["exports"] = export_lesson_model(model, data, folder)
        if name == teacher:
            members.append(teacher_predictions(model, data, unlabelled))
            pseudo = pseudo_labelled(config, data, unlabelled, members[0][0],
                                     f"the {TEACHERS[teacher]} model")
        summary.append(summary_line(name, results[name]))
    training.finish_run(run_, config, results, summary)
    return 0


def summary_line(name, result):
    """A trained model's line of the run's summary table."""
    return {"model": name, "metric": "test_accuracy", "value": result["test_accuracy"],
            "params": result["params"], "train_time_s": result["train_time_s"]}


def export_lesson_model(model, data, folder):
    """The trained model in every format Keras exports, each file scored on the test reviews
    (`common/export.py: export_text_classifier`); the table goes to exports.md."""
    reviews, labels = zip(*[(x.numpy(), y.numpy()) for x, y in data.test], strict=True)
    rows = export.export_text_classifier(model, folder, np.concatenate(reviews), np.concatenate(labels))
    print(export.write_table(rows, folder))
    return rows


# %% Predict with a finished run
def add_predict_arguments(parser):
    parser.add_argument("reviews", nargs="*", help="review texts")
    parser.add_argument("--run", required=True, help="a finished imdb run folder (holds model.keras)")
    parser.add_argument("--file", help="a text file with one review per line")


def predict(args):
    """Print the sentiment and P(positive) of each review with a trained run's model (the run is only
    read)."""
    reviews = list(args.reviews)
    if args.file:
        reviews += trained.read_review_lines(args.file)
    if not reviews:
        raise UserError("no reviews given: pass texts as arguments or --file with one review per line.")
    blank = next((i for i, review in enumerate(reviews, start=1) if not review.strip()), None)
    if blank is not None:  # a model scores even "" (0.5): refuse it instead of printing a made-up label
        raise UserError(f"review {blank} is empty or blank; expected the text of a review.")
    trained.open_run(args.run, ImdbConfig.TASK)
    model_path = Path(args.run) / "model.keras"
    model = trained.load_model(model_path)
    trained.expect_input(model, model_path,
                         model.inputs[0].dtype == "string" and model.output_shape[1:] == (1,),
                         "raw review strings in, P(positive) out")
    probabilities = model.predict(imdb.string_batch(reviews), verbose=0)[:, 0]
    for review, p in zip(reviews, probabilities.tolist(), strict=True):
        label = "positive" if p > 0.5 else "negative"
        print(f"{label}\t{p:.3f}\t{trained.shown(review)}")
    return 0


# %% Things to try
# Models: `--model lstm|gru|bilstm|bilstm_attention|bigru_pool`, `--num-layers`, `--units`, `--dropout`,
# `--recurrent-dropout`, `--clipnorm`; with `--model bilstm_attention`, look at attention.png and
# attention.html in the run folder. Data: `--source keras` reads the same reviews from
# `keras.datasets.imdb` (integer sequences decoded back to words), `--source tfds` from TensorFlow Datasets'
# `imdb_reviews`, with the same validation carving and models; `--sequence-length 600`.
#
# The n-gram reference beats every plain recurrent model here: every word and every hashed bigram gets a
# vector and the review is their mean. On reviews this long, which phrases occur says more than their order.
# What closes most of the gap, `--config recipes/imdb_bigru_bigrams.json`: give the recurrent network the
# bigram vectors too (`--bigram-buckets`: each word's vector plus that of the bigram ending there), read more
# tokens, and pool every state of the BiGRU (max and mean) instead of keeping the last (`--bigram-buckets 0`
# shows what the bigrams add).
#
# NBSVM (Wang & Manning 2012), `--config recipes/imdb_nbsvm.json`: each review becomes a sparse multi-hot
# vector over the most frequent 1- to 3-grams, each n-gram is multiplied by its naive-Bayes log-count ratio
# r = log((p / |p|_1) / (q / |q|_1)), p and q its smoothed counts in positive and negative training reviews,
# and a logistic regression reads the result. Each n-gram enters already weighted by its evidence, so a
# phrase seen a handful of times in one class matters from the first step while frequent, neutral n-grams
# are scaled towards zero; the regression only corrects that prior, and a few epochs suffice. Compare with
# `--no-nb-scaling` (the plain regression on the same n-grams), and with scikit-learn's TF-IDF and logistic
# regression: `python -m benchmarks.imdb --config recipes/imdb_nbsvm.json`.
#
# The unlabelled reviews. The BiGRU memorises its labelled reviews within two epochs, so more text helps more
# than more tuning. Self-training (`--unlabelled 50000`, `--config recipes/imdb_bigru_selftrained.json`): the
# n-gram model labels the unlabelled reviews with its P(positive) and the BiGRU learns from both; it passes
# its teacher, since it reads word order the teacher cannot. A student learns what its teacher's labels say,
# so the teacher sets its ceiling: `--teacher nbsvm` (`--config recipes/imdb_bigru_nbsvm_teacher.json`, and
# `--epochs 3`, chosen on validation) lets the stronger NBSVM label them, for the best recurrent model here,
# still short of NBSVM itself: it reads only the first tokens of each review and learns the teacher's
# mistakes too. A second round (`--config recipes/imdb_bigru_nbsvm_two_rounds.json`; born-again networks,
# Furlanello et al. 2018) lets NBSVM and the first student label the reviews again; measured, their mean is
# not a better teacher than NBSVM alone. Pretraining (`--pretrain-epochs`, Dai & Le 2015;
# `--config recipes/imdb_bigru_pretrained.json`, and `recipes/imdb_bigru_pretrained_nbsvm_teacher.json` with
# NBSVM's labels) teaches the BiGRU to predict words before it sees a label; sized for a CPU (one epoch, short
# reviews, a small vocabulary) it lowers the result, likely because fine-tuning at the full learning rate
# starts from layers pulled towards word prediction (Dai & Le pretrain far longer; ULMFiT fine-tunes gently).
# The table "What the 50,000 unlabelled reviews add to the BiGRU" of benchmarks/RESULTS.md sets these side
# by side, with the time of each.
main = task_main(ImdbConfig, train, __doc__, commands={"predict": (add_predict_arguments, predict)})

if __name__ == "__main__":
    run(main)
