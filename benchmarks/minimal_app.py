"""The baseline of benchmarks/load.py: the smallest Flask app answering JSON (`gunicorn
benchmarks.minimal_app:app`), served with the same gunicorn settings as the service."""

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/ping")
def ping():
    return jsonify({"status": "ok"})
