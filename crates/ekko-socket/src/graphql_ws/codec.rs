//! The two GraphQL-over-WebSocket protocols as a pure codec (no I/O): JSON text frames
//! `{type, id?, payload?}` in, typed messages out, and back.
//!
//! - `graphql-transport-ws` (the graphql-ws library, Apollo Client, urql): `connection_init`,
//!   `subscribe`, `complete`, `ping`, `pong`.
//! - legacy `graphql-ws` (Apollo's subscriptions-transport-ws): `connection_init`, `start`,
//!   `stop`, `connection_terminate`.
//!
//! Both decode into one [`ClientMessage`] so that one connection loop serves both.

use serde_json::{Map, Value, json};

/// Which protocol a socket speaks, chosen by `Sec-WebSocket-Protocol` at the upgrade.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Subprotocol `graphql-transport-ws`.
    TransportWs,
    /// Subprotocol `graphql-ws` (subscriptions-transport-ws, legacy).
    LegacyWs,
}

impl Protocol {
    pub const TRANSPORT_WS: &'static str = "graphql-transport-ws";
    pub const LEGACY_WS: &'static str = "graphql-ws";

    pub fn name(self) -> &'static str {
        match self {
            Protocol::TransportWs => Self::TRANSPORT_WS,
            Protocol::LegacyWs => Self::LEGACY_WS,
        }
    }

    /// The first protocol we speak among the client's offers (`Sec-WebSocket-Protocol`, in the
    /// client's order of preference).
    pub fn choose(offered: &str) -> Option<Protocol> {
        offered.split(',').map(str::trim).find_map(|p| match p {
            Self::TRANSPORT_WS => Some(Protocol::TransportWs),
            Self::LEGACY_WS => Some(Protocol::LegacyWs),
            _ => None,
        })
    }
}

/// A GraphQL request carried by `subscribe` / `start`.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    pub query: String,
    /// Always an object (absent or null becomes `{}`).
    pub variables: Value,
    pub operation_name: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ClientMessage {
    ConnectionInit {
        payload: Option<Map<String, Value>>,
    },
    /// `subscribe` (graphql-transport-ws) or `start` (legacy).
    Subscribe {
        id: String,
        operation: Operation,
    },
    /// `complete` (graphql-transport-ws) or `stop` (legacy).
    Complete {
        id: String,
    },
    Ping {
        payload: Option<Value>,
    },
    Pong,
    /// `connection_terminate` (legacy).
    Terminate,
}

/// What went wrong decoding a frame; the text is fit for a close reason or an error message.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeError(pub String);

fn bad(msg: impl Into<String>) -> DecodeError {
    DecodeError(msg.into())
}

fn id_of(obj: &Map<String, Value>, ty: &str) -> Result<String, DecodeError> {
    match obj.get("id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        _ => Err(bad(format!("'{ty}' needs a non-empty string 'id'"))),
    }
}

fn operation_of(obj: &Map<String, Value>, ty: &str) -> Result<Operation, DecodeError> {
    let Some(Value::Object(p)) = obj.get("payload") else {
        return Err(bad(format!(
            "'{ty}' needs an object 'payload' {{query, variables?}}"
        )));
    };
    let query = match p.get("query") {
        Some(Value::String(q)) => q.clone(),
        _ => return Err(bad(format!("'{ty}' payload needs a string 'query'"))),
    };
    let variables = match p.get("variables") {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(bad("'variables' must be an object")),
    };
    let operation_name = match p.get("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad("'operationName' must be a string")),
    };
    if !matches!(
        p.get("extensions"),
        None | Some(Value::Null) | Some(Value::Object(_))
    ) {
        return Err(bad("'extensions' must be an object"));
    }
    Ok(Operation {
        query,
        variables,
        operation_name,
    })
}

