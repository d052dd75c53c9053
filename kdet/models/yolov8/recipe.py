"""Training recipes for YOLOv8: kdet's, and the keras.io example's for comparison.

A recipe is a plain dict of keyword arguments for the builder, the inputs and
:func:`compile_yolov8`.

``RECIPES["keras_io"]`` is the keras.io example "Efficient Object Detection with YOLOV8 and
KerasCV" (keras-io ``examples/vision/yolov8.py``, last modified 2023/06/26; checked against
its source): ``Adam(learning_rate=0.001, global_clipnorm=10.0)`` at a constant rate, no
weight decay, no EMA; ``compile(classification_loss="binary_crossentropy",
box_loss="ciou")`` with KerasCV's default loss weights (box 7.5, class 0.5);
``YOLOV8Detector(fpn_depth=1)`` with KerasCV's default label encoder (top-10 anchors,
alpha 0.5, beta 6), zero class biases and default decoder (``NonMaxSuppression``,
confidence 0.2, IoU 0.7); augmentation ``RandomFlip("horizontal")``,
``RandomShear(x_factor=0.2, y_factor=0.2)``, ``JitteredResize(scale_factor=(0.75, 1.3))``;
``shuffle(BATCH_SIZE * 4)``. Where the comparison departs from the example, for both recipes
alike (``kdet.models.yolov8.compare``):

* no COCO-pretrained ``yolo_v8_s_backbone_coco`` (offline): both start from random weights
  with the same backbone size;
* batch size, input size and epochs are the comparison's (the example: 4, 640², 3 epochs);
* images are first scaled to fit the input size (aspect kept, zero padded) before the
  augmentation, where the example feeds the decoded images to ``JitteredResize``;
* the score is kdet's COCO-style evaluator on the held-out split with one decoder
  (confidence 0.001) for both, where the example reads ``BoxCOCOMetrics`` on a validation
  set that it also passes through ``JitteredResize``.

kdet's recipe differs from the example in:

* the head's class biases start at an object prior (see ``builder.initialise_head_biases``);
* AdamW with weight decay, a linear warm-up then cosine decay (``keras.optimizers.schedules.
  CosineDecay`` with ``warmup_steps``), as Ultralytics trains short runs;
* stronger scale jitter (0.5-1.5), no shear (shear makes loose boxes), and shuffling the
  whole training set each epoch;
* an exponential moving average of the weights (``use_ema``), copied into the model at the
  end of ``fit``.

Example:
    >>> model = build_yolov8(num_classes=3, image_size=64)
    >>> compile_yolov8(model, total_steps=100, **RECIPES["kdet"]["compile"])
"""

from __future__ import annotations

import copy

import keras

RECIPES = {
    "kdet": {
        "model": {"fpn_depth": 1, "objects_per_image_prior": 5.0},
        "inputs": {"flip": True, "scale_range": (0.5, 1.5), "shear": 0.0},
        "compile": {
            "optimizer": "adamw",
            "learning_rate": 2e-3,
            "warmup_fraction": 0.1,
            "final_learning_rate_fraction": 0.05,
            "weight_decay": 5e-4,
            "global_clipnorm": 10.0,
            "ema_momentum": 0.99,
            "box_loss_weight": 7.5,
            "classification_loss_weight": 0.5,
        },
    },
    "keras_io": {
        "model": {
            "fpn_depth": 1,
            "objects_per_image_prior": None,
            "confidence_threshold": 0.2,
            "iou_threshold": 0.7,
        },
        "inputs": {
            "flip": True,
            "scale_range": (0.75, 1.3),
            "shear": 0.2,
            "shuffle_buffer_batches": 4,
        },
        "compile": {
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "warmup_fraction": 0.0,
            "final_learning_rate_fraction": 1.0,
            "weight_decay": None,
            "global_clipnorm": 10.0,
            "ema_momentum": None,
            "box_loss_weight": 7.5,
            "classification_loss_weight": 0.5,
        },
    },
}


def get_recipe(name: str) -> dict:
    """A deep copy of the recipe ``name`` (``"kdet"`` or ``"keras_io"``)."""
    if name not in RECIPES:
        raise ValueError(f"Unknown recipe. Choose one of {tuple(RECIPES)}. Received: {name=}")
    return copy.deepcopy(RECIPES[name])


def learning_rate_schedule(
    learning_rate: float,
    total_steps: int,
    warmup_fraction: float = 0.1,
    final_learning_rate_fraction: float = 0.05,
):
    """Linear warm-up from ~0 to ``learning_rate``, then cosine decay to
    ``final_learning_rate_fraction * learning_rate``; a constant when the fraction is 1."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be at least 1. Received: {total_steps=}")
    if final_learning_rate_fraction == 1.0 and warmup_fraction == 0.0:
        return learning_rate
    warmup_steps = int(round(warmup_fraction * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate * 1e-3 if warmup_steps else learning_rate,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=final_learning_rate_fraction,
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def compile_yolov8(
    model,
    *,
    total_steps: int,
    optimizer: str = "adamw",
    learning_rate: float = 2e-3,
    warmup_fraction: float = 0.1,
    final_learning_rate_fraction: float = 0.05,
    weight_decay: float | None = 5e-4,
    global_clipnorm: float | None = 10.0,
    ema_momentum: float | None = 0.99,
    box_loss_weight: float = 7.5,
    classification_loss_weight: float = 0.5,
    jit_compile: bool = False,
) -> None:
    """Compile a ``YOLOV8Detector`` with CIoU + binary cross-entropy and the given optimizer.

    Args:
        model: a ``keras_cv.models.YOLOV8Detector``.
        total_steps: optimizer steps of the whole run (sets the schedule).
        optimizer: ``"adamw"``, ``"adam"`` or ``"sgd"`` (momentum 0.937, Nesterov).
        learning_rate, warmup_fraction, final_learning_rate_fraction: see
            :func:`learning_rate_schedule`.
        weight_decay: decoupled weight decay (``None`` for none).
        global_clipnorm: clip the global gradient norm (``None`` for no clipping).
        ema_momentum: keep an exponential moving average of the weights with this
            momentum and write it into the model when ``fit`` ends (``None``: no EMA).
        box_loss_weight, classification_loss_weight: KerasCV's loss weights.
        jit_compile: compile the train step with XLA.
    """
    schedule = learning_rate_schedule(
        learning_rate, total_steps, warmup_fraction, final_learning_rate_fraction
    )
    common = {
        "learning_rate": schedule,
        "global_clipnorm": global_clipnorm,
        "use_ema": ema_momentum is not None,
        "ema_momentum": ema_momentum or 0.99,
    }
    if optimizer == "adamw":
        opt = keras.optimizers.AdamW(weight_decay=weight_decay or 0.0, **common)
    elif optimizer == "adam":
        opt = keras.optimizers.Adam(weight_decay=weight_decay, **common)
    elif optimizer == "sgd":
        opt = keras.optimizers.SGD(
            momentum=0.937, nesterov=True, weight_decay=weight_decay, **common
        )
    else:
        raise ValueError(f"optimizer must be 'adamw', 'adam' or 'sgd'. Received: {optimizer=}")
    model.compile(
        optimizer=opt,
        box_loss="ciou",
        classification_loss="binary_crossentropy",
        box_loss_weight=box_loss_weight,
        classification_loss_weight=classification_loss_weight,
        jit_compile=jit_compile,
    )
