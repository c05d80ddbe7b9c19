"""DNS for mesh names without iptables (`proxy run --dns-port`): the sidecar answers DNS for the services it
knows with a loopback address per service, and listens on that address for the service's ports (docs/dns.md).

    addresses.py   which 127.x.y.z each service name gets (deterministic, collisions resolved stably)
    names.py       which service a query name means (FQDN, <svc>.<ns>[.svc], short names in our namespace)
    answer.py      one DNS message in, one out (dnspython for the wire format), bounded
    server.py      the UDP and TCP servers on 127.0.0.1:<dns port>
    listeners.py   the per-service listeners, made and closed as pushes change the services
    sidecar.py     the above, wired to a sidecar's config and outbound listener
"""
