//! Socket transports for GraphQL subscriptions.
//!
//! - [`phoenix`]: Phoenix channels (serializers V1 and V2) carrying Absinthe's subscription
//!   protocol, at `/services/ekko/v2/socket/websocket` — what getting-started.txt's clients use.
//! - [`graphql_ws`]: `graphql-transport-ws` and legacy `graphql-ws` WebSocket upgrades on the
//!   GraphQL path `/services/ekko/v2/graphql`, and [`sse`]: GraphQL over SSE there (routed by
//!   [`graphql_path::intercept`] in front of GraphQL over HTTP).
//! - [`auth`]: the caller of a socket and its token's expiry (every transport closes a socket
//!   whose token expired).
//!
//! Each protocol is a pure codec (`frame`) plus a thin connection loop. Only this crate knows
//! socket frame formats; it executes the schema from `ekko-api` and never decides access.

pub mod auth;
pub mod graphql_path;
pub mod graphql_ws;
pub mod phoenix;
pub mod sse;

/// Read buffer of every WebSocket, in bytes. tungstenite allocates it eagerly per socket and
/// defaults to 128 KiB, which made a mostly idle subscriber cost ~150 KiB; subscribers read
/// little (a `doc`, heartbeats), and a larger message still arrives, in several reads.
pub(crate) const WS_READ_BUFFER_BYTES: usize = 4 * 1024;
