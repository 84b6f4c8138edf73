//! Connect: Ekko's OAuth 2.0 identity provider.
//!
//! - [`keys`]: RS256 signing keys on disk (created on first start, mode 0600) and the JWKS.
//! - [`password`]: argon2id hashing, off the async runtime.
//! - [`tokens`]: the grants (password, refresh_token), access-token issuing and verification.
//! - [`http`]: the HTTP surface (`POST /oauth/token`, `GET /.well-known/jwks.json`), RFC 6749
//!   error bodies produced in exactly one place.
//!
//! Invariants: no password, secret or token is ever logged; refresh tokens are stored hashed;
//! secret comparisons are constant-time.

pub mod accounts;
pub mod error;
pub mod http;
pub mod keys;
pub mod password;
pub mod tokens;

pub use error::OAuthError;
pub use keys::SigningKeys;
pub use tokens::{AuthError, TokenService};
