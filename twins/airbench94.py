"""airbench94 in plain PyTorch: the reference recipe, trained on this project's copy of CIFAR-10.

The CIFAR-10 lesson teaches airbench94 (Keller Jordan 2024, "94% on CIFAR-10 in 3.29 Seconds on a Single
GPU") as Keras layers, callbacks and a config (`recipes/cifar10_airbench94.json`). This module is the same
recipe the way the reference itself is written: one PyTorch training loop with the reference's hyperparameters
in its own conventions (a summed loss, PyTorch's coupled weight decay, parameter groups for the batch-norm
shifts, 9.9 epochs of full batches). It answers one question the Keras port cannot answer about itself: on
the same 46,000 JPEG training images and the same 4,000 lossless held-out originals, does the reference
algorithm score what the port scores? If it does, the port is faithful and the distance to 94 % lies in the
data and the hardware; if not, the difference is the port's.

    python -m twins.airbench94 --seed 0                 # one run; prints its numbers as JSON
    python -m twins.airbench94 --seed 0 --float32       # without bfloat16 autocast (slower)
    python -m benchmarks.cifar10 --twin                 # seeds 0, 1, 2: a row beside the Keras recipe's

Written in this project's own code after reading the paper and the reference (KellerJordan/cifar10-airbench,
legacy/airbench94.py). Where this loop differs from the reference, on purpose:
- it runs on the CPU in bfloat16 autocast with float32 weights (the reference keeps its weights in float16 on
  a GPU): bfloat16 is the half precision CPUs compute fast, and its 8-bit mantissa is too coarse to hold
  the weights themselves;
- the inputs are normalised by the training images' own channel statistics (the reference's constants are
  those of the 50,000 originals; the two differ in the third decimal);
- the data are the lesson's splits (`datasets/cifar10.py`): 46,000 training images, since the first 4,000
  are held out as lossless originals, so an epoch has 44 full batches of 1,024 instead of 48 (436 steps in
  all instead of 476).
Nothing is written but the data loader's cache (the extracted images, as for the lesson).
"""

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

if __package__ in (None, ""):  # `python twins/airbench94.py`: the project's packages are one folder up
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models.airbench import WHITEN_EPS, WHITEN_IMAGES, whitening_kernel  # noqa: E402


@dataclasses.dataclass
class Recipe:
    """airbench94's hyperparameters, in the reference's decoupled form (per 1,024 examples)."""

    epochs: float = 9.9
    batch_size: int = 1024
    lr: float = 11.5  # learning rate per 1,024 examples, decoupled from the momentum
    momentum: float = 0.85  # Nesterov
    weight_decay: float = 0.0153  # per 1,024 examples, decoupled from the learning rate
    bias_scaler: float = 64.0  # the batch-norm shifts learn this much faster (same decay)
    label_smoothing: float = 0.2
    whiten_bias_epochs: int = 3  # the whitening layer's bias trains this many epochs, then freezes
    warmup: float = 0.23  # fraction of the steps the triangle rises: 0.2 -> 1 -> 0.07 of the rate
    lookahead_every: int = 5
    lookahead_rate: float = 0.95
    translate: int = 2  # random translation by up to this many pixels (reflect padding)
    widths: tuple = (64, 256, 256)
    bn_momentum: float = 0.6  # the reference's convention: the running statistics keep 0.6 of themselves
    scaling_factor: float = 1 / 9  # the logits' scale
    tta_level: int = 2  # 0: none, 1: mirror, 2: mirror and one-pixel translations (6 views)
    autocast: bool = True  # bfloat16 compute on the CPU


# ------------------------------------------------------------------------------------------------- network
class Conv(nn.Conv2d):
    """A 'same' convolution without bias whose first in_channels filters start as the identity (dirac)."""

    def __init__(self, channels_in, channels_out, kernel_size=3, padding="same", bias=False):
        super().__init__(channels_in, channels_out, kernel_size, padding=padding, bias=bias)

    def reset_parameters(self):
        super().reset_parameters()  # PyTorch's U(+-1/sqrt(fan_in)) for the rest
        if self.bias is not None:
            nn.init.zeros_(self.bias)
        with torch.no_grad():
            identity = min(self.in_channels, self.out_channels)
            nn.init.dirac_(self.weight[:identity])


