"""``python -m lucidlm.cli ...`` (what ``torchrun -m lucidlm.cli train ...`` runs)."""

import sys

from lucidlm.cli import main

sys.exit(main())
