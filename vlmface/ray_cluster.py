"""Joining (or starting) the Ray instance of `--engine ray`, and what the run records about it.

- A local instance (no address) and a cluster at a loopback address are confined to 127.0.0.1:
  Ray otherwise replaces a loopback address by the machine's interface address (its
  `resolve_ip_for_localhost`) and its servers then listen on every interface.
- Token authentication: the token is read by Ray itself, from `RAY_AUTH_TOKEN`, the file named
  by `RAY_AUTH_TOKEN_PATH`, or `~/.ray/auth_token`. Ray sends it to an explicitly given address
  only in `RAY_AUTH_MODE=token`, and a driver in that mode cannot work with a cluster without
  authentication (its actors die at start). So, unless RAY_AUTH_MODE is set, the head is asked
  first without a token and token mode is switched on only when the head asks for one.
  The token is never printed or recorded.
- The address is checked before `ray.init` (bounded time, one line on failure) so a wrong
  token or an unreachable head never produces Ray's retry loop and traceback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

from vlmface.errors import VlmfaceError

CONNECT_TIMEOUT_S = 5.0
LOOPBACK = "127.0.0.1"
# Ray reads this at import: off, it takes this machine's address to be 127.0.0.1 (servers included).
CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
TOKEN_HELP = ("set RAY_AUTH_TOKEN to the cluster's token, point RAY_AUTH_TOKEN_PATH at a file holding it, "
              "or put it in ~/.ray/auth_token (`ray get-auth-token` on the head prints it)")


class RayConnectionError(VlmfaceError):
    """The Ray cluster cannot be reached or refuses our token."""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise RayConnectionError(f"Ray address {address!r} is not HOST:PORT (e.g. 127.0.0.1:6379) or 'auto'")
    return host.strip("[]"), int(port)


def _confine_to_loopback() -> None:
    """This process and the Ray processes it starts use and listen on 127.0.0.1 only."""
    os.environ[CLUSTER_SWITCH] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # in case ray was imported before the variable was set


def _quiet(verbose: bool) -> None:
    """Ray's own log lines and progress bars off (errors still shown), unless verbose."""
    if not verbose:
        # Ray Data resets its loggers' levels itself; its errors come back as the exception.
        os.environ.setdefault("RAY_DATA_LOG_LEVEL", "CRITICAL")
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")  # Ray's C++ core, on this process's stderr
    level = logging.INFO if verbose else logging.ERROR
    for name in ("ray", "ray.data", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(level)
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = verbose
    context.enable_operator_progress_bars = verbose
    context.enable_auto_log_stats = False
    context.log_internal_stack_trace = verbose


@contextlib.contextmanager
def _no_native_stderr() -> Iterator[None]:
    """Ray's C++ client logs each failed attempt to fd 2; the probe reports once instead."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _probe(address: str) -> None:
    """Reach the head's GCS and authenticate once, within CONNECT_TIMEOUT_S; token mode switched
    on if the head asks for a token and the user did not choose a mode (RAY_AUTH_MODE)."""
    from ray.exceptions import AuthenticationError

    try:
        _probe_once(address)
    except AuthenticationError:
        if "RAY_AUTH_MODE" in os.environ:
            raise _token_refused(address) from None
        _enable_token_if_available()
        try:
            _probe_once(address)
        except AuthenticationError:
            raise _token_refused(address) from None


def _token_refused(address: str) -> RayConnectionError:
    return RayConnectionError(f"the Ray cluster at {address} refused the authentication token "
                              f"(missing or wrong): {TOKEN_HELP}")


def _probe_once(address: str) -> None:
    host, port = _split(address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise RayConnectionError(f"no Ray cluster answers at {address} within {CONNECT_TIMEOUT_S:g} s "
                                 f"({exc.strerror or exc}); start one with `ray start --head` "
                                 "or fix --ray-address / RAY_ADDRESS") from None
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    try:
        with _no_native_stderr():
            GcsClient(address=address)
    except AuthenticationError:
        raise
    except Exception as exc:
        raise RayConnectionError(f"cannot join the Ray cluster at {address}: {exc}") from None


def _enable_token_if_available() -> None:
    from ray._private.authentication.authentication_token_setup import (
        maybe_enable_token_auth_if_token_available)

    if not maybe_enable_token_auth_if_token_available(warn_if_disabled=False):
        raise RayConnectionError(f"the Ray cluster asks for an authentication token and none was found: {TOKEN_HELP}")


def _target(address: str | None) -> str | None:
    """HOST:PORT of the cluster to join (None: start a local one). `auto` and RAY_ADDRESS as in Ray."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address in (None, "local"):
        return None
    if address == "auto":
        from ray._private.services import get_ray_address_from_environment

        try:
            return get_ray_address_from_environment("auto", None)
        except ConnectionError as exc:
            raise RayConnectionError(f"--ray-address auto: {exc}") from None
    if address.startswith("ray://"):
        raise RayConnectionError(f"--ray-address {address}: Ray Client (ray://) is not supported; give the "
                                 "head's address HOST:PORT (the one `ray start --head` printed)")
    return address


def init_ray(address: str | None, verbose: bool = False) -> None:
    """Join the cluster at `address` (or `auto`, or RAY_ADDRESS) or start a loopback-only local one."""
    import ray

    if ray.is_initialized():
        return
    target = _target(address)
    if target is None or _is_loopback(_split(target)[0]):
        _confine_to_loopback()
    _quiet(verbose)
    if target is None:
        _ray_init(verbose, include_dashboard=False, _node_ip_address=LOOPBACK)
        return
    if _is_loopback(_split(target)[0]):
        target = f"{LOOPBACK}:{_split(target)[1]}"
    _probe(target)
    try:
        _ray_init(verbose, address=target)
    except Exception as exc:  # Ray's own ConnectionError/RuntimeError: one line
        raise RayConnectionError(f"cannot join the Ray cluster at {target}: {exc}") from None


def _ray_init(verbose: bool, **kwargs: Any) -> None:
    """ray.init; unless verbose, what its C++ core prints meanwhile (a line saying it set the log
    level we asked for) is dropped: its failures still come back as the exception."""
    import ray

    quiet = contextlib.nullcontext() if verbose else _no_native_stderr()
    with quiet:
        ray.init(log_to_driver=verbose, logging_level=logging.INFO if verbose else logging.ERROR, **kwargs)


def cluster_facts() -> dict[str, Any]:
    """Ray version and each live node's CPUs/GPUs: no addresses, no token."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    per_node = sorted(({"cpus": n["Resources"].get("CPU", 0), "gpus": n["Resources"].get("GPU", 0)}
                       for n in nodes), key=lambda r: (-r["gpus"], -r["cpus"]))
    return {"ray_version": ray.__version__, "nodes": len(nodes), "node_resources": per_node}
