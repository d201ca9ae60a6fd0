"""python -m services.gateway"""

from services.gateway.app import create_app
from shared.service import serve, start

config = start("gateway")
serve(create_app(config), config.gateway.host, config.gateway.port, handler_cancellation=True)
