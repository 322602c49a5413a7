"""A process forked after loading a model exits cleanly (gunicorn's preload, then a recycle).

onnxruntime 1.32 starts a telemetry thread at import. A child forked from a process that
imported it has the thread's object but not the thread, and the object's destructor at exit
aborts or hangs. Importing nluserve turns the telemetry off before onnxruntime is imported.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from nluserve.models.store import BUNDLED_DIR

SCRIPT = textwrap.dedent(
    """
    import os, sys, threading
    import nluserve
    from nluserve import load_model

    model = load_model(sys.argv[1], threads=1)
    model.predict(["张三在北京大学读书"])
    pid = os.fork()
    if pid == 0:
        def calls():
            for _ in range(20):
                model.predict(["李四去了上海。"] * 4)
        threads = [threading.Thread(target=calls) for _ in range(2)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    print("STATUS", os.waitstatus_to_exitcode(status), os.environ.get("ORT_DISABLE_TELEMETRY"))
    """
)


def test_a_forked_child_exits_cleanly_after_inference() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(BUNDLED_DIR / "general")],
        capture_output=True,
        text=True,
        timeout=120,  # the other failure is a child that never exits
        env=env,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    # Exit code 0, not -6 (SIGABRT from the destructor); the setting made by importing nluserve.
    assert done.stdout.strip().splitlines()[-1] == "STATUS 0 1", done.stdout


def test_an_operators_own_telemetry_setting_is_kept() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import os, nluserve; print(os.environ['ORT_DISABLE_TELEMETRY'])"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "ORT_DISABLE_TELEMETRY": "0"},
    )
    assert done.stdout.strip() == "0", done.stderr[-2000:]
