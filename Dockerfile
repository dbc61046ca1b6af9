FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml setup.cfg README.md ./
COPY flask_fogredis ./flask_fogredis
RUN pip install --no-cache-dir ".[jwt,memory,hiredis,prometheus]" "gunicorn>=21"
COPY example_app ./example_app
COPY wsgi.py gunicorn.conf.py ./
RUN useradd --create-home app
USER app
EXPOSE 8000
CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
