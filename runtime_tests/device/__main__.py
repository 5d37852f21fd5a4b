"""`python -m llamaport.runtime_tests.device JOB.json --out DIR` on the host; the zipped device_runner.pyz
on a device runs the same main."""

import sys

from .main import main

sys.exit(main())
