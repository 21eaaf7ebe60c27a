//! `kubectl sip`: see `sip::plugin`.

#[tokio::main(flavor = "current_thread")]
async fn main() {
    std::process::exit(sip::plugin::run(std::env::args()).await);
}
