"""A job for the service-manager simulators to run: a real process that behaves as told."""

# A job program: `serve` exits 0 on SIGTERM, `stubborn` ignores SIGTERM, `exit N` exits at once.
# Each start appends "<pid> <time>" to starts.log next to this script, and its environment to env.log.
# The time is when the process was made, not when Python got here: interpreter start-up, which load
# stretches unevenly, is not part of the interval launchd keeps between starts.
PROGRAM = r"""
import json, os, signal, sys
import psutil
here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "starts.log"), "a") as fp:
    fp.write(f"{os.getpid()} {psutil.Process().create_time()}\n")
stdin, devnull = os.fstat(0), os.stat(os.devnull)  # the same file: same device and inode, on any Unix
with open(os.path.join(here, "env.log"), "w") as fp:
    stdin_is_devnull = (stdin.st_dev, stdin.st_ino) == (devnull.st_dev, devnull.st_ino)
    json.dump({"env": dict(os.environ), "pgid": os.getpgid(0), "stdin_is_devnull": stdin_is_devnull}, fp)
print(f"started {os.getpid()}", flush=True)
mode = sys.argv[1]
if mode == "exit":
    sys.exit(int(sys.argv[2]))
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else (lambda *_: sys.exit(0)))
while True:
    signal.pause()
"""
