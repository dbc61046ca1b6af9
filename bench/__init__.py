"""The benchmark: Flask-FogRedis against its peers, side by side.

``make bench`` (or ``python -m bench``) runs every scenario against a
redis-server of its own on a loopback port and prints medians and ratios.
"""
