# hybrid-cache node image (connected machines: pulls a Rust image and a Debian
# runtime). Offline machines: `cargo xtask compose images` builds the same runtime
# around a host-built binary with docker/Dockerfile.prebuilt.
#
#   docker build -t hybrid-cache:latest .
#   docker run -p 8080:8080 hybrid-cache:latest            # single L1-only node
#   docker run -e REDIS_URL=redis://redis:6379/0 ... hybrid-cache:latest node
ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# Dependencies first (cached layer while only sources change): build a stub crate.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > benches/l1.rs \
 && cargo build --release --locked --bin hybrid-cache \
 && rm -rf src benches
COPY src src
COPY benches benches
# Make sure cargo sees the real sources as newer than the stub build.
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin hybrid-cache \
 && install -m 0755 target/release/hybrid-cache /hybrid-cache

FROM ${RUNTIME_IMAGE} AS runtime
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN groupadd --system --gid 10001 hc \
 && useradd --system --uid 10001 --gid hc --home-dir /var/lib/hybrid-cache --no-create-home \
      --shell /usr/sbin/nologin hc \
 && mkdir -p /var/lib/hybrid-cache /certs \
 && chown hc:hc /var/lib/hybrid-cache /certs
COPY --from=builder /hybrid-cache /usr/local/bin/hybrid-cache
COPY docker/hc-http /usr/local/bin/hc-http
RUN chmod 0755 /usr/local/bin/hc-http
# Gossip is off by default (a plain `docker run` is a single node); a cluster
# sets HC_GOSSIP=0.0.0.0:7400 plus HC_TLS_* (see docker-compose.yml).
ENV HC_HTTP=0.0.0.0:8080 \
    APP_ENV=production \
    RUST_LOG=info
EXPOSE 8080/tcp 7400/udp
WORKDIR /var/lib/hybrid-cache
USER 10001:10001
# /health answers 200 for ok/degraded and 503 while isolated (bash /dev/tcp, no curl).
HEALTHCHECK --interval=2s --timeout=3s --start-period=5s --retries=3 \
  CMD ["hc-http", "/health"]
ENTRYPOINT ["hybrid-cache"]
CMD ["node"]
