# SPDX-License-Identifier: Apache-2.0 OR MIT
"""Run tpm2-pytss's own test suite (from its sdist) against our servers.

Copy this file as ``conftest.py`` into the sdist's ``test/`` directory and run pytest there with
``PYTHONPATH=<this directory>`` and ``UKVTPM_SERVER_CMD`` set (see tpm_server.py). It replaces
the harness's simulator (swtpm on a random port, 3 s of sleeps per test) by a fresh
`tpm_server.TpmServer` per test; the tests themselves are unchanged.
"""

from tpm2_pytss import TCTILdr

import tpm_server

from . import TSS2_BaseTest


class _Simulator:
    exe = "ukvtpm-test-server"

    def __init__(self):
        self.server = None

    def start(self):
        self.server = tpm_server.TpmServer()

    def close(self):
        self.server.close()

    @property
    def tcti_name_conf(self):
        return self.server.tcti

    def get_tcti(self):
        return TCTILdr(self.server.tcti_module, self.server.tcti_conf)


TSS2_BaseTest.TpmSimulator.getSimulator = staticmethod(_Simulator)
