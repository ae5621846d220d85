"""The chat room example: ``make run`` serves it on http://127.0.0.1:8000/."""
