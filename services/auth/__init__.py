"""The auth service: nats-server's auth callout for proxies, and proxies' bus credentials."""