class ShiftOnlyNorm(nn.BatchNorm2d):
    """Batch norm that learns its shift only: the scale stays 1 (the next conv can scale instead)."""

    def __init__(self, channels, momentum):
        super().__init__(channels, eps=1e-12, momentum=1 - momentum)  # PyTorch weighs the new batch
        self.weight.requires_grad_(False)


class ConvGroup(nn.Module):
    """conv -> 2x2 max-pool -> norm -> GELU -> conv -> norm -> GELU."""

    def __init__(self, channels_in, channels_out, bn_momentum):
        super().__init__()
        self.conv1 = Conv(channels_in, channels_out)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = ShiftOnlyNorm(channels_out, bn_momentum)
        self.conv2 = Conv(channels_out, channels_out)
        self.norm2 = ShiftOnlyNorm(channels_out, bn_momentum)
        self.activation = nn.GELU()

    def forward(self, x):
        x = self.activation(self.norm1(self.pool(self.conv1(x))))
        return self.activation(self.norm2(self.conv2(x)))


class AirbenchNet(nn.Module):
    """A frozen 2x2 patch-whitening stem (24 filters), three conv groups, a 3x3 max-pool, a linear layer
    without bias, and logits scaled down by `scaling_factor`."""

    def __init__(self, recipe=None, num_classes=10):
        super().__init__()
        recipe = recipe or Recipe()
        width1, width2, width3 = recipe.widths
        self.whiten = nn.Conv2d(3, 24, kernel_size=2, padding=0, bias=True)
        self.whiten.weight.requires_grad_(False)
        nn.init.zeros_(self.whiten.bias)
        self.groups = nn.Sequential(ConvGroup(24, width1, recipe.bn_momentum),
                                    ConvGroup(width1, width2, recipe.bn_momentum),
                                    ConvGroup(width2, width3, recipe.bn_momentum))
        self.head = nn.Linear(width3, num_classes, bias=False)
        self.scaling_factor = recipe.scaling_factor

    def forward(self, x):
        x = self.groups(F.gelu(self.whiten(x)))
        x = F.max_pool2d(x, 3).flatten(1)
        return self.head(x) * self.scaling_factor

    @torch.no_grad()
    def whiten_from(self, images):
        """Set the stem to the whitening filters of normalised float images (n, 3, h, w): the shared
        `models.airbench.whitening_kernel`, moved from Keras' (h, w, in, out) to PyTorch's (out, in, h, w)."""
        kernel = whitening_kernel(images.permute(0, 2, 3, 1).numpy(), patch_size=2, eps=WHITEN_EPS)
        self.whiten.weight.copy_(torch.from_numpy(kernel).permute(3, 2, 0, 1))


