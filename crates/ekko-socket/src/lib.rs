//! Socket transports for GraphQL subscriptions.
//!
//! - [`phoenix`]: Phoenix channels (serializers V1 and V2) carrying Absinthe's subscription
//!   protocol, at `/services/ekko/v2/socket/websocket` — what getting-started.txt's clients use.
//!
//! Each protocol is a pure codec (`frame`) plus a thin connection loop. Only this crate knows
//! socket frame formats; it executes the schema from `ekko-api` and never decides access.

pub mod phoenix;
