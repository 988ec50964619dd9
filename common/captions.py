"""Captioning data: an image folder plus a captions file -> images, tokenised captions and splits.

Two caption formats are read, told apart by their first line:

* the Flickr8k token file, one `<image>#<n>\\t<caption>` line per caption (5 per image);
* a CSV with a header naming `image` and `caption` columns (the Kaggle Flickr8k copy, COCO conversions).

Splits come from name lists when there are some (Flickr8k's official 6000/1000/1000 `Flickr_8k.*Images.txt`),
otherwise from a seeded shuffle of the image names. Captions whose image is not in the folder are counted,
reported and skipped, so a partial image folder still trains.

`--dataset shapes` is a data set this project draws itself: two coloured shapes per image and a caption that
names them and where they are ("a small red circle above a large blue square"). It is written to the cache as
PNG files and a captions CSV and read back through the same loader as Flickr8k.
"""

import csv
import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np

from common.data_root import cache_root, extract_once, fill_once, find_dataset
from common.errors import UserError

START, END = "<start>", "<end>"
_NOT_WORD = re.compile(r"[^a-z0-9 ]+")


def standardize_caption(text):
    """Lower-case words without punctuation: the form the vocabulary, the model and BLEU all see."""
    return _NOT_WORD.sub(" ", str(text).lower().replace("'", "")).split()


@dataclasses.dataclass
class CaptionData:
    """Image files, their captions (lists of words) and which images belong to which split."""

    paths: list  # one image file per image
    captions: list  # per image: a list of captions, each a list of words
    splits: dict  # "train" / "val" / "test" -> sorted array of image indices
    note: str = ""

    def split_paths(self, split):
        return [self.paths[i] for i in self.splits[split]]


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
    raise UserError(f"captions file {path} is neither a Flickr8k token file ('<image>#<n><TAB><caption>') nor "
                    "a CSV whose header names 'image' and 'caption' columns.")


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
        if len(row) <= max(image_col, caption_col) or not row[image_col].strip() or not row[caption_col].strip():
            raise UserError(f"{path} row {number} has no image name or no caption: {row!r}.")
        captions.setdefault(row[image_col].strip(), []).append(row[caption_col].strip())
    return captions


def read_name_list(path):
    return [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------------- loading
def load_captions(images_dir, captions_file, split_lists=None, val_fraction=0.1, test_fraction=0.1, seed=42):
    """Match captions to the image files in `images_dir`; split by name lists or by a seeded shuffle.

    `split_lists` maps split names to files of image names (one per line), e.g. Flickr8k's official lists.
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
    return CaptionData([images_dir / n for n in names], captions, splits, note)


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
            raise UserError(f"{folder} has no images; expected Flicker8k_224.tar or a Flicker8k_Dataset/ folder.")
    lists = {split: folder / f"Flickr_8k.{name}Images.txt"
             for split, name in (("train", "train"), ("val", "dev"), ("test", "test"))}
    lists = lists if all(p.is_file() for p in lists.values()) else None
    data = load_captions(images, folder / "Flickr8k.token.txt", lists)
    if (folder / "Flicker8k_224.tar").is_file():
        data.note = "; ".join(filter(None, [data.note, "images are 224x224 JPEG re-encodings"]))
    return data


# -------------------------------------------------------------------------------------------------- shapes
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 90, 230), "yellow": (235, 210, 40)}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 0.09, "large": 0.18}  # radius as a fraction of the image side


def draw_shape(draw, shape, centre, radius, colour):
    x, y = centre
    if shape == "circle":
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colour)
    elif shape == "square":
        draw.rectangle([x - radius, y - radius, x + radius, y + radius], fill=colour)
    else:
        draw.polygon([(x, y - radius), (x - radius, y + radius), (x + radius, y + radius)], fill=colour)


def shapes_example(rng, size):
    """One image (PIL) with two different shapes, its caption (the first shape named is above or left of the
    second) and the two shapes' boxes (x0, y0, x1, y1) in the order the caption names them."""
    from PIL import Image, ImageDraw

    objects = []
    while len(objects) < 2:
        candidate = (rng.choice(list(SIZES)), rng.choice(list(COLOURS)), rng.choice(SHAPES))
        if not objects or candidate[1:] != objects[0][1:]:  # two shapes the caption can tell apart
            objects.append(candidate)
    vertical = rng.random() < 0.5
    image = Image.new("RGB", (size, size), (20, 20, 20))
    draw = ImageDraw.Draw(image)
    boxes = []
    for slot, (size_name, colour, shape) in enumerate(objects):
        radius = SIZES[size_name] * size
        margin = radius + 1
        half = (slot * size / 2 + margin, (slot + 1) * size / 2 - margin)  # own half along the split axis
        across = (margin, size - margin)
        along = rng.uniform(*half)
        other = rng.uniform(*across)
        centre = (other, along) if vertical else (along, other)
        draw_shape(draw, shape, centre, radius, COLOURS[colour])
        boxes.append([round(centre[0] - radius, 1), round(centre[1] - radius, 1),
                      round(centre[0] + radius, 1), round(centre[1] + radius, 1)])
    relation = "above" if vertical else "left of"
    caption = f"a {' '.join(objects[0])} {relation} a {' '.join(objects[1])}"
    return image, caption, boxes


def make_shapes(folder, count, seed=0, size=64):
    """Write `count` shape images (PNG), `captions.csv` and `boxes.json` (where each named shape is) into
    `folder`; the same seed gives the same files."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows, boxes = [], {}
    for i in range(count):
        image, caption, boxes[f"shape_{i:05d}.png"] = shapes_example(rng, size)
        name = f"shape_{i:05d}.png"
        image.save(folder / "images" / name)
        rows.append((name, caption))
    (folder / "boxes.json").write_text(json.dumps(boxes))
    with open(folder / "captions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "caption"])
        writer.writerows(rows)
    return folder


def load_shapes(count, seed=0, size=64, split_seed=42):
    """The shapes data set (generated into the cache once per count/seed/size), split 80/10/10."""
    folder = fill_once(cache_root() / "shapes" / f"n{count}-seed{seed}-{size}px", "shapes 1",
                       lambda partial: make_shapes(partial, count, seed, size))
    return load_captions(folder / "images", folder / "captions.csv", seed=split_seed)


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


# ----------------------------------------------------------------------------------------- batches, BLEU
def caption_batches(inputs, image_index, tokens, batch_size, shuffle, seed=0):
    """A tf.data pipeline of ((encoder input, tokens[:-1]), tokens[1:]) batches, one row per caption.

    The encoder inputs (cached features or small images) are held once per image and gathered per batch,
    so the five captions of an image do not hold five copies. With `shuffle` the order changes every epoch
    (seeded: the same seed gives the same batches). tf.data rather than a keras.utils.PyDataset: the batches
    are assembled in TensorFlow's threads, not Python's, which halved the time per step here.
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
