"""The sidecar's workload identity (Istio's pilot-agent SDS side, for VMs): its key and SPIFFE certificate,
obtained from the ca over the bus, renewed before expiry, kept in the proxy's state directory, the trust
bundle, and the TLS contexts the mTLS data path uses. Nothing here runs per request.

    keys        key pair, CSR, renewal proof
    spiffe      the SPIFFE ID of a workload and of a certificate
    material    a signed chain with its key: parsed once, checked, shown
    state_dir   key and chain on disk (0700 dir, 0600 files)
    schedule    when to renew; backoff between failed tries
    bundle      the trust bundle held, by version
    tls         server and client ssl.SSLContext, rebuilt on change; the peer's SPIFFE check
    ca_client   the ca's subjects: sign with a token or the current certificate, mint a token
    agent       the loop: first certificate, renewal, bundle updates
    certs       /certs in Envoy's shape
"""
