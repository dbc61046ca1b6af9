"""The extensions, created once and bound to the app in ``create_app``."""

from flask_jwt_extended import JWTManager

from flask_fogredis import FogRedis

fog = FogRedis()
jwt = JWTManager()
