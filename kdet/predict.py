"""Run an exported detector on images, folders, videos or a camera.

Any SavedModel with kdet's serving contract (see :mod:`kdet.export`) works, whichever
family produced it; ``model`` may also be an MLflow model URI or registered name (see
:func:`kdet.serving.local_saved_model`), an artifact of :func:`kdet.deploy.export` (an
``.onnx`` file, a ``.tflite`` file with its ``NAME.classes.json``, or a ``saved_model``
export folder), run by :class:`kdet.deploy.Runtime`, or a pretrained ``zoo:NAME``
(:mod:`kdet.zoo`), run in memory by :class:`ZooDetector`. Outputs: annotated images
(``<out>/<name>.jpg``), annotated videos (``<out>/<name>.mp4``) and one detections file
(``detections.json`` or ``detections.csv``) with boxes in the input's own pixels.

Example:
    >>> summary = predict("data/models/raccoon_rcnn/saved_model", ["photos/"],
    ...                   out_dir="predictions", score_threshold=0.5)  # doctest: +SKIP
    >>> summary["images"], summary["images_per_s"]  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from kdet.detector import Detector, annotate
from kdet.errors import ImageError, KdetError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg"}
DETECTION_FORMATS = ("json", "csv")
CSV_COLUMNS = ("source", "frame", "x1", "y1", "x2", "y2", "score", "class_id", "class_name")


class ZooDetector(Detector):
    """A pretrained :mod:`kdet.zoo` model, run in memory through the serving contract
    (:class:`kdet.export.DetectorServingModule`) and called like :class:`Detector`.

    Args:
        name: a zoo name (``zoo:`` prefix optional) or a local preset folder named after one.
        classes: keep only detections of these class names (``None``: all).

    Raises:
        ValueError: an unknown zoo name or class name (the message lists the valid ones).
        KdetError: the preset cannot be loaded (offline, no local copy).

    Example:
        >>> detector = ZooDetector("zoo:yolo_v8_m_pascalvoc", classes=["cat"])  # doctest: +SKIP
        >>> detector(np.zeros((48, 64, 3), np.uint8))["class_names"]  # doctest: +SKIP
        []
    """

    def __init__(self, name: str, classes: Sequence[str] | None = None):
        from kdet import zoo
        from kdet.export import DetectorServingModule

        entry, _ = zoo.resolve(name)
        self.keep = None if classes is None else zoo.class_ids(entry, list(classes))
        model = zoo.load(name)
        size = model.input_shape[1:3]
        # NMS keeps any score: the call's ``score_threshold`` (--score-threshold) decides.
        detect = zoo.family_module(entry.family).make_detect_fn(
            model, entry.image_size if None in size else size, confidence_threshold=0.0
        )
        self.path = f"{zoo.PREFIX}{name.removeprefix(zoo.PREFIX)}"
        self._module = DetectorServingModule(detect, entry.class_names, trackable=model)
        self._start(self._module.serve_image.get_concrete_function())

    def __call__(self, image: np.ndarray, score_threshold: float = 0.0) -> dict:
        """Detections for one RGB ``uint8 (H, W, 3)`` image, of the kept classes."""
        out = super().__call__(image, score_threshold)
        if self.keep is None:
            return out
        kept = np.isin(out["classes"], self.keep)
        names = [name for name, keep in zip(out["class_names"], kept, strict=True) if keep]
        return {**{k: out[k][kept] for k in ("boxes", "scores", "classes")}, "class_names": names}


class ArtifactDetector:
    """A :func:`kdet.deploy.export` artifact run by :class:`kdet.deploy.Runtime`, called
    like :class:`Detector`.

    Args:
        path: an ``.onnx`` file, a ``.tflite`` file (beside its ``NAME.classes.json``) or a
            folder that ``kdet.deploy.export`` wrote (it holds ``assets.extra/kdet.json``).

    Raises:
        kdet.deploy.DeployError: naming the file when it is missing, truncated or corrupt.

    Example:
        >>> detector = ArtifactDetector("model.onnx")  # doctest: +SKIP
        >>> detector(np.zeros((48, 64, 3), np.uint8), score_threshold=0.5)  # doctest: +SKIP
        {'boxes': array(...), 'scores': ..., 'classes': ..., 'class_names': [...]}
    """

    def __init__(self, path: str | os.PathLike):
        from kdet.deploy import Runtime

        self.path = str(path)
        self._runtime = Runtime(path)
        self._runtime(np.zeros((64, 64, 3), np.uint8))  # warm-up, as in Detector

    def __call__(self, image: np.ndarray, score_threshold: float = 0.0) -> dict:
        """Detections for one RGB ``uint8 (H, W, 3)`` image, scores >= ``score_threshold``."""
        out = self._runtime(image)
        keep = out["scores"] >= score_threshold
        return {
            "boxes": out["boxes"][keep].reshape(-1, 4),
            "scores": out["scores"][keep],
            "classes": out["classes"][keep],
            "class_names": [str(name) for name in out["class_names"][keep]],
        }


def expand_inputs(inputs: Iterable[str | os.PathLike]) -> Iterator[tuple[str, Path]]:
    """``("image" | "video" | "missing" | "unknown", path)`` for each input; folders are
    walked recursively in sorted order and keep only image and video files."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file()):
                kind = _kind(child)
                if kind != "unknown":
                    yield kind, child
        elif not path.exists():
            yield "missing", path
        else:
            yield _kind(path), path


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_EXTENSIONS:
        return "video"
    return "unknown"


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file as RGB ``uint8 (H, W, 3)``; :class:`ImageError` if it is not one."""
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ImageError(path, "not a readable image (empty, truncated or unknown format)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class _OutputNames:
    """Unique output file names: ``a.jpg`` then ``a_1.jpg`` when two inputs share a stem."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.used: set[str] = set()

    def __call__(self, stem: str, suffix: str) -> Path:
        name, index = f"{stem}{suffix}", 0
        while name in self.used:
            index += 1
            name = f"{stem}_{index}{suffix}"
        self.used.add(name)
        return self.out_dir / name


