"""Flickr8k and the other captioning data sets: an image folder plus a captions file -> images, tokenised
captions and splits, then the vocabulary, the caption batches and the caption metrics the captioning lesson
uses (`caption_scores`: the COCO caption toolkit; `caption_diversity`: repetition and diversity).

`load(config)` reads the lesson's `--dataset`: `flickr8k` (`flickr8k/` in the data root: 8,091 photos with
5 captions each), `shapes` (drawn by this project: `datasets/shapes.py`) or `folder` (any image folder with a
captions file); all three go through the same loader (`load_captions`).

Two caption formats are read, told apart by their first line:

* the Flickr8k token file, one `<image>#<n>\\t<caption>` line per caption (5 per image);
* a CSV with a header naming `image` and `caption` columns (the Kaggle Flickr8k copy, COCO conversions).

Splits come from name lists when there are some (Flickr8k's official 6000/1000/1000 `Flickr_8k.*Images.txt`),
otherwise from a seeded shuffle of the image names. Captions whose image is not in the folder are counted,
reported and skipped, so a partial image folder still trains.
"""

import csv
import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from common.data_root import extract_once, find_dataset
from common.errors import UserError
from datasets import shapes

START, END = "<start>", "<end>"
_NOT_WORD = re.compile(r"[^a-z0-9 ]+")


def standardize_caption(text):
    """Lower-case words without punctuation: the form the vocabulary, the model and BLEU all see."""
    return _NOT_WORD.sub(" ", str(text).lower().replace("'", "")).split()


@dataclasses.dataclass
class Splits:
    """Image files, their captions (lists of words) and which images belong to which split."""

    paths: list  # one image file per image
    captions: list  # per image: a list of captions, each a list of words
    indices: dict  # "train" / "val" / "test" -> sorted array of image indices
    source: Path = None  # the folder the images came from
    note: str = ""  # what a reader of the numbers should know (skipped captions, re-encoded images)

    # The contract's three parts (datasets/__init__.py): the indices of each split's images.
    train = property(lambda self: self.indices["train"])
    val = property(lambda self: self.indices["val"])
    test = property(lambda self: self.indices["test"])

    def split_paths(self, split):
        return [self.paths[i] for i in self.indices[split]]

    def used(self):
        """The indices of the images some split uses, sorted."""
        return np.unique(np.concatenate(list(self.indices.values())))


def load(config):
    """The lesson's `--dataset` (flickr8k, shapes or folder), split; `max_images` keeps that many images
    per split."""
    if config.dataset == "flickr8k":
        data = load_flickr8k(config.data_dir)
    elif config.dataset == "shapes":
        folder = shapes.generate(config.shapes_count, config.seed, config.shapes_size)
        data = load_captions(folder / "images", folder / "captions.csv", seed=config.split_seed)
    else:
        if not (config.images and config.captions):
            raise UserError("--dataset folder needs --images (an image folder) and --captions (a captions "
                            "file).")
        data = load_captions(config.images, config.captions, None, config.val_fraction, config.test_fraction,
                             config.split_seed)
    if config.max_images:
        data.indices = {split: indices[:config.max_images] for split, indices in data.indices.items()}
    return data


