"""fax-dispatcher: a distributed fax dispatcher on Celery."""
