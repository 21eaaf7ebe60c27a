# Everyday commands (`cargo install just`). The README's two commands are plain cargo; CI runs
# every recipe here that can run on a machine without Docker (.ci/run), so none can rot.

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

# Build (or find in the cache) etcd, kube-apiserver, kube-controller-manager, kubectl and the
# node's kubelet, kube-proxy and kube-scheduler; prints their directory.
control-plane:
    bash tools/control-plane/build.sh

# The demo; `just demo --keep` leaves the control plane running.
demo *ARGS:
    cargo demo {{ARGS}}

# The demo on a one-node cluster (kubelet, containerd): the operator deployed by its manifests,
# the samples' services as pods. `just demo-node --keep` leaves it up.
demo-node *ARGS:
    cargo demo --node {{ARGS}}

# Removes a node cluster left up by `just demo-node --keep` (or by a killed test run).
node-down:
    if [ -f /run/sip-node/current ]; then bash tools/node/down.sh "$(cat /run/sip-node/current)"; fi

# Every image the node cluster runs, built without Docker (operator, jump host, haproxy, pause).
node-images:
    bash tools/node/images.sh "$(bash tools/image/static-build.sh node-image)"

# Scheduling benchmarks (criterion); `just bench --test` runs each once (what CI does).
bench *ARGS:
    cargo bench --bench scheduling -- {{ARGS}}

# Each guard of the invariants removed in a scratch worktree and its tests run: every one
# must be caught (tools/mutate/guards.py; `--only NAME` for some).
guards *ARGS:
    python3 tools/mutate/guards.py {{ARGS}}

# What CI runs.
ci:
    bash .ci/run

# ---- For users with a Docker engine (not used by CI or the tests) ----

image := "quay.io/airshipit/sip-rs:dev"
cluster := "sip"

kind-create:
    kind create cluster --name {{cluster}}
    kubectl apply -f crd/airship.airshipit.org_sipclusters.yaml -f crd/testing/metal3.io_baremetalhosts.yaml

# The operator as a static binary, built without Docker (glibc static-pie, release profile);
# prints its size. `cargo demo --node` builds the same with the node-image profile.
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
