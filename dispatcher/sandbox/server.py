"""Running the sandbox: in the foreground for ``faxctl sandbox``, or in a thread for tests."""

from __future__ import annotations

import contextlib
import threading
from types import TracebackType
from typing import Any, cast

import httpx
import uvicorn

from dispatcher.processes import free_port, wait_for
from dispatcher.sandbox.app import SandboxApp, create_app
from dispatcher.sandbox.context import SandboxConfig

__all__ = ["SandboxServer", "run"]


def run(
    host: str = "127.0.0.1", port: int = 8765, config: SandboxConfig | None = None, **overrides: Any
) -> None:
    """Serve the sandbox until interrupted."""
    uvicorn.run(create_app(config, **overrides), host=host, port=port, log_level="info")


class SandboxServer:
    """The sandbox on a free local port in a background thread.

    ``with SandboxServer(time_scale=0.01) as sandbox: httpx.get(sandbox.url + "/_sandbox/sends")``
    """

    def __init__(
        self, config: SandboxConfig | None = None, host: str = "127.0.0.1", **overrides: Any
    ) -> None:
        self.app: SandboxApp = create_app(config, **overrides)
        self.host = host
        self.port = free_port(host=host)
        self.url = f"http://{host}:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host=host,
                port=self.port,
                log_level="warning",
                timeout_graceful_shutdown=1,
                lifespan="on",
            )
        )
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 10.0) -> SandboxServer:
        thread = threading.Thread(target=self._server.run, name="sandbox", daemon=True)
        self._thread = thread
        thread.start()
        with contextlib.suppress(TimeoutError):  # said below, as when the thread ends first
            wait_for(
                lambda: self._server.started or not thread.is_alive(),
                timeout,
                what=f"the sandbox on {self.url} starting",
                interval=0.01,
            )
        if not self._server.started:
            raise RuntimeError(f"sandbox did not start on {self.url}")
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call a ``/_sandbox`` control endpoint and return its JSON."""
        response = httpx.request(method, f"{self.url}/_sandbox{path}", timeout=10, **kwargs)
        response.raise_for_status()
        return response.json()

    def reset(self) -> None:
        self.control("POST", "/reset")

    def sends(self, **filters: str) -> list[dict[str, Any]]:
        """The send log: every transmission accepted, oldest first."""
        return cast("list[dict[str, Any]]", self.control("GET", "/sends", params=filters))

    def advance(self, seconds: float) -> None:
        """Move the sandbox clock forward (real seconds, after FAX_TIME_SCALE)."""
        self.control("POST", "/advance", params={"seconds": seconds})

    def freeze(self, frozen: bool = True) -> None:
        """Freeze the sandbox clock (it then moves only on ``advance``) until reset."""
        self.control("POST", "/clock", params={"frozen": frozen})

    def faults(self, **settings: Any) -> dict[str, Any]:
        """Change fault settings at run time (see ``FaultConfig``); returns the new ones."""
        return cast("dict[str, Any]", self.control("PUT", "/faults", json=settings))

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
