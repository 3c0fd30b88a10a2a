"""For a user who is not root: the tests that bind ports 53 and 113 (conftest.PRIVILEGED_MODULES), run whole in
a user and network namespace of the user's own (`unshare -Urn`), where the user is root and may bind them.

As root they run in the suite itself, and this module has no test.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from conftest import PRIVILEGED_MODULES, need

if os.geteuid() != 0:

    def test_the_privileged_port_tests_pass_in_a_user_namespace():
        import subprocess

        tests = Path(__file__).parent
        inner = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--hypothesis-profile=ci",
                 *(str(tests / name) for name in PRIVILEGED_MODULES)]
        done = subprocess.run([need("unshare"), "--user", "--map-root-user", "--net", "sh", "-c",
                               'ip link set lo up && exec "$@"', "sh", *inner],
                              cwd=tests.parent, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
        summary = done.stdout.strip().splitlines()[-1]
        assert re.fullmatch(r"\d+ passed in .*", summary), summary  # none failed, none skipped