# ------------------------------------------------------------------------------------------- caption files
def read_captions(path):
    """{image file name: [raw caption, ...]} from a Flickr8k token file or an `image,caption` CSV."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"captions file {path} does not exist.")
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise UserError(f"captions file {path} is empty; expected '<image>#<n><TAB><caption>' lines "
                        "or a CSV with image and caption columns.")
    header = [h.strip().lower() for h in next(csv.reader([lines[0]]))]
    if "image" in header and "caption" in header:
        return _read_csv(path, lines, header)
    if "\t" in lines[0]:
        return _read_token_file(path, text)
    raise UserError(f"captions file {path} is neither a Flickr8k token file ('<image>#<n><TAB><caption>') "
                    "nor a CSV whose header names 'image' and 'caption' columns.")


def _read_token_file(path, text):
    captions = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        key, tab, caption = line.partition("\t")
        if not tab or not caption.strip() or not key.strip():
            raise UserError(f"{path} line {number} is not '<image>#<n><TAB><caption>': {line[:60]!r}.")
        captions.setdefault(key.rsplit("#", 1)[0].strip(), []).append(caption.strip())
    return captions


def _read_csv(path, lines, header):
    image_col, caption_col = header.index("image"), header.index("caption")
    captions = {}
    for number, row in enumerate(csv.reader(lines[1:]), 2):
        if (len(row) <= max(image_col, caption_col) or not row[image_col].strip()
                or not row[caption_col].strip()):
            raise UserError(f"{path} row {number} has no image name or no caption: {row!r}.")
        captions.setdefault(row[image_col].strip(), []).append(row[caption_col].strip())
    return captions


def read_name_list(path):
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------- loading
def load_captions(images_dir, captions_file, split_lists=None, val_fraction=0.1, test_fraction=0.1, seed=42):
    """Match captions to the image files in `images_dir`; split by name lists or by a seeded shuffle.

    Args:
        images_dir: the folder of image files.
        captions_file: the captions, in one of the formats `read_captions` reads.
        split_lists: split name -> a file of image names (one per line), e.g. Flickr8k's official lists;
            None: a seeded shuffle splits the images.
        val_fraction: the share of images for validation, without split lists.
        test_fraction: the share of images for test, without split lists.
        seed: seeds the shuffle.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise UserError(f"image folder {images_dir} does not exist.")
    raw = read_captions(captions_file)
    on_disk = {p.name for p in images_dir.iterdir() if p.is_file()}
    names = sorted(n for n in raw if n in on_disk)
    missing = [n for n in raw if n not in on_disk]
    if not names:
        raise UserError(f"none of the {len(raw)} images named in {captions_file} is in {images_dir}.")
    index = {name: i for i, name in enumerate(names)}
    if split_lists:
        splits = {}
        for split, list_file in split_lists.items():
            listed = read_name_list(list_file)
            splits[split] = np.array(sorted(index[n] for n in listed if n in index), dtype="int64")
    else:
        order = np.random.default_rng(seed).permutation(len(names))
        n_test = int(round(len(names) * test_fraction))
        n_val = int(round(len(names) * val_fraction))
        splits = {"test": np.sort(order[:n_test]), "val": np.sort(order[n_test:n_test + n_val]),
                  "train": np.sort(order[n_test + n_val:])}
    empty = [split for split in ("train", "val", "test") if not len(splits.get(split, ()))]
    if empty:
        raise UserError(f"the {', '.join(empty)} split(s) of {captions_file} have no images in {images_dir}.")
    note = (f"{len(missing)} captioned image(s) not in the image folder were skipped "
            f"({sum(len(raw[n]) for n in missing)} captions)" if missing else "")
    captions = [[standardize_caption(c) for c in raw[name]] for name in names]
    return Splits([images_dir / n for n in names], captions, splits, source=images_dir, note=note)


def load_flickr8k(data_dir=None):
    """Flickr8k from the data root: the token file, the official split lists and the images.

    The images are `Flicker8k_224.tar` (extracted once into the cache), or an extracted `Flicker8k_Dataset/`
    (the original distribution) or `Images/` (the Kaggle copy) folder.
    """
    folder = find_dataset("flickr8k", data_dir, required=["Flickr8k.token.txt"])
    if (folder / "Flicker8k_224.tar").is_file():
        images = extract_once(folder / "Flicker8k_224.tar", "flickr8k-224") / "Flicker8k_Dataset"
    else:
        images = next((folder / d for d in ("Flicker8k_Dataset", "Images") if (folder / d).is_dir()), None)
        if images is None:
            raise UserError(f"{folder} has no images; expected Flicker8k_224.tar or a Flicker8k_Dataset/ "
                            "folder.")
    lists = {split: folder / f"Flickr_8k.{name}Images.txt"
             for split, name in (("train", "train"), ("val", "dev"), ("test", "test"))}
    lists = lists if all(p.is_file() for p in lists.values()) else None
    data = load_captions(images, folder / "Flickr8k.token.txt", lists)
    data.source = folder
    if (folder / "Flicker8k_224.tar").is_file():
        data.note = "; ".join(filter(None, [data.note, "images are 224x224 JPEG re-encodings"]))
    return data


