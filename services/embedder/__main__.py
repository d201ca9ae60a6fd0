"""python -m services.embedder"""

from services.embedder.app import create_app
from shared.service import serve, start

config = start("embedder")
serve(create_app(config), config.embedder.host, config.embedder.port, handler_cancellation=True)
