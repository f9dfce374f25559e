"""Runs a moto server on 127.0.0.1 for the local stack and the tests.

It prints "ready <port>" once it accepts requests, and exits when its parent process goes away
(the parent's PID changes), so a killed test run or demo never leaves a stray server behind.
"""

import os
import signal
import sys
import time

from moto.server import ThreadedMotoServer


def main() -> None:
    port = int(sys.argv[1])
    host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"
    parent = os.getppid()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"ready {port}", flush=True)
    try:
        while os.getppid() == parent:
            time.sleep(0.5)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
