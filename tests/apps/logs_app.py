"""Served by gunicorn with its own --error-logfile; Redis is down."""

from __future__ import annotations

import os

from flask import Flask

from flask_fogredis import FogRedis

app = Flask(__name__)
app.config["REDIS_URL"] = os.environ["REDIS_URL"]
FogRedis(app)
