"""RequestAuthentication (JWT) on the inbound side: the authentication stage of the inbound pipeline.

    authn.py      the stage: rules combined as Istio configures Envoy's jwt_authn; 401 / 403; JwtStage
    provider.py   one jwtRule compiled once per push: issuer, time, audiences, keys, outputs, cache
    locations.py  where tokens are read from (headers with prefix, query parameters, cookies), and removed
    token.py      a token taken apart and checked as Envoy parses it (MAX_TOKEN_BYTES)
    jwks.py       a JWKS parsed once into PyJWT keys (Envoy's key rules); a failed jwksUri fetch
    signature.py  the signature checked with PyJWT's algorithms, by kid and alg (no algorithm confusion)
    outputs.py    RequestAuth (principal `<iss>/<sub>`, audiences, presenter, claims) and claim headers
    cache.py      verified tokens per rule (Envoy's JwtCache defaults: 100 tokens up to 4 KiB)
    status.py     Envoy's failure texts and response code details

The sidecar receives every key set inline: pilot fetches jwksUri (JwtProvider.jwks_error when it could not).
"""
