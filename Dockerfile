# syntax=docker/dockerfile:1
# modelreg: multi-stage build. The cargo registry and the target folder are BuildKit cache
# mounts, so a rebuild compiles only what changed. (vendor/ holds a patched dependency: see
# vendor/README.md.)
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin modelreg \
    && cp target/release/modelreg /usr/local/bin/modelreg

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/modelreg --create-home modelreg
COPY --from=builder /usr/local/bin/modelreg /usr/local/bin/modelreg
USER modelreg
WORKDIR /var/lib/modelreg
# Configuration comes from the environment only (see README). Off loopback, authentication is
# required unless explicitly waived.
ENV MODELREG_LISTEN=0.0.0.0:8080 \
    MODELREG_AUTH=required \
    MODELREG_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["modelreg"]
CMD ["serve"]
