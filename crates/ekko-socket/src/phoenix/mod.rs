//! Phoenix channels + Absinthe over WebSocket.
//!
//! - [`frame`]: serializer negotiation (`vsn`) and the V1/V2 frame codec. Pure.
//! - [`channel`]: what a message means (heartbeat, join, leave, `doc`, `unsubscribe`) and the
//!   replies it gets, as a state machine over one socket's channel state. Pure except for
//!   executing GraphQL.
//! - [`connection`]: the upgrade (auth before it, 403 on a bad token or `vsn`) and the I/O loop
//!   (idle timeout, bounded writes, subscription streams).

pub mod channel;
pub mod connection;
pub mod frame;

pub use connection::{SocketConfig, SocketState, router};