# ---------------------------------------------------------------------------------------------- vocabulary
def build_vocabulary(captions, min_count):
    """Words seen at least `min_count` times in the training captions, most frequent first, plus start/end."""
    from collections import Counter

    counts = Counter(word for per_image in captions for caption in per_image for word in caption)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return [START, END] + [w for w in words if w not in (START, END)]


def make_vectorizer(vocabulary, max_words):
    """A TextVectorization over a fixed vocabulary: `<start> words <end>` -> `max_words + 2` ids
    (0 = padding, 1 = out of vocabulary). Captions are standardised in Python first, so it only splits."""
    import keras

    return keras.layers.TextVectorization(standardize=None, split="whitespace", vocabulary=vocabulary,
                                          output_sequence_length=max_words + 2, name="caption_vectorizer")


def caption_text(words, max_words):
    return " ".join([START] + list(words)[:max_words] + [END])


def vectorize(vectorizer, data, indices, max_words):
    """(image index per caption, token ids per caption) for the images `indices`, every caption of each."""
    image_index, texts = [], []
    for i in indices:
        for words in data.captions[i]:
            image_index.append(i)
            texts.append(caption_text(words, max_words))
    tokens = np.asarray(vectorizer(np.array(texts)), dtype="int32")
    return np.asarray(image_index, dtype="int64"), tokens


def fingerprint(paths, extra=""):
    """A short key that changes when the list of files (names, sizes, times) or `extra` changes."""
    digest = hashlib.sha1(extra.encode())
    for path in paths:
        stat = Path(path).stat()
        digest.update(json.dumps([str(path), stat.st_size, int(stat.st_mtime)]).encode())
    return digest.hexdigest()[:12]


