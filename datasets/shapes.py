"""Shapes: a captioning data set this project draws itself (`--dataset shapes`).

Each image holds two different coloured shapes and its caption names them and where they are ("a small red
circle above a large blue square"), so a model's attention can be checked: it should land on the shape being
named (`boxes.json` says where each one is). The images are written to the cache as PNG files with a captions
CSV, and read back through the same loader as Flickr8k (`datasets/flickr8k.py: load`).
"""

import csv
import json
from pathlib import Path

import numpy as np

from common.data_root import cache_root, fill_once

COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (50, 90, 230), "yellow": (235, 210, 40)}
SHAPES = ("circle", "square", "triangle")
SIZES = {"small": 0.09, "large": 0.18}  # radius as a fraction of the image side


def draw_shape(draw, shape, centre, radius, colour):
    """Draw one filled shape.

    Args:
        draw: a `PIL.ImageDraw.Draw` of the image.
        shape: one of SHAPES.
        centre: (x, y) of the shape's centre, in pixels.
        radius: half the shape's width, in pixels.
        colour: the fill colour, as PIL takes it.
    """
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


def generate(count, seed=0, size=64):
    """The folder of the shapes data set (`images/`, `captions.csv`, `boxes.json`), written into the cache
    once per count/seed/size."""
    return fill_once(cache_root() / "shapes" / f"n{count}-seed{seed}-{size}px", "shapes 1",
                     lambda partial: make_shapes(partial, count, seed, size))
