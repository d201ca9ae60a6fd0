"""python -m services.embedder"""

from services.embedder.app import create_app
from services.embedder.backends import check_backend
from shared.service import exit_on_config_error, serve, start

config = start("embedder")
with exit_on_config_error("embedder"):
    check_backend(config.embedder)  # a missing ONNX export: one line saying what to run, not a traceback
serve(create_app(config), config.embedder.host, config.embedder.port, handler_cancellation=True)
