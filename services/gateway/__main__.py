"""python -m services.gateway"""

from services.gateway.app import create_app
from shared.service import exit_on_config_error, serve, start

config = start("gateway")
with exit_on_config_error("gateway"):  # no keys where they are needed: refuse before listening
    app = create_app(config)
serve(app, config.gateway.host, config.gateway.port, handler_cancellation=True)
