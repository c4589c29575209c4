"""`python -m localai_app` is the same as the `localai-app` command."""

import sys

from localai_app.cli import main

sys.exit(main())
