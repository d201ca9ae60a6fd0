"""python -m services.embedder"""

from aiohttp import web

from services.embedder.app import create_app
from shared.service import start

config = start("embedder")
web.run_app(create_app(config), host=config.embedder.host, port=config.embedder.port, print=None,
            handler_cancellation=True)
