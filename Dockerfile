# syntax=docker/dockerfile:1
# Multi-stage build: compile with the locked dependency set, ship a slim runtime as a non-root
# user. Data lives on the volume mounted at /data (see fly.toml).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin vectord

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin vectord \
    && mkdir -p /data && chown vectord:vectord /data
COPY --from=build /src/target/release/vectord /usr/local/bin/vectord
USER vectord
VOLUME ["/data"]
# 8000: the Chroma API; 9091: /metrics without auth, for Fly's scraper (fly.toml [metrics]).
EXPOSE 8000 9091
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
    CMD curl -fsS http://127.0.0.1:8000/api/v2/healthcheck || exit 1
ENTRYPOINT ["/usr/local/bin/vectord"]
CMD ["run", "--path", "/data", "--host", "0.0.0.0", "--port", "8000", "--metrics-port", "9091"]
