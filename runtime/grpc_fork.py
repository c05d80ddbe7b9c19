"""gRPC's fork handlers off in every process of ours that loads grpcio (through aetcd, the etcd client).

Import this module before grpc or aetcd. grpcio's wheels turn on GRPC_ENABLE_FORK_SUPPORT, which installs
pthread_atfork handlers: before every fork they stop gRPC's own threads and wait for them. We fork only to exec
(subprocess.Popen with a preexec_fn, multiprocessing's "spawn" for pilot's decode worker), which needs none of
that, and the wait can deadlock: a `make test` worker hung for good in fork(), inside gRPC's prefork handler,
its grpc_shutdown and timer threads waiting on gRPC's own lock, while it held the GIL, so no Python timeout
could end it (CI, 2026-12-01). grpc's issue tracker names the same hang and this cure
(grpc/grpc#13873, #17986, #22624). An operator who sets the variable keeps their choice.
"""

from __future__ import annotations

import os

VARIABLE = "GRPC_ENABLE_FORK_SUPPORT"
os.environ.setdefault(VARIABLE, "false")  # read by grpcio at import (Python) and at its first init (core)
