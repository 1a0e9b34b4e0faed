"""Suite-wide settings: pykka reads time.monotonic for future timeouts, so freezegun must leave it alone."""

import freezegun

freezegun.configure(extend_ignore_list=["pykka"])
