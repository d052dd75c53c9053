"""Each DVC stage's own wall time, written by the stage, and the main job's timing table.

Every stage script of ``dvc.yaml`` calls :func:`record` when its work is done. It writes
``data/metrics/timing/STEP_NAME.json`` (a DVC metric of that stage, so ``dvc metrics show``
and ``dvc exp show`` list it): ``seconds`` since the process started (Python and TensorFlow
start-up included), ``cpu_seconds`` the process used, the machine's ``cores`` and its
``load_average`` (1, 5, 15 min) at the end, which says how busy the machine was.

``python pipelines/stage_timing.py`` prints every recorded stage as a Markdown table in the
order they ran, with the total (the README's stage-time table).

Example:
    $ python pipelines/stage_timing.py
    | Stage | Wall s | CPU s | Load (5 min) |
    |---|---|---|---|
    | fetch@shapes | SECONDS | CPU SECONDS | LOAD |
    ...
    | **total** | **SUM OF SECONDS** | | |
"""

from __future__ import annotations

import datetime
import json
import os
import time
from pathlib import Path

import psutil  # a DVC dependency: every stage runs where DVC is installed

from kdet.atomic import write_text

FOLDER = Path("data/metrics/timing")


def record(step: str, name: str) -> dict:
    """Write this process's timing as stage ``step@name``; returns what was written."""
    process = psutil.Process()
    cpu = process.cpu_times()
    timing = {
        "stage": f"{step}@{name}",
        "seconds": round(time.time() - process.create_time(), 1),
        "cpu_seconds": round(cpu.user + cpu.system + cpu.children_user + cpu.children_system, 1),
        "cores": os.cpu_count(),
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    write_text(FOLDER / f"{step}_{name}.json", json.dumps(timing, indent=2) + "\n")
    return timing


def table(folder: Path = FOLDER) -> str:
    """The recorded stages as a Markdown table, in the order they finished, with the total."""
    timings = [json.loads(path.read_text()) for path in folder.glob("*.json")]
    timings.sort(key=lambda timing: timing["finished"])
    lines = ["| Stage | Wall s | CPU s | Load (5 min) |", "|---|---|---|---|"]
    for timing in timings:
        lines.append(
            f"| {timing['stage']} | {timing['seconds']:.1f} | {timing['cpu_seconds']:.1f} "
            f"| {timing['load_average'][1]:.1f} |"
        )
    total = sum(timing["seconds"] for timing in timings)
    lines.append(f"| **total** | **{total:.1f}** | | |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
