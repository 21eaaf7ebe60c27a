# Everyday commands. Neither the README's two commands nor CI need `just`: they are plain cargo.

# Regenerate crd/ (and the copy kustomize uses in manifests/crd/) from the Rust types and
# state-diagrams/ from the state machine.
generate:
    cargo run --quiet -- crd --write crd
    cargo run --quiet -- crd > manifests/crd/airship.airshipit.org_sipclusters.yaml
    cargo run --quiet -- diagrams --write state-diagrams

fmt:
    cargo fmt --all

lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The whole suite: unit tests and integration tests against a real local control plane.
test:
    cargo test --workspace

# Build (or find in the cache) etcd, kube-apiserver and kubectl; prints their directory.
control-plane:
    bash tools/control-plane/build.sh

# The demo; `just demo --keep` leaves the control plane running.
demo *ARGS:
    cargo demo {{ARGS}}

# Scheduling benchmarks (criterion).
bench:
    cargo bench --bench scheduling

# What CI runs.
ci:
    bash .ci/run

# ---- For users with a Docker engine (not used by CI or the tests) ----

image := "quay.io/airshipit/sip-rs:dev"
cluster := "sip"

kind-create:
    kind create cluster --name {{cluster}}
    kubectl apply -f crd/airship.airshipit.org_sipclusters.yaml -f crd/testing/metal3.io_baremetalhosts.yaml

# The static (musl) binary the image ships, built without Docker; prints its size.
static:
    bash tools/image/static-build.sh

# Parse the Dockerfile with Docker's own parser and check what the image promises.
check-dockerfile:
    bash tools/image/check-dockerfile.sh

# End-to-end figures on the local control plane (see BENCHMARKS.md); `--quick` for a small run.
bench-e2e *args:
    cargo build --release --bin sip
    cargo run --release -p sip-envtest --bin sip-bench -- --sip target/release/sip {{args}}

docker-build:
    docker build --build-arg SIP_VERSION=$(git describe --always --dirty) -t {{image}} .

# The jump host image the operator deploys by default, tagged with the operator's version.
jump_host_image := "quay.io/airshipit/sip-rs-jump-host:" + `grep -m1 '^version' Cargo.toml | cut -d'"' -f2`

jump-host-image:
    docker build -t {{jump_host_image}} images/jump-host

kind-load-image: docker-build jump-host-image
    kind load docker-image {{image}} {{jump_host_image}} --name {{cluster}}

deploy: kind-load-image
    kubectl apply -k manifests/
