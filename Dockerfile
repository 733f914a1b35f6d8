# modelreg: multi-stage build. Dependencies are compiled in their own layer (cargo-chef), so a
# source change rebuilds only the crate itself.
FROM rust:1.95-slim-bookworm AS chef
RUN cargo install cargo-chef --locked
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --bin modelreg

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/modelreg --create-home modelreg
COPY --from=builder /src/target/release/modelreg /usr/local/bin/modelreg
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
