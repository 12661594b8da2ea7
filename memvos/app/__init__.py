"""The web app (`memvos app`): a local FastAPI server and a plain HTML/JS page to open a video,
mark objects, propagate, correct and export; see memvos/app/server.py for the API."""
