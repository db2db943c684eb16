# The `strata` binary (every role) in a small Debian image.
#   docker build -t strata:local .
#   docker run --rm -p 50051:50051 -p 8080:8080 strata:local serve

FROM rust:1.95-bookworm AS builder
# protoc, for crates that generate gRPC code at build time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends protobuf-compiler \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ENV CARGO_TARGET_DIR=/target
RUN cargo build --release --locked -p strata

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --create-home --home-dir /var/lib/strata strata \
    && mkdir -p /data /cache \
    && chown strata:strata /data /cache
COPY --from=builder /target/release/strata /usr/local/bin/strata
USER strata
WORKDIR /data
EXPOSE 50051 8080
ENTRYPOINT ["strata"]
CMD ["serve"]
