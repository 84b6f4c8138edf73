//! Connect: Ekko's OAuth 2.0 identity provider.
//!
//! - [`keys`]: RS256 signing keys on disk (created on first start, mode 0600) and the JWKS.
//! - [`password`]: argon2id hashing, off the async runtime.
//! - [`tokens`]: the grants (password, refresh_token, client_credentials, authorization_code
//!   with PKCE), access- and ID-token issuing, verification, revocation, introspection.
//! - [`clients`]: client credentials (64 hex, secret stored as SHA-256) and client
//!   authentication (HTTP Basic or body), constant-time.
//! - [`limits`]: rate limits per IP and per account, lockout after repeated failures.
//! - [`http`]: `POST /oauth/token`, `GET /.well-known/jwks.json`; [`api`]: applications,
//!   revoke, introspect, token info, discovery, users; [`web`]: sign-in/sign-up/account pages
//!   and `/oauth/authorize`. RFC 6749 error bodies are produced in one place ([`error`]).
//!
//! Invariants: no password, secret or token is ever logged; refresh tokens are stored hashed;
//! secret comparisons are constant-time.

pub mod accounts;
pub mod api;
pub mod clients;
pub mod error;
pub mod http;
pub mod keys;
pub mod limits;
pub mod password;
pub mod tokens;
pub mod web;

pub use error::OAuthError;
pub use keys::SigningKeys;
pub use tokens::{AuthError, ConnectConfig, TokenService};
