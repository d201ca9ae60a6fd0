"""python -m services.cache"""

from services.cache.app import create_app
from shared.service import serve, start

config = start("cache")
serve(create_app(config), config.cache.host, config.cache.port, handler_cancellation=True)
