"""The sidecar's methods by concern, each module a base class of proxy/main.py Sidecar, which assembles it:

    listeners.py      what the listeners are handed when built (pickers, checks, the log), binding them and
                      stopping them
    control_plane.py  the bus, pilot's pushes, registration, the workload identity and telemetry, in the background
    status.py         what the admin port, the debug subject and the "ready" line say of it
    errors.py         what stops it from starting (StartError, CredentialsError)
    parts.py          what it holds, declared for the modules above
"""
