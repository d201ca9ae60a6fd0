"""python -m services.cache"""

from services.cache.app import create_app
from shared.service import exit_on_config_error, serve, start

config = start("cache")
with exit_on_config_error("cache"):  # a verifier model that cannot be loaded stops the start with one line
    serve(create_app(config), config.cache.host, config.cache.port, handler_cancellation=True)
