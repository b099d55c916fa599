# syntax=docker/dockerfile:1
# One image for the three services (user, product, order); compose.yml chooses the program with
# `command`. Built by `docker compose up --build`, or alone: docker build -t commerce .
#
# The build needs the whole workspace (every member's manifest and sources), migrations/ (embedded
# by sqlx::migrate! at compile time) and nats/streams/ (embedded by the shared crate);
# .dockerignore keeps the rest out.

# The toolchain of Cargo.toml's rust-version.
FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY . .
# The registry and the target directory live in BuildKit caches, so a rebuild compiles only what
# changed; the binaries are copied out of the cache in the same step.
RUN --mount=type=cache,id=commerce-cargo-registry,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,id=commerce-cargo-git,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=commerce-target,target=/src/target,sharing=locked \
    cargo build --release --locked -p user -p product -p order \
    && mkdir -p /out \
    && cp target/release/user target/release/product target/release/order /out/

# The same Debian release as the build stage, so the binaries find the glibc they were linked to.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid, so that volumes and policies (runAsNonRoot, file ownership) can name it.
RUN groupadd --system --gid 10001 commerce \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin commerce
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
# No default program: the service is the command, e.g. `docker run commerce order`.
