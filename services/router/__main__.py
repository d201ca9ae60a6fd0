"""python -m services.router"""

from services.router.app import create_app
from shared.service import serve, start

config = start("router")
serve(create_app(config), config.router.host, config.router.port, shutdown_timeout=config.router.shutdown_grace_s)
