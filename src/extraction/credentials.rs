//! BMC credentials: held in memory only, and never printed.

use std::fmt;

/// A password that does not show itself in `Debug` output, logs or panics.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub fn new(value: String) -> Self {
        Password(value)
    }

    /// The password itself, for the one place that must write it (the jump host's Secret).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct BmcCredentials {
    pub username: String,
    pub password: Password,
    /// The host's `spec.bmc.disableCertificateVerification`: travels with the credentials to
    /// the one place that uses them (the jump host's host list).
    pub disable_certificate_verification: bool,
}

impl fmt::Debug for BmcCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BmcCredentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .field(
                "disable_certificate_verification",
                &self.disable_certificate_verification,
            )
            .finish()
    }
}
