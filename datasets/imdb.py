"""IMDB reviews (the Large Movie Review Dataset, Maas et al. 2011) -> tf.data string batches, and the
TextVectorization that turns raw text into token ids (or n-gram counts) inside the model.

`load(config)` reads `--source`: the aclImdb review files (the data root's `imdb/`, the Keras cache or the
official archive, downloaded once and checked against its published SHA-256), `keras.datasets.imdb`'s integer
sequences decoded back to words, or TensorFlow Datasets' `imdb_reviews` (`common/tfds_data.py`).

The folder layout is the Large Movie Review Dataset's (`<split>/<class>/*.txt`); `class_names` picks the
labelled sub-folders, so `train/unsup/` (50,000 unlabelled reviews) is never read as a class; it is read
only on request, by `unlabelled_reviews`, for self-training (`with_pseudo_labels`).

Standardisation: lower-case, HTML line breaks (`<br />`), Unicode separators and control characters to
spaces, punctuation stripped, and bytes that are not valid UTF-8 replaced by U+FFFD instead of failing
mid-epoch. It is a registered function, so a saved model carries it and takes raw strings.
"""

import dataclasses
import os
import re
import stat
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from common.data_root import download, extract_once, find_dataset
from common.errors import UserError, printable

CLASS_NAMES = ["neg", "pos"]
ARCHIVE_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
# Its SHA-256 as TensorFlow Datasets publishes it (imdb_reviews/checksums.tsv, 84,125,825 bytes): a corrupted
# or altered download is refused.
ARCHIVE_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"

PUNCTUATION = re.escape("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~")


@keras.saving.register_keras_serializable(package="keras_tutorials")
def standardize_review(text):
    text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
    text = tf.strings.lower(text, encoding="utf-8")
    text = tf.strings.regex_replace(text, r"<br\s*/?>", " ")
    # Unicode separators and control/format characters (U+0085, U+2028, zero-width space...) become spaces:
    # the split is on ASCII whitespace only, and a word holding a line separator would break the saved
    # vocabulary file into two lines (a model with such a word in its vocabulary fails to load).
    text = tf.strings.regex_replace(text, r"[\p{Z}\p{Cc}\p{Cf}]", " ")
    return tf.strings.regex_replace(text, f"[{PUNCTUATION}]", " ")


