"""The HTTP API: a FastAPI app (`app.create_app`) served by Ray Serve (`serve.start_api`).

Kept free of imports here, so that importing the package does not start loading Ray Serve.
"""
