# SPDX-License-Identifier: Apache-2.0 OR MIT
"""Fixtures for the tpm2-pytss suite: every test gets a fresh server (see tpm_server.py) and an
ESAPI context on it, after TPM2_Startup(CLEAR). A failing test prints the server's log."""

import pytest
from tpm2_pytss import ESAPI, TPM2_SU

from tpm_server import TpmServer


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "report_" + report.when, report)


@pytest.fixture
def server(request):
    srv = TpmServer()
    yield srv
    failed = any(
        getattr(request.node, "report_" + when, None) is not None
        and getattr(request.node, "report_" + when).failed
        for when in ("setup", "call")
    )
    if failed:
        print(f"--- {srv.name} log ({srv.tcti}) ---\n{srv.log()}")
    srv.close()


@pytest.fixture
def ectx(server):
    # A TCTI configuration string, as most pytss users write it.
    ctx = ESAPI(server.tcti)
    ctx.startup(TPM2_SU.CLEAR)
    yield ctx
    ctx.close()
