"""keras-cv stays inside the YOLOv8 family (``kdet/models/yolov8/``).

The rest of kdet uses Keras 3 core (layers, ``keras.utils.bounding_boxes``) or its own
code, so that kdet imports, trains and serves every other family without keras-cv.
"""

import ast
import subprocess
import sys
from pathlib import Path

import kdet

PACKAGE = Path(kdet.__file__).parent
ALLOWED = PACKAGE / "models" / "yolov8"


def _imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            yield str(node.args[0].value)


def test_keras_cv_is_imported_only_by_the_yolov8_family():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if ALLOWED in path.parents:
            continue
        for module in _imported_modules(path):
            if module.split(".")[0] == "keras_cv":
                offenders.append(f"{path.relative_to(PACKAGE.parent)}: {module}")
    assert offenders == []


def test_the_scan_sees_the_yolov8_family():
    scanned = [
        module
        for path in ALLOWED.rglob("*.py")
        for module in _imported_modules(path)
        if module.startswith("keras_cv")
    ]
    assert scanned, "the scan found no keras_cv import at all: is it still looking?"


def test_importing_kdet_leaves_keras_cv_unloaded():
    # ``kdet.models`` (the registry) imports every family, YOLOv8 included, so it loads
    # keras-cv; nothing else should.
    code = (
        "import sys\n"
        "import kdet, kdet.data, kdet.families, kdet.experiment, kdet.losses\n"
        "import kdet.metrics, kdet.metrics.keras_metrics, kdet.bounding_box\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'keras_cv'))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE.parent,
        timeout=300,
    )
    assert result.stdout.strip().splitlines()[-1] == "[]", result.stderr[-2000:]