# ------------------------------------------------------------------------------------------------ batches
def caption_batches(inputs, image_index, tokens, batch_size, shuffle, seed=0):
    """A tf.data pipeline of ((encoder input, tokens[:-1]), tokens[1:]) batches, one row per caption.

    The encoder inputs (cached features or small images) are held once per image and gathered per batch,
    so the five captions of an image do not hold five copies. With `shuffle` the order changes every epoch
    (seeded: the same seed gives the same batches). tf.data rather than a keras.utils.PyDataset: the batches
    are assembled in TensorFlow's threads, not Python's, which halved the time per step here.

    Args:
        inputs: the encoder input of every image (cached features or small images), indexed by image.
        image_index: the image of each caption (`vectorize`).
        tokens: the token ids of each caption, <start> to <end> and padding (`vectorize`).
        batch_size: the captions per batch.
        shuffle: reshuffle the captions every epoch (training).
        seed: seeds the shuffle.
    """
    import tensorflow as tf

    table = tf.constant(inputs)
    dataset = tf.data.Dataset.from_tensor_slices((image_index, tokens))
    if shuffle:
        dataset = dataset.shuffle(len(tokens), seed=seed, reshuffle_each_iteration=True)

    def assemble(index, batch_tokens):
        encoder_input = tf.cast(tf.gather(table, index), "float32")
        return (encoder_input, batch_tokens[:, :-1]), batch_tokens[:, 1:]

    return dataset.batch(batch_size).map(assemble, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def bleu_scores(references, hypotheses):
    """Corpus BLEU-1..4 (NLTK's corpus_bleu, no smoothing: the standard corpus-level score).

    `references`: per image a list of reference captions (lists of words); `hypotheses`: one list of words
    per image.
    """
    import warnings

    from nltk.translate.bleu_score import corpus_bleu

    weights = [(1.0,), (0.5, 0.5), (1 / 3, 1 / 3, 1 / 3), (0.25, 0.25, 0.25, 0.25)]
    with warnings.catch_warnings():  # "no 4-gram overlaps": an untrained model's BLEU is simply 0
        warnings.simplefilter("ignore")
        return {f"bleu{n}": round(float(corpus_bleu(references, hypotheses, weights=w)), 4)
                for n, w in enumerate(weights, 1)}


# ------------------------------------------------------------------------------------------ caption metrics
# The COCO caption toolkit (pycocoevalcap 1.2): BLEU, ROUGE-L and CIDEr-D are Python on tokenised text; its
# PTB tokenizer and METEOR 1.5 are Java programs shipped in the wheel; SPICE needs Stanford CoreNLP models
# that it downloads on first use.
COCO_TOOLKIT = "pycocoevalcap 1.2"
# What the PTB tokenizer changes in captions that `standardize_caption` already lower-cased and stripped of
# punctuation (run on every Flickr8k caption, only "cannot" changed; the others are its documented splits).
_PTB_SPLITS = {"cannot": ["can", "not"], "gonna": ["gon", "na"], "gotta": ["got", "ta"],
               "wanna": ["wan", "na"], "gimme": ["gim", "me"], "lemme": ["lem", "me"]}
_METEOR = {}  # one METEOR process per Python process: it loads its paraphrase table (~10 s) once
NO_JAVA = "needs a Java runtime and `java` is not on PATH (apt-get install default-jre-headless)"


def caption_scores(references, hypotheses):
    """The COCO caption toolkit's scores of generated captions, with NLTK's corpus BLEU beside them.

    Returns a flat dict: `bleu1`..`bleu4`, `rouge_l`, `cider_d` (pycocoevalcap's Cider is CIDEr-D: clipped
    n-gram counts and a length penalty; on its scale, which papers often quote x100), `meteor` (None without
    Java), `spice`
    (None: see `unavailable`), `nltk_bleu1`..`nltk_bleu4` (NLTK corpus BLEU, the cross-check), `tokenizer`
    (how the captions were tokenised) and `unavailable` ({metric: why it is None}).

    With Java the captions go through the toolkit's PTB tokenizer, as COCO's evaluation does; without it they
    are tokenised in Python the way the PTB tokenizer treats `standardize_caption`'s output (which is already
    lower-case and without punctuation).

    Args:
        references: per image, its reference captions, each a list of words (standardised).
        hypotheses: per image, the generated caption, a list of words.
    """
    if len(references) != len(hypotheses) or not hypotheses:
        raise ValueError(f"expected one generated caption per image and at least one image, got "
                         f"{len(hypotheses)} captions for {len(references)} images")
    if any(not captions for captions in references):
        raise ValueError("every image needs at least one reference caption")
    cross_check = {f"nltk_{k}": v for k, v in bleu_scores(references, hypotheses).items()}
    names = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider_d", "meteor", "spice")
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError:
        reason = f"{COCO_TOOLKIT} is not installed (pip install -r requirements.txt)"
        return {**dict.fromkeys(names), **cross_check, "tokenizer": None,
                "unavailable": dict.fromkeys(names, reason)}
    java = shutil.which("java")
    texts = ([" ".join(words) for captions in references for words in captions]
             + [" ".join(words) for words in hypotheses])
    tokenizer = "PTB tokenizer (Stanford CoreNLP 3.4.1, the toolkit's)"
    try:
        tokens = _ptb_tokenize(texts, java) if java else None
    except (OSError, subprocess.SubprocessError, ValueError) as error:
        tokens, tokenizer = None, f"Python (the PTB tokenizer failed: {_first_line(error)})"
    if tokens is None:
        tokenizer = tokenizer if java else "Python (PTB rules; no Java)"
        tokens = [_python_tokenize(text) for text in texts]
    gts, res, position = {}, {}, 0
    for i, captions in enumerate(references):
        gts[i] = tokens[position:position + len(captions)]
        position += len(captions)
    res = {i: [text] for i, text in enumerate(tokens[position:])}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"bleu{n}": round(float(b), 4) for n, b in enumerate(bleu, 1)}
    scores["rouge_l"] = round(float(Rouge().compute_score(gts, res)[0]), 4)
    scores["cider_d"] = round(float(Cider().compute_score(gts, res)[0]), 4)
    unavailable = {}
    scores["meteor"], reason = _meteor(gts, res) if java else (None, NO_JAVA)
    if reason:
        unavailable["meteor"] = reason
    scores["spice"], unavailable["spice"] = None, _spice_unavailable(java)
    return {**scores, **cross_check, "tokenizer": tokenizer, "unavailable": unavailable}


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:200]


