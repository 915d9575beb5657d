"""Run a list of ``python -m hashnb.bench`` commands from several worker processes.

Usage: ``python tools/run_queue.py QUEUE.txt LOGDIR`` (start it once per worker). Each line of
QUEUE.txt is one command's arguments (after ``python -m hashnb.bench``); lines are claimed
in order, one worker each, by creating ``LOGDIR/<line number>.claim`` atomically, so two
workers never run the same line and a stopped worker's unfinished line is rerun by the
next start after its claim file is deleted (every ``bench run`` resumes on its own).
Used for the long profile runs (``OMP_NUM_THREADS=1``, two workers on two cores).
"""
import os
import subprocess
import sys
import time
from pathlib import Path


def main(queue: str, logdir: str) -> int:
    lines = [ln.strip() for ln in Path(queue).read_text().splitlines()]
    log = Path(logdir)
    log.mkdir(parents=True, exist_ok=True)
    for i, line in enumerate(lines):
        if not line or line.startswith("#"):
            continue
        claim = log / f"{i:03d}.claim"
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            continue
        os.write(fd, f"{os.getpid()} {time.strftime('%H:%M:%S')}\n".encode())
        os.close(fd)
        t0 = time.time()
        with open(log / f"{i:03d}.log", "w") as out:
            rc = subprocess.call([sys.executable, "-m", "hashnb.bench", *line.split()],
                                 stdout=out, stderr=subprocess.STDOUT)
        with open(log / "done.txt", "a") as done:
            done.write(f"{i:03d} rc={rc} {time.time() - t0:.0f}s {line}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
