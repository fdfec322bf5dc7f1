"""`python -m deepfake.ui.supervise JOB_DIR -- python -m deepfake ...`: run one job's CLI process and
write its exit status to JOB_DIR/rc.

The dashboard's server starts this instead of the CLI directly so that a job outlives a server
restart and its exit status is still known afterwards: the server that adopts a running job after a
restart is not its parent and could not collect the status itself. SIGTERM and SIGINT are passed on to
the CLI process, so `deepfake train` still saves on the first signal and aborts on the second.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from deepfake.io.atomic import atomic_write_text


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m deepfake.ui.supervise JOB_DIR -- COMMAND...", file=sys.stderr)
        return 2
    job_dir, command = Path(argv[0]), argv[2:]
    child: list[subprocess.Popen] = []
    early: list[int] = []  # a signal that came before the child existed is passed on once it does

    def forward(signum, _frame):
        if child:
            child[0].send_signal(signum)
        else:
            early.append(signum)

    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, forward)
    child.append(subprocess.Popen(command))  # inherits the log file as stdout/stderr
    for signum in early:
        child[0].send_signal(signum)
    rc = child[0].wait()
    atomic_write_text(job_dir / "rc", f"{rc}\n")
    return rc if rc >= 0 else 128 - rc  # the shell's convention for a child killed by a signal


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
