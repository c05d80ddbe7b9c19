"""The admin port's /ready (proxy/admin.py): 200 once ready, else 503 with why, the sidecar's own reason
(a refused registration) in place of the default when it has one."""

from __future__ import annotations

from proxy.admin import NOT_READY, AdminServer


def test_ready_is_200_when_ready_and_503_with_the_default_reason_otherwise() -> None:
    assert AdminServer("127.0.0.1", 0, lambda: True, dict, dict).respond("GET", "/ready") == (200, "text/plain",
                                                                                              b"LIVE\n")
    status, _, body = AdminServer("127.0.0.1", 0, lambda: False, dict, dict, not_ready=lambda: "").respond(
        "GET", "/ready")
    assert (status, body) == (503, f"NOT READY: {NOT_READY}\n".encode())


def test_a_not_ready_sidecar_says_why_when_it_knows() -> None:
    why = "the registry refuses this workload's registration: workload id 'w' is already registered by ..."
    status, _, body = AdminServer("127.0.0.1", 0, lambda: False, dict, dict, not_ready=lambda: why).respond(
        "GET", "/ready")
    assert (status, body) == (503, f"NOT READY: {why}\n".encode())


def test_a_sidecar_with_config_whose_registration_is_refused_is_not_ready() -> None:
    """Its lease was lost and another took its id: it keeps its config, but it is out of the mesh."""
    why = "the registry refuses this workload's registration: workload id 'w' is already registered by ..."
    status, _, body = AdminServer("127.0.0.1", 0, lambda: True, dict, dict, not_ready=lambda: why).respond(
        "GET", "/ready")
    assert (status, body) == (503, f"NOT READY: {why}\n".encode())
    assert AdminServer("127.0.0.1", 0, lambda: True, dict, dict, not_ready=lambda: "").respond(
        "GET", "/ready")[0] == 200
