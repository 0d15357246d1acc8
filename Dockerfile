# syntax=docker/dockerfile:1
# prechat-enricher and prechat-sim (the sandbox) in one image:
#   docker build -t prechat-enricher .
#   docker run --rm prechat-enricher prechat-enricher --help
# See docker-compose.yml for the whole demo (RabbitMQ + sandbox + service).

# --- build -------------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit); the binaries are copied
# out of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bins \
    && mkdir -p /out \
    && cp target/release/prechat-enricher target/release/prechat-sim /out/

# --- run ---------------------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: TLS to Genesys Cloud and the CRM; curl: the compose healthchecks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin prechat
WORKDIR /app
COPY --from=builder /out/prechat-enricher /out/prechat-sim /app/
COPY config/ /app/config/
ENV PATH="/app:${PATH}" \
    PRECHAT_CONFIG_DIR=/app/config
USER prechat
EXPOSE 8080 9000
CMD ["prechat-enricher", "serve"]
