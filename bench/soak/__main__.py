"""``python -m bench.soak``: run the chaos soak (see ``run.py``)."""

import sys

from .run import main

sys.exit(main())
