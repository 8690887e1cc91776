"""The dashboard server's logs, set up as every process's (configs/logs.py): ``panel serve
dashboards/app.py --setup dashboards/serve_logs.py`` runs this once per server process before it serves,
so its records (Bokeh's included) go to stderr and to ``DATA_DIR/logs/dashboard.log`` in the form
``LOG_FORMAT`` says. Tornado's line per HTTP request is kept for ``LOG_LEVEL=DEBUG``. Settings that do not
load leave Bokeh's logging as it is: the page then says what is wrong with them."""

from __future__ import annotations

import contextlib
import logging

from configs.logs import configure_logging
from configs.settings import ConfigError, load_settings

with contextlib.suppress(ConfigError):  # told on the page, not here
    settings = load_settings()
    configure_logging(settings, "dashboard")
    if settings.log_level != "DEBUG":
        logging.getLogger("tornado.access").setLevel(logging.WARNING)
