# syntax=docker/dockerfile:1
# A static (musl) sip binary on a distroless, non-root base. Expected size: the stripped
# binary is about 16 MB (measured with `just static`), the base about 2 MB: an 18 MB image.
#   docker build --build-arg SIP_VERSION=$(git describe --always --dirty) -t <image> .

FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
# Every workspace member and target must exist for cargo to read the manifests.
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY src src
COPY crates crates
COPY benches benches
COPY tests tests
COPY crd crd
COPY manifests manifests
COPY state-diagrams state-diagrams
COPY tools/envtest tools/envtest
ARG SIP_VERSION
ENV SIP_VERSION=${SIP_VERSION} CARGO_PROFILE_RELEASE_STRIP=true
RUN cargo build --release --locked --bin sip \
 && cp target/release/sip /sip \
 && /sip --version

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /sip /sip
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/sip"]
CMD ["run"]