# ----------------------------------------------------------------------------------------------- training
def total_steps_of(images, recipe):
    """Steps of a whole training: full batches per epoch times the (fractional) epochs, rounded up."""
    return math.ceil(images // recipe.batch_size * recipe.epochs)


def triangle(step, total_steps, warmup):
    """The learning rate's multiplier at `step`: 0.2 -> 1 over the first `warmup` of the steps, then 0.07."""
    rise = int(total_steps * warmup)
    if step < rise:
        return 0.2 + 0.8 * step / rise
    return 1.0 - 0.93 * (step - rise) / (total_steps - rise)


class Lookahead:
    """The slow weights: every float tensor of the network's state (weights and batch-norm statistics). At a
    sync, slow = decay * slow + (1 - decay) * fast, and the network is reset to slow."""

    def __init__(self, net):
        self.slow = {name: value.detach().clone() for name, value in net.state_dict().items()}

    @torch.no_grad()
    def sync(self, net, decay):
        for name, fast in net.state_dict().items():
            if fast.is_floating_point():
                self.slow[name].lerp_(fast, 1 - decay)
                fast.copy_(self.slow[name])


def lookahead_decay(step, total_steps, recipe):
    """The reference's schedule: rate ** every x (step / total) ** 3, ending at 1 (the slow weights win)."""
    return recipe.lookahead_rate ** recipe.lookahead_every * (step / total_steps) ** 3


def optimizer_for(net, recipe):
    """Nesterov SGD in PyTorch's conventions from the decoupled hyperparameters: the rate divided by the
    momentum's step amplification 1 + 1 / (1 - momentum) and by 1,024 (the loss is a sum over the batch);
    the decay per step (wd x batch / that scale) the same for both groups, the batch-norm shifts' rate 64x."""
    kilostep_scale = 1024 * (1 + 1 / (1 - recipe.momentum))
    lr = recipe.lr / kilostep_scale
    decay = recipe.weight_decay * recipe.batch_size / kilostep_scale
    shifts = [p for name, p in net.named_parameters() if ".norm" in name and p.requires_grad]
    others = [p for name, p in net.named_parameters() if ".norm" not in name and p.requires_grad]
    shift_lr = lr * recipe.bias_scaler
    return torch.optim.SGD([dict(params=shifts, lr=shift_lr, weight_decay=decay / shift_lr),
                            dict(params=others, lr=lr, weight_decay=decay / lr)],
                           momentum=recipe.momentum, nesterov=True)


def translate(padded, shifts, size):
    """Crop each padded image (n, c, size + 2r, size + 2r) at its own offset (n, 2) in 0..2r."""
    rows = (shifts[:, 0, None] + torch.arange(size))[:, :, None]  # (n, size, 1)
    cols = (shifts[:, 1, None] + torch.arange(size))[:, None, :]  # (n, 1, size)
    picked = padded[torch.arange(len(padded))[:, None, None], :, rows, cols]  # (n, size, size, c)
    return picked.permute(0, 3, 1, 2)


def alternating_flips(first_epoch_flips, epoch):
    """Which images are mirrored in `epoch`: a random half in the first, the other half in the next, and
    so on, so every image is seen both ways in every pair of epochs."""
    return first_epoch_flips ^ bool(epoch % 2)


def batches(images, labels, recipe, epoch, first_epoch_flips, generator):
    """One epoch of shuffled, translated and alternately flipped full batches (a last partial one dropped)."""
    order = torch.randperm(len(images), generator=generator)
    flips = alternating_flips(first_epoch_flips, epoch)
    r = recipe.translate
    for start in range(0, len(images) - recipe.batch_size + 1, recipe.batch_size):
        index = order[start:start + recipe.batch_size]
        x = images[index]
        if r:
            padded = F.pad(x, (r,) * 4, mode="reflect")
            x = translate(padded, torch.randint(0, 2 * r + 1, (len(x), 2), generator=generator), x.shape[-1])
        x = torch.where(flips[index].view(-1, 1, 1, 1), x.flip(-1), x)
        yield x.contiguous(memory_format=torch.channels_last), labels[index]


def compute(recipe):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.autocast)


def train(net, images, labels, recipe, seed, log=print):
    """Train `net` on normalised float images (n, 3, h, w) with int64 labels; returns seconds per epoch."""
    generator = torch.Generator().manual_seed(seed)
    total_steps = total_steps_of(len(images), recipe)
    net.whiten_from(images[:WHITEN_IMAGES])
    optimizer = optimizer_for(net, recipe)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: triangle(step, total_steps, recipe.warmup))
    lookahead = Lookahead(net)
    first_epoch_flips = torch.rand(len(images), generator=generator) < 0.5
    loss_fn = nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing, reduction="sum")
    step, epoch_seconds = 0, []
    for epoch in range(math.ceil(recipe.epochs)):
        net.whiten.bias.requires_grad_(epoch < recipe.whiten_bias_epochs)
        net.train()
        started = time.perf_counter()
        correct = seen = 0
        for x, y in batches(images, labels, recipe, epoch, first_epoch_flips, generator):
            with compute(recipe):
                logits = net(x)
                loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
            if step % recipe.lookahead_every == 0:
                lookahead.sync(net, lookahead_decay(step, total_steps, recipe))
            if step >= total_steps:
                lookahead.sync(net, 1.0)
                break
        epoch_seconds.append(time.perf_counter() - started)
        log(f"epoch {epoch + 1}: {seen // recipe.batch_size} steps, train accuracy {correct / seen:.4f}, "
            f"last loss {loss.item() / len(y):.4f}, {epoch_seconds[-1]:.0f} s")
    return epoch_seconds


