"""A "native library" that crashes as it is imported (tests/crashy.py's ImportCrashBackend)."""

import os
import signal

os.kill(os.getpid(), signal.SIGSEGV)
