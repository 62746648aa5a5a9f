"""``python -m recsys.serve``: see ``recsys.serve.app.main``."""

import sys

from recsys.serve.app import main

sys.exit(main())