def _python_tokenize(text):
    """The PTB tokenizer's output for standardised text: lower-case words, punctuation dropped, its splits."""
    return " ".join(part for word in standardize_caption(text) for part in _PTB_SPLITS.get(word, [word]))


def _ptb_tokenize(texts, java):
    """The toolkit's PTB tokenizer (its jar, its flags, its punctuation list), one caption per line.

    Called directly rather than through `PTBTokenizer.tokenize`, which writes its temporary file into the
    installed package and lets Java's progress line through to the terminal.
    """
    import pycocoevalcap.tokenizer.ptbtokenizer as ptb

    jar = Path(ptb.__file__).parent / ptb.STANFORD_CORENLP_3_4_1_JAR
    with tempfile.TemporaryDirectory() as folder:
        lines = Path(folder) / "captions.txt"
        lines.write_text("".join(text.replace("\n", " ") + "\n" for text in texts), encoding="utf-8")
        done = subprocess.run([java, "-cp", str(jar), "edu.stanford.nlp.process.PTBTokenizer",
                               "-preserveLines", "-lowerCase", str(lines)],
                              capture_output=True, timeout=600, check=True)
    out = done.stdout.decode("utf-8").split("\n")
    if len(out) < len(texts):
        raise ValueError(f"it returned {len(out)} lines for {len(texts)} captions")
    return [" ".join(w for w in line.rstrip().split(" ") if w and w not in ptb.PUNCTUATIONS)
            for line in out[:len(texts)]]


def _meteor(gts, res):
    """(METEOR 1.5 through the toolkit, None) or (None, why it could not run). One Java process is started
    on first use and kept; a process that fails is stopped and the next call starts a new one."""
    from pycocoevalcap.meteor.meteor import Meteor

    try:
        if "scorer" not in _METEOR:
            _METEOR["scorer"] = Meteor()
        return round(float(_METEOR["scorer"].compute_score(gts, res)[0]), 4), None
    except (OSError, ValueError) as error:
        scorer = _METEOR.pop("scorer", None)
        if scorer is not None:  # its lock is still held after a failure: release it so __del__ can finish
            scorer.meteor_p.kill()
            if scorer.lock.locked():
                scorer.lock.release()
        return None, f"METEOR 1.5 (Java) failed: {_first_line(error) or type(error).__name__}"


def _spice_unavailable(java):
    """Why SPICE is not computed: it needs Java and Stanford CoreNLP 3.6.0, which the toolkit downloads."""
    if not java:
        return NO_JAVA
    import pycocoevalcap.spice.get_stanford_models as spice

    if not (Path(spice.SPICEDIR) / spice.SPICELIB / f"{spice.JAR}-models.jar").is_file():
        return (f"needs the Stanford CoreNLP models ({spice.CORENLP}), which {COCO_TOOLKIT} downloads from "
                "nlp.stanford.edu on first use; they are not installed and runs must work offline")
    return ("not run by the lesson: SPICE 1.0 parses every caption with Stanford CoreNLP in an 8 GB Java "
            "heap, slower than the rest of the evaluation together")


def caption_diversity(hypotheses):
    """Repetition and diversity of the generated captions (each a list of words), over the whole set.

    `repeated_bigram_share`: the share of captions in which some bigram occurs twice ("a dog and a dog");
    `vocabulary_used`: distinct words across all captions; `distinct_1` / `distinct_2`: distinct unigrams /
    bigrams over all unigrams / bigrams of all captions (0 when there are none).
    """
    def grams(words, n):
        return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]

    bigrams = [grams(list(words), 2) for words in hypotheses]
    repeated = sum(len(set(b)) < len(b) for b in bigrams)
    result = {"repeated_bigram_share": round(repeated / len(hypotheses), 4) if hypotheses else 0.0,
              "vocabulary_used": len({word for words in hypotheses for word in words})}
    for n in (1, 2):
        every = [g for words in hypotheses for g in grams(list(words), n)]
        result[f"distinct_{n}"] = round(len(set(every)) / len(every), 4) if every else 0.0
    return result
