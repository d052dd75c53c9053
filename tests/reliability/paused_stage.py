"""A DVC training stage that a test can kill at a point it controls:
``python paused_stage.py train NAME`` runs ``pipelines/experiment.py train NAME`` (from the
stage's folder) unchanged, except that with ``KDET_TEST_PAUSE_AFTER=N`` set it writes the
file ``KDET_TEST_PAUSE_FILE`` once epoch N has ended (its backup, history line and MLflow
metrics all written: the pause comes after every other end-of-epoch callback) and waits
there for the test's ``kill -9``.
"""

import os
import runpy
import sys
import time
from pathlib import Path

from kdet import training

PAUSE_LIMIT_S = 600  # a test that never kills has failed; do not wait forever


def pause_after(epochs: int, paused: Path) -> None:
    """Make every training stop for good once ``epochs`` epochs have ended."""
    end_of_epoch = training.StopOnSignal.on_epoch_end

    def on_epoch_end(self, epoch, logs=None):
        end_of_epoch(self, epoch, logs)
        if epoch + 1 == epochs:
            paused.write_text(str(epochs))
            time.sleep(PAUSE_LIMIT_S)
            raise RuntimeError(f"paused after epoch {epochs}, and no kill came")

    training.StopOnSignal.on_epoch_end = on_epoch_end


if __name__ == "__main__":
    if os.environ.get("KDET_TEST_PAUSE_AFTER"):
        pause_after(
            int(os.environ["KDET_TEST_PAUSE_AFTER"]), Path(os.environ["KDET_TEST_PAUSE_FILE"])
        )
    script = "pipelines/experiment.py"
    sys.argv = [script, *sys.argv[1:]]
    # As ``python pipelines/experiment.py`` would: the script's folder first on the path
    # (it imports its sibling ``stage_timing``), not this file's.
    sys.path[0] = str(Path(script).resolve().parent)
    runpy.run_path(script, run_name="__main__")