/// Decodes one text frame of `protocol`.
pub fn decode(protocol: Protocol, text: &str) -> Result<ClientMessage, DecodeError> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON message: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(bad("a message must be a JSON object {type, id?, payload?}"));
    };
    let Some(Value::String(ty)) = obj.get("type") else {
        return Err(bad("a message needs a string 'type'"));
    };
    let payload_object = || match obj.get("payload") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m.clone())),
        Some(_) => Err(bad(format!("'{ty}' payload must be an object"))),
    };
    match (protocol, ty.as_str()) {
        (_, "connection_init") => Ok(ClientMessage::ConnectionInit {
            payload: payload_object()?,
        }),
        (Protocol::TransportWs, "subscribe") | (Protocol::LegacyWs, "start") => {
            Ok(ClientMessage::Subscribe {
                id: id_of(&obj, ty)?,
                operation: operation_of(&obj, ty)?,
            })
        }
        (Protocol::TransportWs, "complete") | (Protocol::LegacyWs, "stop") => {
            Ok(ClientMessage::Complete {
                id: id_of(&obj, ty)?,
            })
        }
        (Protocol::TransportWs, "ping") => Ok(ClientMessage::Ping {
            payload: payload_object()?.map(Value::Object),
        }),
        (Protocol::TransportWs, "pong") => {
            payload_object()?;
            Ok(ClientMessage::Pong)
        }
        (Protocol::LegacyWs, "connection_terminate") => Ok(ClientMessage::Terminate),
        (p, other) => Err(bad(format!(
            "unknown message type '{}' for subprotocol {}",
            other.chars().take(40).collect::<String>(),
            p.name()
        ))),
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ServerMessage {
    ConnectionAck,
    /// A result: `next` (graphql-transport-ws) or `data` (legacy).
    Next {
        id: String,
        payload: Value,
    },
    /// The operation failed before it produced results; `errors` is an array of GraphQL errors.
    Error {
        id: String,
        errors: Value,
    },
    Complete {
        id: String,
    },
    /// Keep-alive: `ping` (graphql-transport-ws) or `ka` (legacy).
    KeepAlive,
    Pong {
        payload: Option<Value>,
    },
    /// Legacy only: an init refused or a message not understood.
    ConnectionError {
        message: String,
    },
}

/// Encodes one server message as a text frame of `protocol`.
pub fn encode(protocol: Protocol, msg: &ServerMessage) -> String {
    use Protocol::{LegacyWs, TransportWs};
    let v = match (protocol, msg) {
        (_, ServerMessage::ConnectionAck) => json!({"type": "connection_ack"}),
        (TransportWs, ServerMessage::Next { id, payload }) => {
            json!({"type": "next", "id": id, "payload": payload})
        }
        (LegacyWs, ServerMessage::Next { id, payload }) => {
            json!({"type": "data", "id": id, "payload": payload})
        }
        (_, ServerMessage::Error { id, errors }) => {
            json!({"type": "error", "id": id, "payload": errors})
        }
        (_, ServerMessage::Complete { id }) => json!({"type": "complete", "id": id}),
        (TransportWs, ServerMessage::KeepAlive) => json!({"type": "ping"}),
        (LegacyWs, ServerMessage::KeepAlive) => json!({"type": "ka"}),
        (_, ServerMessage::Pong { payload: Some(p) }) => json!({"type": "pong", "payload": p}),
        (_, ServerMessage::Pong { payload: None }) => json!({"type": "pong"}),
        (_, ServerMessage::ConnectionError { message }) => {
            json!({"type": "connection_error", "payload": {"message": message}})
        }
    };
    v.to_string()
}

/// The `Authorization` value of a `connection_init` payload: the key matched without regard
/// to case, at the top level or under `headers` (Apollo's `connectionParams: {headers}`).
/// `Some(Err)` when the key is there but its value is not a string.
pub fn init_authorization(payload: &Map<String, Value>) -> Option<Result<&str, ()>> {
    fn find(m: &Map<String, Value>) -> Option<Result<&str, ()>> {
        m.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.as_str().ok_or(()))
    }
    find(payload).or_else(|| match payload.get("headers") {
        Some(Value::Object(h)) => find(h),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Protocol = Protocol::TransportWs;
    const L: Protocol = Protocol::LegacyWs;

    #[test]
    fn the_subprotocol_is_chosen_in_the_clients_order() {
        assert_eq!(
            Protocol::choose("graphql-transport-ws"),
            Some(Protocol::TransportWs)
        );
        assert_eq!(Protocol::choose("graphql-ws"), Some(Protocol::LegacyWs));
        assert_eq!(
            Protocol::choose("graphql-ws, graphql-transport-ws"),
            Some(Protocol::LegacyWs)
        );
        assert_eq!(Protocol::choose("phoenix, mqtt"), None);
    }

    // Frames as the graphql-ws 6.x client sends them.
    #[test]
    fn graphql_ws_client_frames_decode() {
        assert_eq!(
            decode(
                T,
                r#"{"type":"connection_init","payload":{"Authorization":"Bearer x"}}"#
            ),
            Ok(ClientMessage::ConnectionInit {
                payload: Some(
                    json!({"Authorization": "Bearer x"})
                        .as_object()
                        .unwrap()
                        .clone()
                )
            })
        );
        assert_eq!(
            decode(T, r#"{"type":"connection_init"}"#),
            Ok(ClientMessage::ConnectionInit { payload: None })
        );
        assert_eq!(
            decode(
                T,
                r#"{"id":"4c7a1f6e-1","type":"subscribe","payload":{"query":"subscription { a }","operationName":null,"variables":null,"extensions":{}}}"#
            ),
            Ok(ClientMessage::Subscribe {
                id: "4c7a1f6e-1".into(),
                operation: Operation {
                    query: "subscription { a }".into(),
                    variables: json!({}),
                    operation_name: None
                }
            })
        );
        assert_eq!(
            decode(T, r#"{"id":"1","type":"complete"}"#),
            Ok(ClientMessage::Complete { id: "1".into() })
        );
        assert_eq!(
            decode(T, r#"{"type":"ping"}"#),
            Ok(ClientMessage::Ping { payload: None })
        );
        assert_eq!(decode(T, r#"{"type":"pong"}"#), Ok(ClientMessage::Pong));
    }

    // Frames as subscriptions-transport-ws 0.11 sends them.
    #[test]
    fn legacy_client_frames_decode() {
        assert_eq!(
            decode(
                L,
                r#"{"id":"1","type":"start","payload":{"query":"subscription S { a }","variables":{"x":1},"operationName":"S"}}"#
            ),
            Ok(ClientMessage::Subscribe {
                id: "1".into(),
                operation: Operation {
                    query: "subscription S { a }".into(),
                    variables: json!({"x": 1}),
                    operation_name: Some("S".into())
                }
            })
        );
        assert_eq!(
            decode(L, r#"{"id":"1","type":"stop"}"#),
            Ok(ClientMessage::Complete { id: "1".into() })
        );
        assert_eq!(
            decode(L, r#"{"type":"connection_terminate"}"#),
            Ok(ClientMessage::Terminate)
        );
    }

    #[test]
    fn malformed_and_foreign_frames_are_errors_not_panics() {
        for (p, text) in [
            (T, "not json"),
            (T, "[1,2]"),
            (T, r#"{"id":"1"}"#),
            (T, r#"{"type":"start","id":"1","payload":{"query":"{a}"}}"#),
            (
                L,
                r#"{"type":"subscribe","id":"1","payload":{"query":"{a}"}}"#,
            ),
            (T, r#"{"type":"subscribe","payload":{"query":"{a}"}}"#),
            (
                T,
                r#"{"type":"subscribe","id":"","payload":{"query":"{a}"}}"#,
            ),
            (T, r#"{"type":"subscribe","id":"1","payload":{}}"#),
            (
                T,
                r#"{"type":"subscribe","id":"1","payload":{"query":"{a}","variables":[1]}}"#,
            ),
            (T, r#"{"type":"connection_init","payload":"token"}"#),
            (T, r#"[null,"1","__absinthe__:control","phx_join",{}]"#),
        ] {
            assert!(decode(p, text).is_err(), "{text}");
        }
    }

    #[test]
    fn server_messages_encode_per_protocol() {
        let next = ServerMessage::Next {
            id: "1".into(),
            payload: json!({"data": {"a": 1}}),
        };
        assert_eq!(
            encode(T, &next),
            r#"{"type":"next","id":"1","payload":{"data":{"a":1}}}"#
        );
        assert_eq!(
            encode(L, &next),
            r#"{"type":"data","id":"1","payload":{"data":{"a":1}}}"#
        );
        assert_eq!(encode(T, &ServerMessage::KeepAlive), r#"{"type":"ping"}"#);
        assert_eq!(encode(L, &ServerMessage::KeepAlive), r#"{"type":"ka"}"#);
        assert_eq!(
            encode(T, &ServerMessage::ConnectionAck),
            r#"{"type":"connection_ack"}"#
        );
    }

    #[test]
    fn init_authorization_key_matches_any_case_and_under_headers() {
        let p = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            init_authorization(&p(json!({"authorization": "Bearer a"}))),
            Some(Ok("Bearer a"))
        );
        assert_eq!(
            init_authorization(&p(json!({"AUTHORIZATION": "Bearer b"}))),
            Some(Ok("Bearer b"))
        );
        assert_eq!(
            init_authorization(&p(json!({"headers": {"Authorization": "Bearer c"}}))),
            Some(Ok("Bearer c"))
        );
        assert_eq!(
            init_authorization(&p(json!({"Authorization": 1}))),
            Some(Err(()))
        );
        assert_eq!(init_authorization(&p(json!({"other": 1}))), None);
    }
}
