# syntax=docker/dockerfile:1
# The boifi control plane as a container image: built in a Rust image, run from a distroless
# image as a non-root user (uid 65532). Not built in this repository's CI (no Docker there);
# see docs/deploy-k8s.md.
#
#   docker build -t boifi-server:dev .

FROM docker.io/library/rust:1.95-bookworm AS build
# etcd-client's build script compiles etcd's protobuf definitions with protoc.
RUN apt-get update \
 && apt-get install -y --no-install-recommends protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p boifi-server \
 && install -D -m 0755 target/release/boifi-server /out/boifi-server

# glibc and libgcc only, no shell, no package manager; `nonroot` is uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/boifi-server /usr/local/bin/boifi-server
USER 65532:65532
ENV LISTEN_ADDR=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/boifi-server"]
