# syntax=docker/dockerfile:1
# A static (musl) sip binary on a distroless, non-root base.

FROM rust:1.95-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY .cargo .cargo
COPY src src
COPY crd crd
COPY manifests manifests
COPY tools/envtest tools/envtest
COPY tests tests
RUN cargo build --release --locked --bin sip \
 && cp target/release/sip /sip

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /sip /sip
USER 65532:65532
ENTRYPOINT ["/sip"]
