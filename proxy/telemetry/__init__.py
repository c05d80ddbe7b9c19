"""The sidecar's telemetry stages: Istio's standard metrics, trace context and spans, the peer metadata
exchange, and what is published to the telemetry service (proto/observations.py)."""
