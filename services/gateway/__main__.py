"""python -m services.gateway"""

from aiohttp import web

from services.gateway.app import create_app
from shared.service import start

config = start("gateway")
web.run_app(create_app(config), host=config.gateway.host, port=config.gateway.port, print=None,
            handler_cancellation=True)
