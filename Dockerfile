# syntax=docker/dockerfile:1
# Two images from one build:
#   docker build -t prechat-enricher .                     # production: the service only, built-in defaults
#   docker build --target demo -t prechat-enricher:demo .  # the demo: service + sandbox (prechat-sim) + config/
#   docker run --rm prechat-enricher prechat-enricher --help
# docker-compose.yml builds the demo image for the whole demo (RabbitMQ + sandbox + service).

# --- build -------------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# The registry and target caches survive between builds (BuildKit); the binaries are copied
# out of the cached target directory in the same step. --workspace: the sandbox is a member.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --workspace --bins \
    && mkdir -p /out \
    && cp target/release/prechat-enricher target/release/prechat-sim /out/

# --- common runtime ----------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# ca-certificates: TLS to Genesys Cloud and the CRM; curl: the healthchecks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin prechat
WORKDIR /app
ENV PATH="/app:${PATH}"
USER prechat

# --- demo: the service, the sandbox and the sandbox profile --------------------------------------
FROM runtime AS demo
COPY --from=builder /out/prechat-enricher /out/prechat-sim /app/
COPY config/ /app/config/
ENV PRECHAT_CONFIG_DIR=/app/config
EXPOSE 8080 9000
CMD ["prechat-enricher", "serve"]

# --- production (the default target): the service alone ----------------------------------------
# No sandbox binary and no sandbox profile; the defaults are compiled in and every key comes
# from PRECHAT__* variables (or a config directory mounted at PRECHAT_CONFIG_DIR).
FROM runtime AS production
COPY --from=builder /out/prechat-enricher /app/
EXPOSE 8080
CMD ["prechat-enricher", "serve"]
