# syntax=docker/dockerfile:1
# Container images of peerd, scheduler, p2pctl and sim, one `--target` each:
#
#   docker build --target peerd     -t REGISTRY/p2pimg/peerd:TAG .
#   docker build --target scheduler -t REGISTRY/p2pimg/scheduler:TAG .
#   docker build --target p2pctl    -t REGISTRY/p2pimg/p2pctl:TAG .
#   docker build --target sim       -t REGISTRY/p2pimg/sim:TAG .
#
# The binary is /usr/local/bin/NAME and the entrypoint; the base is distroless cc (glibc,
# libgcc, CA certificates, /etc/passwd with nonroot), run as 65532:65532, as
# deploy/kubernetes expects (read-only root filesystem). Needs BuildKit (the cache mounts).
# Not built on the project's machines (no Docker, no network for base images); the image
# that IS tested comes from deploy/image/build.sh, same layout (deploy/image/README.md).

# The toolchain the project builds and tests with (`rustc --version`); the workspace's
# rust-version (the minimum) is 1.88.
ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# No protoc needed: api/build.rs compiles the .proto files with protox (pure Rust).
# target/ is a cache mount, so the binaries are copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p peer -p sched -p sim \
        --bin peerd --bin scheduler --bin p2pctl --bin sim \
 && mkdir -p /out \
 && cp target/release/peerd target/release/scheduler target/release/p2pctl target/release/sim /out/

FROM gcr.io/distroless/cc-debian12:nonroot AS peerd
COPY --from=build /out/peerd /usr/local/bin/peerd
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/peerd"]

FROM gcr.io/distroless/cc-debian12:nonroot AS scheduler
COPY --from=build /out/scheduler /usr/local/bin/scheduler
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/scheduler"]

FROM gcr.io/distroless/cc-debian12:nonroot AS p2pctl
COPY --from=build /out/p2pctl /usr/local/bin/p2pctl
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/p2pctl"]

# `sim sweep --emit-job` runs `sim sweep-point ...` from this image (command "sim", on PATH).
FROM gcr.io/distroless/cc-debian12:nonroot AS sim
COPY --from=build /out/sim /usr/local/bin/sim
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/sim"]
