# PostgreSQL for deploy/smoke.sh only: Debian's postgresql-15 on the local debootstrap base (no image
# registry is needed). Same contract as the official image's basics: POSTGRES_USER / POSTGRES_PASSWORD /
# POSTGRES_DB on first start, data in /var/lib/postgresql/data; PGPORT and PGHOST_LISTEN choose the socket.
ARG BASE_IMAGE=auditor-base:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
 && mkdir -p /var/lib/postgresql/data /var/run/postgresql \
 && chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql \
 && chmod 700 /var/lib/postgresql/data
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH \
    PGDATA=/var/lib/postgresql/data \
    PGPORT=5432 \
    PGHOST_LISTEN=*
USER postgres
STOPSIGNAL SIGINT
ENTRYPOINT ["sh", "/usr/local/bin/postgres-entrypoint.sh"]
