"""fax-dispatcher: a distributed fax dispatcher on Celery.

What a service on another host needs is the HTTP client, offered here::

    from dispatcher import FaxClient

The rest of the package is the service itself.
"""

from dispatcher.client import *  # noqa: F403
from dispatcher.client import __all__ as __all__
