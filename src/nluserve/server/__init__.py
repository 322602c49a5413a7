"""Process management: uvicorn for one worker, gunicorn with uvicorn workers for several."""
