# syntax=docker/dockerfile:1

# pqwrap as a container image: built with the official Rust image, run on distroless/cc
# (glibc and libgcc only: no shell, no package manager) as a non-root user.
#
#   docker build -t pqwrap:0.1.0 .
#   docker run --rm --read-only \
#       -v "$PWD/secrets:/run/secrets/pqwrap:ro" -v /srv/archive:/data \
#       pqwrap:0.1.0 rewrap -i /run/secrets/pqwrap/identity.txt \
#           -R /run/secrets/pqwrap/recipients.txt /data
#
# docs/INSTALL.md describes the image's contract (paths, user, tags) for the Kubernetes and
# Slurm examples.

# The build and runtime stages must share a Debian release, so that the binary needs no
# newer glibc than the runtime has: bookworm here, distroless's debian12 below.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY . .
# --locked: the image links exactly the crate versions in Cargo.lock, which are the ones
# `pqwrap --version` reports.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p pqwrap-cli \
    && install -D -m 0755 target/release/pqwrap /out/pqwrap \
    && /out/pqwrap --version

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="pqwrap" \
      org.opencontainers.image.description="Post-quantum hybrid encryption and crash-safe re-wrapping of encrypted archives" \
      org.opencontainers.image.licenses="Apache-2.0 OR MIT"
COPY --from=build /out/pqwrap /usr/local/bin/pqwrap
COPY LICENSE-APACHE LICENSE-MIT /usr/share/doc/pqwrap/
# distroless's "nonroot" user and group (65532), by number, so that a runtime which checks
# runAsNonRoot can verify it without reading /etc/passwd.
USER 65532:65532
WORKDIR /data
ENTRYPOINT ["/usr/local/bin/pqwrap"]
CMD ["--help"]