@dataclasses.dataclass
class Splits:
    """Batched (text, label) datasets and what the model factory needs to know."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    class_names: list
    source: object = None  # the aclImdb folder read, or the name of the copy (keras.datasets, TFDS)
    note: str = ""
    vectorizer: keras.layers.TextVectorization = None  # set per model: its sequence length may differ


def load(config):
    """The labelled splits of `config.source`; `source` says where they came from (the aclImdb folder, or the
    Keras or TFDS copy's name)."""
    if config.source in ("keras", "tfds"):  # in-memory texts and labels
        if config.source == "keras":
            reviews, where = keras_reviews(), "keras.datasets.imdb"
        else:
            from common import tfds_data

            reviews, where = tfds_data.imdb_texts(config.data_dir), "TensorFlow Datasets imdb_reviews"
        splits = array_review_datasets(*reviews, config.batch_size, config.val_fraction, config.split_seed,
                                       CLASS_NAMES, config.max_batches)
    else:
        where = find_reviews(config.data_dir)
        splits = review_datasets(where, config.batch_size, config.val_fraction, config.split_seed,
                                 CLASS_NAMES, config.max_batches)
    splits.source = where
    return splits


def find_reviews(data_dir=None):
    """The extracted `aclImdb/` folder: used in place if the data root has it, else extracted once.

    The tree is checked here, before a lesson makes its run folder: every labelled split and class is there
    and every review file can be read (`check_tree`). An archive is checked the same way once unpacked, before
    its tree replaces the cached one, so an archive holding something else leaves a good cache as it was.
    """
    # Online users: the official archive into the Keras cache, checked against its hash; offline: not found.
    folder = find_dataset("imdb", data_dir, fallback=lambda: download(ARCHIVE_URL, ARCHIVE_SHA256, "imdb"))
    if (folder / "aclImdb").is_dir():
        root = folder / "aclImdb"
        check_tree(root)
        return root
    archive = folder / "aclImdb.tar.gz"
    if not archive.is_file():
        archive = folder / "aclImdb_v1.tar.gz"
    if not archive.is_file():
        raise UserError(f"{folder} has neither aclImdb/ nor aclImdb.tar.gz; expected the IMDB reviews there.")

    def check_unpacked(unpacked):  # (named as archive:member: the temporary folder's path means nothing)
        if not (unpacked / "aclImdb").is_dir():
            raise UserError(f"{archive} does not contain an aclImdb/ folder; expected the IMDB reviews "
                            "archive (the cache was left as it was).")
        check_tree(unpacked / "aclImdb", shown=f"{archive}:aclImdb")

    official = archive.name == ARCHIVE_URL.rsplit("/", 1)[-1]  # a kill mid-download leaves a short one
    root = extract_once(archive, "imdb", sha256=ARCHIVE_SHA256 if official else None,
                        check=check_unpacked) / "aclImdb"
    check_tree(root)  # (a reused cache may have been changed since it was unpacked)
    return root


def keras_reviews():
    """keras.datasets.imdb (the Keras cache, else a download) decoded back to text with its word index, so the
    same vectoriser and models read it. Its reviews were tokenised when it was made: lower-case, without
    punctuation or line breaks, so they read a little differently from the raw files."""
    try:
        (train_ids, train_labels), (test_ids, test_labels) = keras.datasets.imdb.load_data()
        word_index = keras.datasets.imdb.get_word_index()
    except Exception as error:  # noqa: BLE001 (offline, or a broken cache file: say which, stop)
        raise UserError("keras.datasets.imdb is neither in the Keras cache (~/.keras/datasets/imdb.npz) nor "
                        f"downloadable ({type(error).__name__}: {error}); use --source folder.") from None
    # load_data's defaults: 0 = padding, 1 = start of review, 2 = out of vocabulary, word of rank r = r + 3.
    words = {rank + 3: word for word, rank in word_index.items()}

    def decode(reviews):
        return [" ".join(words[i] for i in ids if i in words) for ids in reviews]

    return decode(train_ids), train_labels, decode(test_ids), test_labels


def check_tree(root, splits=("train", "test"), class_names=("neg", "pos"), shown=None):
    """Every split must hold a non-empty folder per class, and every review file in it must be readable; say
    which folder is missing or empty, or which file cannot be read. `shown` names the tree in messages
    (default: `root`)."""
    shown = shown or str(root)
    for split in splits:
        for name in class_names:
            folder = Path(root) / split / name
            where = f"{shown}/{split}/{name}"
            if not folder.is_dir():
                raise UserError(f"{where} is missing; expected {shown}/{split}/{{{','.join(class_names)}}}/ "
                                "with one .txt file per review.")
            if not review_files(folder, shown=where):
                raise UserError(f"{where} has no .txt files; expected one file per review.")


def review_files(folder, shown=None):
    """The review files Keras reads from `folder` (`*.txt`, any case, sub-folders included), each checked to
    be a readable file: a broken link or an unreadable file is named now, not as a traceback mid-training."""
    def unreadable(error):
        where = os.path.join(shown, os.path.relpath(error.filename, folder)) if shown else error.filename
        raise UserError(f"{printable(where)} cannot be read ({error.strerror}); expected a readable folder "
                        "of review files.")

    if not os.path.isdir(folder):
        return []
    found = []
    for parent, _, names in os.walk(folder, onerror=unreadable):
        for name in sorted(n for n in names if n.lower().endswith(".txt")):
            path = os.path.join(parent, name)
            shown_path = os.path.join(shown, os.path.relpath(path, folder)) if shown else path
            try:
                handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # (a FIFO must not block the check)
                try:
                    regular = stat.S_ISREG(os.fstat(handle).st_mode)
                finally:
                    os.close(handle)
            except OSError as error:
                if os.path.islink(path) and not os.path.exists(path):
                    raise UserError(f"{printable(shown_path)} is a broken link (its target "
                                    f"{printable(os.readlink(path))} does not exist); expected a readable "
                                    "review file, so fix or remove the link.") from None
                raise UserError(f"{printable(shown_path)} cannot be read ({error.strerror}); expected a "
                                "readable review file.") from None
            if not regular:
                raise UserError(f"{printable(shown_path)} is not a regular file; expected one review per "
                                ".txt file.")
            found.append(path)
    return found


def review_datasets(root, batch_size, val_fraction, seed, class_names=("neg", "pos"), max_batches=None):
    """train / validation / test datasets of (string, int label) batches from an aclImdb tree.

    Args:
        root: the aclImdb folder (`train/` and `test/`, one sub-folder of review files per class).
        batch_size: the reviews per batch.
        val_fraction: the share of the training reviews held out for validation.
        seed: seeds the validation split and the shuffles.
        class_names: the class folders, in label order.
        max_batches: keep only this many batches per split (smoke runs); None: all.
    """
    check_tree(root, class_names=class_names)
    common = dict(class_names=list(class_names), batch_size=batch_size, verbose=False)
    train, val = keras.utils.text_dataset_from_directory(
        Path(root) / "train", validation_split=val_fraction, subset="both", seed=seed, **common)
    # The test files are shuffled once too (seeded, then cached), so a subset (`max_batches`) has both
    # classes.
    test = keras.utils.text_dataset_from_directory(Path(root) / "test", seed=seed, **common)
    return _cached_splits(train, val, test, class_names, seed, max_batches)


def array_review_datasets(train_texts, train_labels, test_texts, test_labels, batch_size, val_fraction, seed,
                          class_names=("neg", "pos"), max_batches=None):
    """The same splits from in-memory texts and labels (e.g. `keras.datasets.imdb` decoded back to words):
    validation carved from the training reviews by a seeded permutation, test order shuffled once.

    Args:
        train_texts: the training reviews (strings).
        train_labels: their integer labels.
        test_texts: the test reviews.
        test_labels: their integer labels.
        batch_size: the reviews per batch.
        val_fraction: the share of the training reviews held out for validation.
        seed: seeds the validation split and the shuffles.
        class_names: the class names, in label order.
        max_batches: keep only this many batches per split (smoke runs); None: all.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train_texts))
    n_val = int(round(len(order) * val_fraction))
    if n_val < 1 or n_val == len(order):
        raise UserError(f"--val-fraction {val_fraction} leaves no validation or no training reviews "
                        f"out of {len(order)}.")

    def batches(texts, labels, index):
        texts, labels = np.asarray(texts, dtype=object)[index], np.asarray(labels, dtype=np.int32)[index]
        return tf.data.Dataset.from_tensor_slices((texts.astype(str), labels)).batch(batch_size)

    train = batches(train_texts, train_labels, order[n_val:])
    val = batches(train_texts, train_labels, order[:n_val])
    test = batches(test_texts, test_labels, rng.permutation(len(test_texts)))
    return _cached_splits(train, val, test, class_names, seed, max_batches)


def _cached_splits(train, val, test, class_names, seed, max_batches):
    if max_batches:
        train, val, test = (d.take(max_batches) for d in (train, val, test))
    # The loader shuffled the reviews once; reshuffle the (cached) training batches every epoch.
    train = train.cache().shuffle(64, seed=seed).prefetch(tf.data.AUTOTUNE)
    val, test = (d.cache().prefetch(tf.data.AUTOTUNE) for d in (val, test))
    return Splits(train, val, test, list(class_names))


def unlabelled_reviews(root, limit, batch_size=256, seed=0):
    """Up to `limit` of the unlabelled reviews in `train/unsup/` (a seeded random choice), as cached string
    batches: the raw material of self-training, never mixed into the labelled splits."""
    folder = Path(root) / "train" / "unsup"
    count = min(limit, len(review_files(folder)))  # (no files, or no folder: 0)
    if not count:
        raise UserError(f"{folder} has no .txt files; learning from unlabelled reviews needs aclImdb's "
                        "train/unsup/ folder (50,000 reviews, one .txt file each).")
    texts = keras.utils.text_dataset_from_directory(folder, labels=None, batch_size=batch_size, shuffle=True,
                                                    seed=seed, verbose=False)
    texts = texts.unbatch().take(count).batch(batch_size).cache()
    return texts.apply(tf.data.experimental.assert_cardinality(-(-count // batch_size)))


def load_unlabelled(config, source):
    """`config.unlabelled` reviews for self-training: aclImdb's train/unsup/ files (`source`: the aclImdb
    folder `load` read), or TFDS's unsupervised split."""
    if config.source != "tfds":
        return unlabelled_reviews(source, config.unlabelled, seed=config.split_seed)
    from common import tfds_data

    texts = tfds_data.imdb_unlabelled(config.unlabelled, config.data_dir, seed=config.split_seed)
    return unlabelled_batches(texts)


