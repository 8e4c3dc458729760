# Redis for deploy/smoke.sh only: Debian's redis-server on the local debootstrap base.
ARG BASE_IMAGE=auditor-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && mkdir -p /data && chown redis:redis /data
USER redis
WORKDIR /data
CMD ["redis-server", "--appendonly", "yes", "--dir", "/data"]
