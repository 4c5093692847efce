# sqlgate container image.
#
#   docker build -t sqlgate .
#   docker run --rm -p 6432:6432 -v "$PWD/my-sqlgate.toml:/etc/sqlgate/sqlgate.toml:ro" sqlgate
#
# The image holds the binary and the shipped rules (/etc/sqlgate/rules); the
# config is mounted at /etc/sqlgate/sqlgate.toml. With `rules = ["rules"]` in
# that file, the shipped rules are used (relative paths resolve against the
# config file's folder). The audit log belongs under /var/lib/sqlgate, which is
# writable by the unprivileged `sqlgate` user the server runs as.

# --- build ------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# pg_query (PostgreSQL's own parser) is built with bindgen and prost-build.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libclang-dev protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
# Only what the build needs (Cargo.toml names the criterion bench, so
# benches/ must be present for the manifest to load).
COPY Cargo.toml Cargo.lock ./
COPY protocols protocols
COPY src src
COPY benches benches
RUN cargo build --release --locked --bin sqlgate

# --- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home-dir /var/lib/sqlgate --shell /usr/sbin/nologin sqlgate \
    && mkdir -p /etc/sqlgate /var/lib/sqlgate \
    && chown sqlgate:sqlgate /var/lib/sqlgate
COPY --from=build /src/target/release/sqlgate /usr/local/bin/sqlgate
COPY rules /etc/sqlgate/rules
USER sqlgate
WORKDIR /var/lib/sqlgate
# 6432: agents (PostgreSQL protocol); 9187: admin API (/healthz, /metrics).
EXPOSE 6432 9187
# sqlgate stops on SIGTERM: no new connections, open sessions drain
# (up to [limits] shutdown_timeout), the audit log is flushed and fsynced.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sqlgate"]
CMD ["serve", "--config", "/etc/sqlgate/sqlgate.toml"]