def unlabelled_batches(texts, batch_size=256):
    """In-memory unlabelled texts (e.g. TFDS imdb_reviews' unsupervised split) as the same cached string
    batches `unlabelled_reviews` gives."""
    return tf.data.Dataset.from_tensor_slices(np.asarray(texts, dtype=object).astype(str)).batch(
        batch_size).cache()


def with_pseudo_labels(train, unlabelled, probabilities, batch_size, seed):
    """The labelled training reviews plus unlabelled ones labelled with a teacher's P(positive), shuffled
    together (seeded, every epoch) into batches. Labels become float32: the true ones stay 0 or 1, the
    teacher's are soft targets, which binary cross-entropy takes as they are (a confident teacher pulls
    harder than an unsure one).

    Args:
        train: the labelled training batches (string, int label).
        unlabelled: batches of unlabelled reviews (strings), in the order of `probabilities`.
        probabilities: the teacher's P(positive) for each unlabelled review.
        batch_size: the reviews per batch.
        seed: seeds the shuffle.
    """
    labelled = train.unbatch().map(lambda text, label: (text, tf.cast(label, tf.float32)))
    pseudo = tf.data.Dataset.zip(
        (unlabelled.unbatch(), tf.data.Dataset.from_tensor_slices(np.asarray(probabilities, np.float32))))
    # The size, stated up front, lets Keras know the epoch's length (unbatching hides it).
    size = sum(int(labels.shape[0]) for _, labels in train) + len(probabilities)
    combined = labelled.concatenate(pseudo).apply(tf.data.experimental.assert_cardinality(size))
    return combined.cache().shuffle(size, seed=seed).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def pretraining_texts(train, unlabelled=None):
    """The reviews a language model may read: the labelled training reviews' text (validation and test
    reviews are separate datasets and never enter) and, when given, the unlabelled ones."""
    texts = train.unbatch().map(lambda text, label: text)
    return texts if unlabelled is None else texts.concatenate(unlabelled.unbatch())


