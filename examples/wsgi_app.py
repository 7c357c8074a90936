"""A WSGI app for gunicorn, which reads LISTEN_FDS itself:

    pip install gunicorn
    cd examples && sup start "gunicorn wsgi_app:app" --name web --listen 127.0.0.1:8000 \
        --health http://127.0.0.1:8000/health

And the same idea for an ASGI app under uvicorn (pip install uvicorn):

    cd examples && sup start "uvicorn asgi_app:app --fd 3" --name asgi --listen 127.0.0.1:8001
"""
import os


def app(environ, start_response):
    body = b'{"ok": true}\n' if environ.get("PATH_INFO") == "/health" else f"hello from pid {os.getpid()}\n".encode()
    start_response("200 OK", [("content-type", "text/plain"), ("content-length", str(len(body)))])
    return [body]
