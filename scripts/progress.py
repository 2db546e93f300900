"""Shows a long build's progress on one line: reads the build's output on stdin, keeps all of it in a
log file, and prints `WHAT: NN% (MmSSs)` as CMake's `[ NN%]` and Ninja's `[k/n]` lines come, updated in
place on a terminal, every 10% otherwise. Exits with the build's status, given as the last line
`exit=N` (see install.sh). Plain Python: it runs before anything is installed."""

import re
import sys
import time

what, log_path = sys.argv[1], sys.argv[2]
tty = sys.stderr.isatty()
start = time.monotonic()
shown = -1
status = 1
percent = re.compile(rb"\[\s*(\d+)%\]|\[(\d+)/(\d+)\]")
with open(log_path, "wb") as log:
    for line in sys.stdin.buffer:
        if line.startswith(b"exit="):
            status = int(line[5:])
            continue
        log.write(line)
        m = percent.search(line)
        if not m:
            continue
        pct = int(m.group(1)) if m.group(1) else int(m.group(2)) * 100 // max(1, int(m.group(3)))
        if pct == shown or (not tty and pct // 10 == shown // 10):
            continue
        shown = pct
        elapsed = int(time.monotonic() - start)
        text = f"{what}: {pct:3d}% ({elapsed // 60}m{elapsed % 60:02d}s)"
        sys.stderr.write(f"\r{text}" if tty else f"{text}\n")
        sys.stderr.flush()
elapsed = int(time.monotonic() - start)
sys.stderr.write(f"{chr(13) if tty else ''}{what}: {'done' if status == 0 else 'FAILED'} in {elapsed // 60}m{elapsed % 60:02d}s"
                 f"{'' if status == 0 else f' (the whole output: {log_path})'}\n")
sys.exit(status)
