"""python -m services.cache"""

from aiohttp import web

from services.cache.app import create_app
from shared.service import start

config = start("cache")
web.run_app(create_app(config), host=config.cache.host, port=config.cache.port, print=None,
            handler_cancellation=True)
