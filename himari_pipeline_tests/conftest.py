"""Suite-wide settings shared by every test module."""

import os

# The every-row truncation check recomputes each row from its own prefix (a few ms per row and asset).
# Many tests materialize multi-year datasets only to test something else, so the suite checks every row
# of the newest 300 rows (plus the whole-prefix checks); the tests of the check itself set "all".
os.environ.setdefault("HIMARI_TRUNCATION_ROWS", "300")

# Test-only experiments (`smoke*`) are partitions of the training assets only when this is set, and it
# must be set before the definitions are first imported (any test module may be collected first).
os.environ.setdefault("HIMARI_TEST_EXPERIMENTS", "1")
