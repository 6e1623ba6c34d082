# SPDX-License-Identifier: Apache-2.0 OR MIT
"""Spawn one fresh TPM server (swtpm or `ukvtpm serve`) on free ports with its own state.

The server command comes from the environment, set by the Rust runner (tests/tests/pytss.rs):

* ``UKVTPM_SERVER_CMD``: a JSON list of arguments; ``{port}``, ``{ctrl}`` and ``{state}`` are
  replaced by the data port, the control port and a fresh state directory.
* ``UKVTPM_SERVER_NAME``: a short name for messages (``swtpm``, ``ukvtpm``).
* ``UKVTPM_TCTI_MODULE``: the tpm2-tss TCTI that speaks its framing (``swtpm``, the default, or
  ``mssim``).

Used by our conftest.py (one server per test) and by upstream_conftest.py, which points
tpm2-pytss's own test harness at the same servers.
"""

import json
import os
import socket
import subprocess
import tempfile
import time

READY_TIMEOUT = 15.0


def _free_port_pair():
    for _ in range(200):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port == 65535:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair on 127.0.0.1")


def _listening(ports):
    """True when every port is in LISTEN state on IPv4 (from /proc/net/tcp: no connection is
    made, so a server that serves one client at a time is not disturbed)."""
    try:
        with open("/proc/net/tcp") as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return False
    found = set()
    for line in lines:
        fields = line.split()
        if len(fields) > 3 and fields[3] == "0A":
            found.add(int(fields[1].rsplit(":", 1)[1], 16))
    return all(p in found for p in ports)


def server_command():
    raw = os.environ.get("UKVTPM_SERVER_CMD")
    if not raw:
        raise RuntimeError(
            "UKVTPM_SERVER_CMD is not set: run this suite through "
            "`cargo nextest run -p ukvtpm-tests --test pytss`"
        )
    return json.loads(raw)


class TpmServer:
    """A running server; ``tcti`` is the tpm2-tss TCTI configuration string."""

    def __init__(self):
        self.name = os.environ.get("UKVTPM_SERVER_NAME", "server")
        self.tcti_module = os.environ.get("UKVTPM_TCTI_MODULE", "swtpm")
        self._dir = tempfile.TemporaryDirectory(prefix=f"ukvtpm-pytss-{self.name}-")
        self.state = os.path.join(self._dir.name, "state")
        os.mkdir(self.state)
        self.log_path = os.path.join(self._dir.name, "server.log")
        self.proc = None
        self.port = None
        self._spawn()

    def _spawn(self):
        template = server_command()
        last = None
        for _ in range(8):
            port = _free_port_pair()
            argv = [
                a.replace("{port}", str(port))
                .replace("{ctrl}", str(port + 1))
                .replace("{state}", self.state)
                for a in template
            ]
            log = open(self.log_path, "ab")
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
            log.close()
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    break
                if _listening((port, port + 1)):
                    self.proc, self.port = proc, port
                    return
                time.sleep(0.005)
            last = f"{argv} did not listen on {port}/{port + 1}:\n{self.log()}"
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        raise RuntimeError(last)

    @property
    def tcti(self):
        return f"{self.tcti_module}:{self.tcti_conf}"

    @property
    def tcti_conf(self):
        return f"host=127.0.0.1,port={self.port}"

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        """Stops the server (SIGTERM, then SIGKILL after 5 s); the state stays."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def restart(self):
        """A power cycle: the same state, a new process (on new ports: see `tcti`)."""
        self.stop()
        self._spawn()

    def close(self):
        self.stop()
        self._dir.cleanup()
