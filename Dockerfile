# Multi-stage build of the Charcha server + wasm client + CSS.
#   docker build -t charcha .      (docker compose up --build does this)

# --- build -------------------------------------------------------------------
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add wasm32-unknown-unknown
WORKDIR /src
# Tools first: cached until Cargo.lock changes the wasm-bindgen version.
COPY Cargo.toml Cargo.lock ./
RUN cargo install cargo-leptos --version 0.3.11 --locked \
 && cargo install wasm-bindgen-cli --locked --version \
      "$(awk '$0 == "name = \"wasm-bindgen\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
COPY package.json package-lock.json ./
RUN PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund
COPY . .
RUN cargo leptos build --release --split --lib-features hydrate,split \
 && target/release/charcha precompress target/site

# --- run ---------------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /app charcha \
 && mkdir -p /data && chown charcha /data
WORKDIR /app
COPY --from=build /src/target/release/charcha /app/charcha
# The content hashes of the client's file names (hash-files), read next to the binary.
COPY --from=build /src/target/release/hash.txt /app/hash.txt
COPY --from=build /src/target/site /app/site
COPY Leptos.toml /app/Leptos.toml
# MIMALLOC_PURGE_DELAY=0: mimalloc returns freed pages to the OS at once
# instead of after 10 ms of further allocator activity on that thread, which
# an idle server never has. With it a fresh server holds 15.5 KiB per idle
# WebSocket instead of 18.4-19.1 (BENCHMARKS.md, "Connections").
ENV MIMALLOC_PURGE_DELAY=0 \
    LEPTOS_OUTPUT_NAME=charcha \
    LEPTOS_SITE_ROOT=/app/site \
    LEPTOS_SITE_PKG_DIR=pkg \
    LEPTOS_SITE_ADDR=0.0.0.0:3000 \
    LEPTOS_ENV=PROD \
    CHARCHA_ENV=production \
    CHARCHA_DATA_DIR=/data
USER charcha
EXPOSE 3000
VOLUME ["/data"]
ENTRYPOINT ["/app/charcha"]
CMD ["serve"]
