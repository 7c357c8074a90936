"""An ASGI app for uvicorn, serving the socket sup holds (fd 3):

    pip install uvicorn
    cd examples && sup start "uvicorn asgi_app:app --fd 3" --name asgi --listen 127.0.0.1:8001
"""
import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b'{"ok": true}\n' if scope["path"] == "/health" else f"hello from pid {os.getpid()}\n".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
