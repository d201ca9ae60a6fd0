"""python -m services.router"""

from aiohttp import web

from services.router.app import create_app
from shared.service import start

config = start("router")
web.run_app(create_app(config), host=config.router.host, port=config.router.port, print=None,
            shutdown_timeout=config.router.shutdown_grace_s)
