#!/usr/bin/python3
"""tierkit lab stand-in for nvidia-persistenced: with --persistence-mode it turns persistence
on for every GPU while it runs, and off when it stops, through the simulated nvidia-smi.
Standard library only (it runs in lab hosts)."""

import signal
import subprocess
import sys
import time


def main(argv):
    on = "--persistence-mode" in argv

    def stop(*_):
        if on:
            subprocess.run(["nvidia-smi", "-pm", "0"], check=False)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    if on:
        subprocess.run(["nvidia-smi", "-pm", "1"], check=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv)
