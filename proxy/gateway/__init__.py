"""Gateway mode: the same proxy at the mesh's edge (`isthmus gateway run`), configured by Istio's Gateway.

A gateway registers as a workload with its labels (so a Gateway's `selector` picks it, as Istio's
`istio: ingressgateway`), listens on one port per `--port LISTEN:GATEWAY_PORT`, and serves what pilot
compiled for it (proto/gateway_xds.GatewayListeners): TLS terminated per server (SNI picks the server
and its certificate) or passed through by SNI, HTTP routed by Host through the same route, resilience and
endpoint stages as a sidecar's outbound side, after the gateway's own authentication, authorization and
rate limits. TLS credentials named by `credentialName` come from the ca's secret store (proto/secrets.py).
"""
