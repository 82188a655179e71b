"""irctest controller for osps: a fresh osps instance (watchdog, dispatcher and
two workers serving IRC) per test class, on the port irctest picks, with its
own run dir and chat data dir in a temporary directory.

Used by scripts/irctest.sh (PYTHONPATH=tests/irctest, --controller osps_controller).
"""

import os
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Optional, Set, Type

from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.runner import NotImplementedByController

OSPS_ROOT = Path(__file__).resolve().parents[2]


def _free_port_block(n: int) -> int:
    """A dispatcher port with n free ports after it (its workers')."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        if base + n > 65535:
            continue
        try:
            held = []
            for p in range(base, base + n + 1):
                t = socket.socket()
                held.append(t)
                t.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for t in held:
                t.close()
    raise RuntimeError("no free port block")


class OspsController(BaseServerController, DirectoryBasedController):
    software_name = "osps"
    supported_sasl_mechanisms: Set[str] = {"PLAIN", "SCRAM-SHA-256"}
    supports_sts = False
    # irctest syncs a client by PING/PONG on that client's connection. A message from a client served by
    # another worker travels worker -> dispatcher -> worker, so it can land just after the PONG of a
    # connection on another worker: give cross-worker fan-out a moment, as irctest does for Sable.
    sync_sleep_time = 0.05

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: Optional[str],
        ssl: bool,
        run_services: bool,
        faketime: Optional[str],
        websocket_hostname: Optional[str],
        websocket_port: Optional[int],
    ) -> None:
        if ssl:
            raise NotImplementedByController("TLS")
        # NickServ and ChanServ are built in: run_services needs nothing more.
        if websocket_hostname is not None or websocket_port is not None:
            raise NotImplementedByController("Websocket")
        assert self.proc is None
        self.port = port
        self.hostname = hostname
        self.create_config()
        assert self.directory
        workers = int(os.environ.get("OSPS_IRCTEST_WORKERS", "2"))
        # The real binary: --allow-run is checked against the path the children are spawned with.
        deno = os.path.realpath(os.environ.get("DENO", shutil.which("deno") or "deno"))
        dispatcher_port = _free_port_block(workers)
        command = [
            deno,
            "run",
            "--no-prompt",
            f"--config={OSPS_ROOT / 'deno.json'}",
            "--allow-net",
            "--allow-ffi",
            "--allow-read=/tmp",
            "--allow-write=/tmp",
            f"--allow-run={deno}",
            str(OSPS_ROOT / "main.ts"),
            "watchdog",
            f"--host={hostname}",
            f"--port={dispatcher_port}",
            f"--workers={workers}",
            f"--run-dir={self.directory / 'run'}",
            f"--irc-port={port}",
            f"--data-dir={self.directory / 'data'}",
            "--irc-server-name=My.Little.Server",
            "--log-level=warning",
            # irctest logs in many times from one address, with passwords like "bar".
            "--irc-auth-rate=0",
            "--irc-password-min=1",
        ]
        if password is not None:
            command.append(f"--irc-password={password}")
        self.proc = self.execute(command)


    def wait_for_services(self) -> None:
        """The services are built in: they are up with the server."""

    def registerUser(self, case, username: str, password: Optional[str] = None) -> None:
        """Registers an account through the built-in NickServ, as a user would."""
        client = case.addClient(show_io=False)
        case.sendLine(client, "NICK " + username)
        case.sendLine(client, "USER r e g :user")
        while case.getRegistrationMessage(client).command != "001":
            pass
        case.getMessages(client)
        assert password
        case.sendLine(client, "NS REGISTER " + password)
        msg = case.getMessage(client)
        assert msg.params == [username, "Account created"], msg
        case.sendLine(client, "QUIT")
        case.assertDisconnected(client)


def get_irctest_controller_class() -> Type[OspsController]:
    return OspsController
