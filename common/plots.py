"""PNG figures every lesson writes: learning curves and confusion matrices (matplotlib, no screen needed)."""

import matplotlib

matplotlib.use("Agg")  # files only: works on servers and in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def learning_curves(history, path, title=None):
    """One panel per metric (loss, accuracy, ...), training and validation on the same axes."""
    metrics = [m for m in history if not m.startswith("val_") and m != "learning_rate"]
    if not metrics:
        return
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        epochs = np.arange(1, len(history[metric]) + 1)
        ax.plot(epochs, history[metric], label="train")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_matrix(matrix, class_names, path, title="Confusion matrix (test split)"):
    """Counts with rows = true class, columns = predicted class; the diagonal is what was right."""
    matrix = np.asarray(matrix)
    size = max(4.0, 0.5 * len(class_names) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ticks = np.arange(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > threshold else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _blank_grid(count, columns, cell_inches):
    """A figure with `count` panels in rows of `columns`, axes hidden; returns (figure, flat list of axes)."""
    columns = min(columns, count)
    rows = int(np.ceil(count / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(cell_inches[0] * columns, cell_inches[1] * rows),
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    return fig, list(axes.ravel())


def image_grid(images, titles, path, columns=8, title=None):
    """Small images in a grid, each with its caption, saved as a PNG.

    Args:
        images: uint8 images (n, height, width, channels).
        titles: one caption per image (e.g. true / predicted label).
        path: the PNG file to write.
        columns: images per row.
        title: a title over the whole grid; None: none.
    """
    if len(images) == 0:
        return
    fig, axes = _blank_grid(len(images), columns, (1.7, 1.9))
    for ax, image, caption in zip(axes, images, titles):
        ax.imshow(np.asarray(image).squeeze(), cmap="gray" if np.asarray(image).shape[-1] == 1 else None)
        ax.set_title(caption, fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def captioned_images(images, captions, path, columns=4, title=None):
    """Images with several lines of text over each, saved as a PNG.

    Args:
        images: the images (n, height, width, channels), 0..255.
        captions: one text per image, its lines separated by newlines (generated and reference captions).
        path: the PNG file to write.
        columns: images per row.
        title: a title over the whole grid; None: none.
    """
    import textwrap

    if len(images) == 0:
        return
    fig, axes = _blank_grid(len(images), columns, (3.6, 4.4))
    for ax, image, text in zip(axes, images, captions):
        ax.imshow(np.asarray(image).astype("uint8"))
        lines = [textwrap.fill(line, 44) for line in text.split("\n")]
        ax.set_title("\n".join(lines), fontsize=7, loc="left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def attention_maps(image, words, weights, path, columns=5):
    """One panel per generated word: the image with that word's attention weights laid over it.

    Args:
        image: the input image (height, width, channels), 0..255.
        words: the generated words.
        weights: (words, positions) over a square grid of positions (7x7 for EfficientNet at 224 pixels),
            stretched over the image as a smooth heat map.
        path: the PNG file to write.
        columns: panels per row.
    """
    image = np.asarray(image).astype("uint8")
    grid = int(round(np.sqrt(weights.shape[-1])))
    height, width = image.shape[:2]
    fig, axes = _blank_grid(len(words) + 1, columns, (2.4, 2.5))
    axes[0].imshow(image)
    axes[0].set_title("input", fontsize=9)
    for ax, word, weight in zip(axes[1:], words, weights):
        ax.imshow(image)
        ax.imshow(weight.reshape(grid, grid), cmap="inferno", alpha=0.6, interpolation="bilinear",
                  extent=(0, width, height, 0))
        ax.set_title(word, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
