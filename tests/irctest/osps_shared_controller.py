"""irctest controller for ONE long-running osps started outside irctest
(scripts/irctest.sh osps-shared): irctest's own external_server controller
(IRCTEST_SERVER_HOSTNAME/PORT, IRCTEST_SERVER_SASL_MECHS), plus what osps's
built-in services give a shared server: nothing to wait for, and accounts
made as a user makes them (/msg NickServ REGISTER), so the test classes that
need services or an account run instead of failing on the controller.
Nothing else differs from external_server (no sync sleep, no restarts).
"""

from typing import Type

from irctest.controllers.external_server import ExternalServerController

from osps_controller import OspsController


class OspsSharedController(ExternalServerController):
    software_name = "osps (shared)"
    registerUser = OspsController.registerUser

    def wait_for_services(self) -> None:
        """The services are built in: they are up with the server."""


def get_irctest_controller_class() -> Type[OspsSharedController]:
    return OspsSharedController