def language_model_batches(texts, vectorizer, length, vocabulary, backward_offset, batch_size, seed):
    """Batches (token ids, targets, weights) for `models/text.py: language_model`: the first `length` token
    ids of each review; targets the next word and (`backward_offset` > 0, a bidirectional model) the word
    that many before (0 = none there), ids of `vocabulary` or above mapped to 1 (unknown); weights 1 where
    a target is a word. Shuffled (seeded) every epoch."""
    def targets(ids):
        ids = tf.cast(ids[:, :length], tf.int32)
        ids_in_vocabulary = tf.where(ids < vocabulary, ids, tf.ones_like(ids))
        ids_in_vocabulary = tf.where(ids > 0, ids_in_vocabulary, tf.zeros_like(ids))
        wanted = [tf.pad(ids_in_vocabulary[:, 1:], [[0, 0], [0, 1]])]
        if backward_offset:
            wanted.append(tf.pad(ids_in_vocabulary[:, :-backward_offset], [[0, 0], [backward_offset, 0]]))
        return ids, tuple(wanted), tuple(tf.cast(t > 0, tf.float32) for t in wanted)

    size = sum(1 for _ in texts)
    return (texts.cache().shuffle(size, seed=seed).batch(batch_size)
            .map(lambda batch: targets(vectorizer(batch)), num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def adapt_vectorizer(train, vocabulary_size, sequence_length):
    """A TextVectorization adapted on the training texts only (never validation or test): each review
    becomes `sequence_length` token ids (0 = padding, at the end; 1 = out of vocabulary)."""
    layer = keras.layers.TextVectorization(max_tokens=vocabulary_size, standardize=standardize_review,
                                           output_sequence_length=sequence_length, name="vectorize")
    layer.adapt(train.map(lambda text, label: text))
    return layer


NGRAM_COUNT_CHUNK = 4096  # reviews counted at once: fewer, larger merges, at about 1 GB of n-gram strings


def ngram_vocabulary(train, ngrams, max_tokens):
    """The `max_tokens` most frequent 1- to `ngrams`-grams of the training texts, most frequent first (ties:
    first seen first), split into n-grams exactly as `TextVectorization(standardize=standardize_review,
    ngrams=ngrams)` splits a review.

    Counted with `tf.unique_with_counts` per chunk of reviews and once over the chunks' results, instead of
    `TextVectorization.adapt`: with trigrams the training reviews hold millions of distinct n-grams, and
    adapt's hash-table update per batch and its final sort of every n-gram string took longer than the
    linear model's whole training here; counting this way is several times faster."""
    widths = tuple(range(1, ngrams + 1))

    def count(texts):
        words = tf.strings.split(standardize_review(texts))
        unique, _, counts = tf.unique_with_counts(tf.strings.ngrams(words, widths, separator=" ").flat_values)
        return unique, counts

    chunks = train.map(lambda text, label: text).unbatch().batch(NGRAM_COUNT_CHUNK)
    tokens, counts = [], []
    for chunk_tokens, chunk_counts in chunks.map(count, num_parallel_calls=tf.data.AUTOTUNE):
        tokens.append(chunk_tokens)
        counts.append(chunk_counts)
    unique, index = tf.unique(tf.concat(tokens, 0))
    totals = tf.math.unsorted_segment_sum(tf.concat(counts, 0), index, tf.size(unique)).numpy()
    return tf.gather(unique, np.argsort(-totals, kind="stable")[:max_tokens]).numpy()


def ngram_vectorizer(train, ngrams, vocabulary_size, output_mode="multi_hot"):
    """A TextVectorization from raw text to one sparse vector per review over the `vocabulary_size` - 1 most
    frequent n-grams of the training texts (never validation or test) and index 0 for all others:
    `multi_hot` (1 where the n-gram occurs) or `count` (how often)."""
    layer = keras.layers.TextVectorization(standardize=standardize_review, ngrams=ngrams,
                                           output_mode=output_mode, sparse=True, name="vectorize")
    # Set afterwards, not passed to the constructor: the vocabulary is then saved as a file beside the model
    # (Keras would otherwise write all of it into the model's JSON config).
    layer.set_vocabulary(ngram_vocabulary(train, ngrams, vocabulary_size - 1))
    return layer


def vectorized(dataset, vectorizer, seed=None):
    """(text, label) batches as (vector, label) batches, vectorised once (then cached); with `seed`, the
    batches come in a new seeded order in every pass."""
    def vectorize(text, label):  # (TextVectorization's sparse vectors hold int64 values)
        return tf.cast(vectorizer(text), tf.float32), label

    batches = dataset.map(vectorize, num_parallel_calls=tf.data.AUTOTUNE).cache()
    if seed is not None:
        batches = batches.shuffle(1_000_000, seed=seed)  # a buffer larger than any split: a full shuffle
    return batches.prefetch(tf.data.AUTOTUNE)


def class_counts(features, size):
    """Per feature, its total over the positive and over the negative examples of (sparse vector, label)
    batches; a soft label p (a teacher's P(positive)) counts p towards positive and 1 - p towards negative."""
    totals = np.zeros((size, 2))
    for vectors, labels in features:
        labels = tf.reshape(tf.cast(labels, tf.float32), (-1, 1))
        both = tf.concat([labels, 1 - labels], 1)
        totals += tf.sparse.sparse_dense_matmul(vectors, both, adjoint_a=True).numpy()
    return totals[:, 0], totals[:, 1]


def string_batch(texts):
    """A batch of raw strings shaped like the models' input, (n, 1)."""
    return tf.constant([[t] for t in texts])