def predict(
    model: str | os.PathLike | Detector | ArtifactDetector,
    inputs: Sequence[str | os.PathLike],
    *,
    out_dir: str | os.PathLike,
    score_threshold: float = 0.25,
    detections_format: str = "json",
    save_annotated: bool = True,
    progress: bool = True,
) -> dict:
    """Detect objects in images, image folders and video files.

    Bad inputs (missing files, unreadable images or videos, unknown file types) are
    reported in ``summary["failed"]`` as ``"path: problem"`` and the others continue.

    Args:
        model: a :class:`Detector` or :class:`ArtifactDetector`, or what
            :func:`load_detector` takes: a SavedModel folder, an ``.onnx`` or ``.tflite``
            file, an MLflow model URI (``runs:/…``, ``models:/name/version``,
            ``models:/name@alias``), a registered model name or ``zoo:NAME``.
        inputs: image files, video files and folders (walked recursively).
        out_dir: where annotated images/videos and the detections file are written.
        score_threshold: detections with a lower score are dropped.
        detections_format: ``"json"`` (one entry per image or video frame) or ``"csv"``
            (one row per detection).
        save_annotated: also write annotated images and videos.
        progress: show a tqdm progress bar.

    Returns:
        A summary: ``images``, ``videos``, ``frames``, ``detections``, ``failed`` (list of
        messages), ``images_per_s`` (images and frames per second of detection and
        drawing), ``fps`` (frames per second of videos), ``detections_file``.
    """
    if detections_format not in DETECTION_FORMATS:
        raise ValueError(
            f"detections_format must be one of {DETECTION_FORMATS}. "
            f"Received: detections_format={detections_format!r}"
        )
    detector = model if isinstance(model, Detector | ArtifactDetector) else load_detector(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = _OutputNames(out)
    entries: list[dict] = []
    failed: list[str] = []
    counts = {"images": 0, "videos": 0, "frames": 0}
    seconds = {"images": 0.0, "frames": 0.0}
    items = list(expand_inputs(inputs))
    for kind, path in tqdm(items, desc="kdet predict", unit="file", disable=not progress):
        try:
            if kind == "missing":
                raise KdetError(path, "no such file or folder")
            if kind == "unknown":
                raise KdetError(
                    path, "unknown file type (expected an image or a video by its extension)"
                )
            if kind == "image":
                image = read_image(path)
                start = time.perf_counter()
                detections = detector(image, score_threshold)
                if save_annotated:
                    cv2.imwrite(str(names(path.stem, ".jpg")), annotate(image, detections))
                seconds["images"] += time.perf_counter() - start
                counts["images"] += 1
                entries.append(_entry(str(path), None, image.shape, detections))
            else:
                video_out = names(path.stem, ".mp4") if save_annotated else None
                frames, elapsed, problem = _predict_video(
                    detector, cv2.VideoCapture(str(path)), str(path), video_out,
                    score_threshold, entries, progress,
                )  # fmt: skip
                if problem:
                    failed.append(problem)
                    tqdm.write(f"kdet predict: {problem}")
                counts["videos"] += 1
                counts["frames"] += frames
                seconds["frames"] += elapsed
        except KdetError as err:
            failed.append(str(err))
            tqdm.write(f"kdet predict: skipped {err}")
    detections_file = out / f"detections.{detections_format}"
    write_detections(entries, detections_file)
    done = counts["images"] + counts["frames"]
    total_seconds = seconds["images"] + seconds["frames"]
    return {
        **counts,
        "detections": sum(len(e["detections"]) for e in entries),
        "failed": failed,
        "images_per_s": round(done / total_seconds, 2) if total_seconds else None,
        "fps": round(counts["frames"] / seconds["frames"], 2) if seconds["frames"] else None,
        "detections_file": str(detections_file),
    }


def _entry(source: str, frame: int | None, shape, detections: dict) -> dict:
    return {
        "source": source,
        "frame": frame,
        "width": int(shape[1]),
        "height": int(shape[0]),
        "detections": [
            {
                "box": [float(v) for v in box],
                "score": float(score),
                "class_id": int(class_id),
                "class_name": name,
            }
            for box, score, class_id, name in zip(
                detections["boxes"],
                detections["scores"],
                detections["classes"],
                detections["class_names"],
                strict=True,
            )
        ],
    }


def _predict_video(
    detector: Detector | ArtifactDetector,
    capture: cv2.VideoCapture,
    source: str,
    video_out: Path | None,
    score_threshold: float,
    entries: list[dict],
    progress: bool,
    max_frames: int | None = None,
) -> tuple[int, float, str | None]:
    """Annotate every frame of ``capture``; returns (frames, seconds spent on them, problem).

    ``problem`` says where a video stopped before the frame count its header gives
    (truncated or corrupt from there); the frames before it are kept and annotated.
    """
    if not capture.isOpened():
        raise KdetError(source, "cannot open the video (unreadable file or unknown codec)")
    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    fps = fps if fps > 0 else 25.0  # cameras and some containers report no rate
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    writer = None
    frames, elapsed = 0, 0.0
    bar = tqdm(total=total, desc=Path(source).name, unit="frame", leave=False, disable=not progress)
    try:
        while max_frames is None or frames < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            start = time.perf_counter()
            image = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            detections = detector(image, score_threshold)
            if video_out is not None:
                if writer is None:
                    height, width = frame.shape[:2]
                    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
                    writer = cv2.VideoWriter(str(video_out), fourcc, fps, (width, height))
                    if not writer.isOpened():
                        raise KdetError(video_out, "cannot write an mp4v video here")
                writer.write(annotate(image, detections))
            elapsed += time.perf_counter() - start
            entries.append(_entry(source, frames, image.shape, detections))
            frames += 1
            bar.update(1)
    finally:
        bar.close()
        capture.release()
        if writer is not None:
            writer.release()
    if frames == 0:
        raise KdetError(source, "the video has no readable frames")
    problem = None
    if total and frames < total and (max_frames is None or frames < max_frames):
        problem = (
            f"{source}: the video stopped at frame {frames} of the {total} its header gives "
            f"(truncated or corrupt from there); the {frames} frames before it were kept"
        )
    return frames, elapsed, problem


def predict_webcam(
    model: str | os.PathLike | Detector | ArtifactDetector,
    camera: int = 0,
    *,
    out_dir: str | os.PathLike,
    score_threshold: float = 0.25,
    max_frames: int | None = None,
    detections_format: str = "json",
    progress: bool = True,
) -> dict:
    """Detect objects in a live camera until ``max_frames`` or Ctrl-C.

    Writes ``<out_dir>/camera<N>.mp4`` and the detections file (the headless OpenCV build
    has no window to show frames in).

    Returns:
        ``frames``, ``detections``, ``fps`` and ``detections_file``.
    """
    detector = model if isinstance(model, Detector | ArtifactDetector) else load_detector(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries: list[dict] = []
    source = f"camera{camera}"
    capture = cv2.VideoCapture(camera)
    if not capture.isOpened():
        raise KdetError(source, f"cannot open camera {camera} (no such device or it is busy)")
    try:
        frames, elapsed, _ = _predict_video(  # a camera has no frame count to fall short of
            detector, capture, source, out / f"{source}.mp4", score_threshold, entries,
            progress, max_frames,
        )  # fmt: skip
    except KeyboardInterrupt:
        frames, elapsed = len(entries), None
    detections_file = out / f"detections.{detections_format}"
    write_detections(entries, detections_file)
    return {
        "frames": frames,
        "detections": sum(len(e["detections"]) for e in entries),
        "fps": round(frames / elapsed, 2) if elapsed else None,
        "detections_file": str(detections_file),
    }


def write_detections(entries: list[dict], path: str | os.PathLike) -> Path:
    """Write detections as JSON (list of per-image entries) or CSV (one row per box),
    chosen by the file's suffix."""
    path = Path(path)
    if path.suffix == ".csv":
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(CSV_COLUMNS)
            for entry in entries:
                for d in entry["detections"]:
                    x1, y1, x2, y2 = d["box"]
                    frame = "" if entry["frame"] is None else entry["frame"]
                    writer.writerow(
                        [entry["source"], frame, x1, y1, x2, y2]
                        + [d["score"], d["class_id"], d["class_name"]]
                    )
    else:
        path.write_text(json.dumps(entries, indent=1))
    return path


def load_detector(
    model: str | os.PathLike, classes: Sequence[str] | None = None
) -> Detector | ArtifactDetector:
    """The detector of ``model``: a :class:`ZooDetector` for ``zoo:NAME``, else picked by
    file type: an :class:`ArtifactDetector` for an ``.onnx`` or ``.tflite`` file or a
    folder written by :func:`kdet.deploy.export`, a :class:`Detector` for a serving
    SavedModel folder, an MLflow URI or a registered name.

    Args:
        model: as above.
        classes: keep only these class names: zoo models only (their classes are known).

    Example:
        >>> load_detector("data/models/yolov8_raccoon/export/model.onnx")  # doctest: +SKIP
        >>> load_detector("zoo:retinanet_resnet50_fpn_coco", ["apple", "banana"])  # doctest: +SKIP
    """
    from kdet.deploy.export import SAVED_MODEL_METADATA, SUFFIXES
    from kdet.zoo import PREFIX

    if str(model).startswith(PREFIX):
        return ZooDetector(str(model), classes)
    if classes is not None:
        raise ValueError(f"{model}: keeping some classes works for {PREFIX}NAME models only")

    path = Path(model)
    if path.suffix in SUFFIXES.values() or (path / SAVED_MODEL_METADATA).is_file():
        return ArtifactDetector(path)
    if path.is_dir():
        return Detector(model)
    from kdet.serving import local_saved_model  # MLflow is only needed for URIs and names

    return Detector(local_saved_model(str(model)))
