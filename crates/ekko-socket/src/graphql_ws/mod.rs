//! GraphQL over WebSocket on the GraphQL path itself (`/services/ekko/v2/graphql`), as Apollo
//! and Hasura serve it: `graphql-transport-ws` or the legacy `graphql-ws`
//! (subscriptions-transport-ws), chosen by `Sec-WebSocket-Protocol`.
//!
//! - [`codec`]: the pure message codec of both protocols.
//! - [`connection`]: the upgrade and one task per socket.
//!
//! Close codes (graphql-transport-ws; the legacy protocol uses the same ones):
//!
//! | code | when |
//! |------|------|
//! | 4400 | a message that is not valid for the protocol (graphql-transport-ws) |
//! | 4401 | `subscribe` before `connection_ack`; the access token expired |
//! | 4403 | the token in `connection_init` was refused |
//! | 4406 | no subprotocol we speak was offered |
//! | 4408 | no `connection_init` within the init timeout (default 10 s) |
//! | 4409 | `Subscriber for <id> already exists` (an id still in use) |
//! | 4429 | `Too many initialisation requests` (a second `connection_init`) |
//! | 1008 | the client is too slow: a subscription's queue filled, or a send timed out |

pub mod codec;
pub mod connection;

pub use codec::Protocol;
pub use connection::upgrade;
