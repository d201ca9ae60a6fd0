"""python -m services.router"""

from services.router.app import create_app
from shared.service import exit_on_config_error, serve, start

config = start("router")
with exit_on_config_error("router"):  # a risk policy file that cannot be loaded stops the start with one line
    app = create_app(config)
serve(app, config.router.host, config.router.port, shutdown_timeout=config.router.shutdown_grace_s)
