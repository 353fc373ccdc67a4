"""A time limit that stops any decode: the call runs in a helper process, killed when it takes too long.

A signal in the calling process only interrupts Python code and some system calls; an FFmpeg call that
never returns (a stalled network read, a FIFO named ``x.mp4``, a file whose writer stopped mid-way) would
hang a DataLoader worker forever. So with ``seconds > 0`` a :class:`Watchdog` sends each call
(:func:`~tvts.data.decode.probe`, :func:`~tvts.data.decode.decode_frames`) to a persistent helper process
over a socket pair; when no answer comes in time it kills the helper (SIGKILL: FFmpeg state and all) and
raises ``SampleError("timeout")``; the next call starts a fresh helper. A helper that dies (a crash inside
FFmpeg) gives ``SampleError("decode")`` instead of taking the worker down.

The helper is a plain ``python -m tvts.data.watchdog`` subprocess (DataLoader workers are daemonic and
may not start ``multiprocessing`` children); it imports only the decoding module (PyAV, numpy), about a
third of a second once per worker. Each call costs the transfer of its frames (~5 ms for 16 frames of 360p).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from multiprocessing.connection import Connection

from tvts.errors import SampleError, TVTSError

FUNCTIONS = ("probe", "decode_frames")
# The default time limit of one probe or decode wherever tvts reads videos (data.decode_timeout, `tvts data
# check --timeout`, `tvts extract --timeout`): far above what a seek-and-decode of 16 frames takes even
# for long 4K files (~1 s), far below "hung".
DECODE_TIMEOUT = 60.0
# How the data pools (the frame store's decoders, the synthetic generator) start their processes: from a clean
# server process, not by forking this one, whose FFmpeg and torch threads may hold a lock at the fork (a forked
# child then hangs in its first decode; seen in the test suite).
POOL_START = "forkserver"
_ARRAY = "tvts-array"  # an answer (True, (_ARRAY, shape, dtype)) is followed by the array's raw bytes


def _function(name: str):
    from tvts.data import decode

    if name not in FUNCTIONS:
        raise ValueError(f"unknown watchdog function {name!r}")
    return getattr(decode, name)


class Watchdog:
    """``call(name, path, *args, **kwargs)`` runs ``tvts.data.decode.<name>`` with a time limit of ``seconds``
    (0: directly in this process, no limit). Safe to pickle and to copy into forked workers: each process
    starts its own helper on first use."""

    def __init__(self, seconds: float = 0.0):
        if not seconds >= 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        self.seconds = float(seconds)
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._pid = os.getpid()

    def __getstate__(self):
        return {"seconds": self.seconds}

    def __setstate__(self, state):
        self.__init__(state["seconds"])

    def call(self, name: str, path: str, *args, **kwargs):
        if not self.seconds:
            return _function(name)(path, *args, **kwargs)
        conn = self._connection()
        try:
            conn.send((name, path, args, kwargs))
            ready = conn.poll(self.seconds)
        except OSError as e:  # the helper is gone
            self.close()
            raise SampleError("decode", path, f"the decoding process stopped: {e}") from None
        if not ready:
            self.close()
            raise SampleError("timeout", path, f"took more than {self.seconds:g} s (data.decode_timeout); "
                                               "the decoding process was stopped")
        try:
            ok, value = conn.recv()
            if ok and isinstance(value, tuple) and len(value) == 3 and value[0] == _ARRAY:
                import numpy as np

                out = np.empty(value[1], dtype=value[2])  # the frames follow as raw bytes, read straight into place
                conn.recv_bytes_into(memoryview(out).cast("B"))
                value = out
        except (EOFError, OSError):
            code = self._proc.poll() if self._proc is not None else None
            self.close()
            raise SampleError("decode", path, f"the decoding process died (exit code {code})") from None
        if ok:
            return value
        raise value

    def _connection(self) -> Connection:
        if self._pid != os.getpid():  # a copy in a forked worker: the helper belongs to the parent
            self._proc, self._conn, self._pid = None, None, os.getpid()
        if self._conn is None or self._proc is None or self._proc.poll() is not None:
            self.close()
            ours, theirs = socket.socketpair()
            env = dict(os.environ, OMP_NUM_THREADS="1")
            self._proc = subprocess.Popen([sys.executable, "-m", "tvts.data.watchdog", str(theirs.fileno())],
                                          pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL)
            theirs.close()
            self._conn = Connection(ours.detach())
        return self._conn

    def close(self) -> None:
        """Stop the helper (if this process started one)."""
        if self._proc is not None and self._pid == os.getpid():
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
        if self._conn is not None:
            try:
                self._conn.close()
            except OSError:
                pass
        self._proc, self._conn = None, None

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


def _serve(fd: int) -> None:
    """The helper's loop: answer ``(name, path, args, kwargs)`` with ``(True, result)`` or ``(False, error)``;
    exits when the caller's end closes."""
    import numpy as np

    conn = Connection(fd)
    while True:
        try:
            name, path, args, kwargs = conn.recv()
        except (EOFError, OSError):
            return
        try:
            result = _function(name)(path, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 -- every error goes back to the caller, typed
            conn.send((False, e if isinstance(e, TVTSError) else SampleError("decode", path, f"{type(e).__name__}: {e}")))
            continue
        if isinstance(result, np.ndarray) and result.size:
            result = np.ascontiguousarray(result)
            conn.send((True, (_ARRAY, result.shape, result.dtype.str)))
            conn.send_bytes(memoryview(result).cast("B"))  # no pickling of the pixels
        else:
            conn.send((True, result))


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
