"""Used before gunicorn forks (--preload), then by every worker."""

from __future__ import annotations

import os

from flask import Flask

from flask_fogredis import FogRedis

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ["REDIS_URL"]
fog = FogRedis(app)

with app.app_context():
    fog.set("preloaded", "parent")  # the parent opens a pooled connection


@app.get("/echo/<token>")
def echo(token: str) -> str:
    fog.set(f"echo:{token}", token)
    count = fog.client.incr("requests")
    return f"{os.getpid()} {token} {fog.get(f'echo:{token}')!s} {count}"