# --------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def logits_per_tta_level(net, images, recipe, batch_size=2000):
    """Logits of normalised images at each of the reference's test-time augmentation levels, each view
    computed once: level 0 the image, 1 the mean over it and its mirror image, 2 half that plus half the mean
    of the mirrored pair of the image translated one pixel up-left and one pixel down-right (6 views)."""
    net.eval()

    def mirrored(x, plain=None):
        return 0.5 * (net(x) if plain is None else plain) + 0.5 * net(x.flip(-1))

    levels = [[], [], []]
    for x in images.split(batch_size):
        x = x.contiguous(memory_format=torch.channels_last)
        with compute(recipe):
            plain = net(x)
            mirror = mirrored(x, plain)
            size, padded = x.shape[-1], F.pad(x, (1,) * 4, mode="reflect")
            shifted = [padded[..., :size, :size], padded[..., 2:, 2:]]
            crops = 0.5 * mirror + 0.25 * sum(mirrored(s) for s in shifted)
        for outputs, logits in zip(levels, (plain, mirror, crops), strict=True):
            outputs.append(logits.float())
    return [torch.cat(outputs) for outputs in levels]


def logits_tta(net, images, recipe, level=None):
    """The logits at one TTA level (default: the recipe's)."""
    return logits_per_tta_level(net, images, recipe)[recipe.tta_level if level is None else level]


# ------------------------------------------------------------------------------------------------- data
def normalised(x, mean, std):
    """uint8 images (n, h, w, c) -> float (n, c, h, w), each channel standardised."""
    x = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).float().div_(255)
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def run(seed=0, data_dir=None, recipe=None, max_images=None, log=print):
    """Train on the lesson's 46,000 training images and score the held-out and test images once, at the end.
    Returns the accuracies (with the recipe's TTA, mirror only and none) and the times."""
    from datasets import cifar10 as cifar10_data

    recipe = recipe or Recipe()
    started = time.perf_counter()
    torch.manual_seed(seed)
    splits = cifar10_data.read(data_dir, val_images=0, lossless_holdout=True, max_images=max_images)
    # the splits' own channel statistics (0..255), as the Keras model's Normalization layer uses them
    mean = torch.tensor(splits.mean / 255, dtype=torch.float32)
    std = torch.tensor(np.sqrt(splits.variance) / 255, dtype=torch.float32)
    images = normalised(splits.x_train, mean, std).contiguous(memory_format=torch.channels_last)
    labels = torch.from_numpy(splits.y_train.astype("int64"))
    net = AirbenchNet(recipe, num_classes=splits.num_classes).to(memory_format=torch.channels_last)
    epoch_seconds = train(net, images, labels, recipe, seed, log=log)
    evaluation = {"test": (splits.x_test, splits.y_test)}
    evaluation.update({f"heldout_{name}": pixels for name, pixels in splits.held_out.items()})
    result = {"seed": seed, "train_images": len(images), "epochs": recipe.epochs,
              "steps": total_steps_of(len(images), recipe),
              "train_time_s": sum(epoch_seconds), "time_per_epoch_s": float(np.mean(epoch_seconds)),
              "torch": torch.__version__, "autocast": "bfloat16" if recipe.autocast else "float32"}
    for name, (x, y) in evaluation.items():
        y = torch.from_numpy(np.asarray(y).astype("int64"))
        levels = logits_per_tta_level(net, normalised(x, mean, std), recipe)
        for suffix, logits in zip(("", "_mirror", "_tta"), levels, strict=True):
            result[f"{name}_accuracy{suffix}"] = float((logits.argmax(1) == y).float().mean())
    result["wall_s"] = time.perf_counter() - started
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", help="the data root (default: $KERAS_TUTORIALS_DATA, the Keras cache)")
    parser.add_argument("--epochs", type=float, default=Recipe.epochs)
    parser.add_argument("--max-images", type=int, help="keep this many images per split (a smoke run)")
    parser.add_argument("--float32", action="store_true", help="compute in float32 (no bfloat16 autocast)")
    args = parser.parse_args(argv)
    recipe = Recipe(epochs=args.epochs, autocast=not args.float32)
    print(json.dumps(run(args.seed, args.data_dir, recipe, args.max_images), indent=1))
    return 0


if __name__ == "__main__":
    from common.cli import run as run_cli  # a missing or malformed data set: one line and exit code 2

    run_cli(main)
