//! Phoenix serializers.
//!
//! V1 (`vsn` absent or `1.0.x`): one JSON object per text frame,
//! `{"topic", "event", "payload", "ref", "join_ref"?}`; outbound objects never carry `join_ref`.
//! V2 (`vsn=2.0.x`): one JSON array per text frame, `[join_ref, ref, topic, event, payload]`.
//!
//! `ref` and `join_ref` are opaque JSON values echoed with their JSON type (gql sends integers,
//! phoenix.js strings). A frame of the other serializer, or of another protocol altogether
//! (graphql-ws `{"type": "connection_init"}`), is a decode error that names the problem; the
//! connection closes cleanly on it instead of crashing.

use serde_json::{Map, Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vsn {
    V1,
    V2,
}

impl Vsn {
    /// Phoenix's negotiation: absent → 1.0.0; the version must be semver and match `~> 1.0.0`
    /// or `~> 2.0.0`. Anything else is refused (HTTP 403 before the upgrade).
    pub fn negotiate(param: Option<&str>) -> Result<Vsn, String> {
        let Some(v) = param else { return Ok(Vsn::V1) };
        let core = v.split(['-', '+']).next().unwrap_or("");
        let parts: Vec<&str> = core.split('.').collect();
        let nums: Option<Vec<u64>> = if parts.len() == 3 {
            parts
                .iter()
                .map(|p| {
                    if p.is_empty() || (p.len() > 1 && p.starts_with('0')) {
                        None
                    } else {
                        p.parse().ok()
                    }
                })
                .collect()
        } else {
            None
        };
        match nums.as_deref() {
            Some([1, 0, _]) => Ok(Vsn::V1),
            Some([2, 0, _]) => Ok(Vsn::V2),
            Some(_) => Err(format!(
                "unsupported serializer vsn={v}; use 1.0.0 or 2.0.0"
            )),
            None => Err(format!(
                "vsn={v} is not a version (expected 1.0.0 or 2.0.0)"
            )),
        }
    }
}

/// One Phoenix message.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub join_ref: Value,
    pub ref_: Value,
    pub topic: String,
    pub event: String,
    pub payload: Value,
}

impl Message {
    /// `phx_reply` to `req` (same ref and join_ref).
    pub fn reply_to(req: &Message, join_ref: Value, status: &str, response: Value) -> Message {
        Message {
            join_ref,
            ref_: req.ref_.clone(),
            topic: req.topic.clone(),
            event: "phx_reply".into(),
            payload: json!({ "status": status, "response": response }),
        }
    }

    /// A server push or broadcast: no ref, no join_ref.
    pub fn push(topic: impl Into<String>, event: impl Into<String>, payload: Value) -> Message {
        Message {
            join_ref: Value::Null,
            ref_: Value::Null,
            topic: topic.into(),
            event: event.into(),
            payload,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum DecodeError {
    /// The frame is not JSON, or not shaped like a Phoenix message of the negotiated version.
    Malformed(String),
    /// The frame belongs to another protocol (named).
    ForeignProtocol(String),
}

impl DecodeError {
    pub fn reason(&self) -> &str {
        match self {
            DecodeError::Malformed(r) | DecodeError::ForeignProtocol(r) => r,
        }
    }
}

fn foreign(obj: &Map<String, Value>) -> Option<DecodeError> {
    let ty = obj.get("type")?.as_str()?;
    if obj.contains_key("topic") {
        return None;
    }
    Some(DecodeError::ForeignProtocol(format!(
        // Short enough for a close reason (123 bytes) with the longest message type.
        "graphql-ws '{}' on a Phoenix socket: graphql-ws is served at /services/ekko/v2/graphql",
        ty.chars().take(24).collect::<String>()
    )))
}

fn string_field(v: &Value, what: &str) -> Result<String, DecodeError> {
    v.as_str()
        .map(str::to_owned)
        .ok_or_else(|| DecodeError::Malformed(format!("{what} must be a string")))
}

pub fn decode(vsn: Vsn, text: &str) -> Result<Message, DecodeError> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| DecodeError::Malformed(format!("frame is not JSON: {e}")))?;
    match (vsn, value) {
        (Vsn::V1, Value::Object(obj)) => {
            if let Some(f) = foreign(&obj) {
                return Err(f);
            }
            let get = |k: &str| obj.get(k).ok_or_else(|| DecodeError::Malformed(format!("missing key '{k}'")));
            Ok(Message {
                topic: string_field(get("topic")?, "topic")?,
                event: string_field(get("event")?, "event")?,
                payload: get("payload")?.clone(),
                ref_: get("ref")?.clone(),
                join_ref: obj.get("join_ref").cloned().unwrap_or(Value::Null),
            })
        }
        (Vsn::V1, Value::Array(_)) => Err(DecodeError::Malformed(
            "got a V2 array frame on a V1 socket; connect with ?vsn=2.0.0 to send arrays".into(),
        )),
        (Vsn::V2, Value::Array(items)) => {
            if items.len() < 5 {
                return Err(DecodeError::Malformed("a V2 frame is [join_ref, ref, topic, event, payload]".into()));
            }
            let mut it = items.into_iter();
            let join_ref = it.next().unwrap_or_default();
            let ref_ = it.next().unwrap_or_default();
            let topic = string_field(&it.next().unwrap_or_default(), "topic")?;
            let event = string_field(&it.next().unwrap_or_default(), "event")?;
            let payload = it.next().unwrap_or_default();
            Ok(Message { join_ref, ref_, topic, event, payload })
        }
        (Vsn::V2, Value::Object(obj)) => Err(foreign(&obj).unwrap_or_else(|| {
            DecodeError::Malformed("got a V1 object frame on a V2 socket; send [join_ref, ref, topic, event, payload] arrays".into())
        })),
        (_, _) => Err(DecodeError::Malformed("a frame must be a JSON object (V1) or array (V2)".into())),
    }
}

pub fn encode(vsn: Vsn, m: &Message) -> String {
    match vsn {
        Vsn::V1 => {
            json!({ "topic": m.topic, "event": m.event, "payload": m.payload, "ref": m.ref_ })
                .to_string()
        }
        Vsn::V2 => json!([m.join_ref, m.ref_, m.topic, m.event, m.payload]).to_string(),
    }
}

/// The header of a V2 binary client push (`0, len(join_ref), len(ref), len(topic), len(event)`,
/// then the strings, then the payload), so that it can be answered with an error reply.
pub fn decode_binary_push_header(bytes: &[u8]) -> Option<Message> {
    let (&kind, rest) = bytes.split_first()?;
    if kind != 0 || rest.len() < 4 {
        return None;
    }
    let lens: Vec<usize> = rest[..4].iter().map(|&b| b as usize).collect();
    let mut at = 4;
    let mut take = |n: usize| -> Option<String> {
        let s = std::str::from_utf8(rest.get(at..at + n)?).ok()?.to_owned();
        at += n;
        Some(s)
    };
    let join_ref = take(lens[0])?;
    let ref_ = take(lens[1])?;
    let topic = take(lens[2])?;
    let event = take(lens[3])?;
    Some(Message {
        join_ref: join_ref.into(),
        ref_: ref_.into(),
        topic,
        event,
        payload: Value::Null,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vsn_negotiation_follows_phoenix() {
        assert_eq!(Vsn::negotiate(None), Ok(Vsn::V1));
        assert_eq!(Vsn::negotiate(Some("1.0.0")), Ok(Vsn::V1));
        assert_eq!(Vsn::negotiate(Some("2.0.0")), Ok(Vsn::V2));
        assert_eq!(Vsn::negotiate(Some("2.0.3")), Ok(Vsn::V2));
        for bad in ["2", "2.1.0", "3.0.0", "", "1.0", "x.y.z", "01.0.0"] {
            assert!(Vsn::negotiate(Some(bad)).is_err(), "{bad}");
        }
    }

    // Golden frames: the getting-started client (V1, string refs) and gql (V1, integer refs).
    #[test]
    fn v1_decodes_getting_started_join_and_keeps_ref_types() {
        let m = decode(
            Vsn::V1,
            r#"{"topic": "__absinthe__:control", "event": "phx_join", "payload": {}, "ref": "1"}"#,
        )
        .unwrap();
        assert_eq!(m.topic, "__absinthe__:control");
        assert_eq!(m.ref_, json!("1"));
        assert_eq!(m.join_ref, Value::Null);
        let gql = decode(
            Vsn::V1,
            r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":7}"#,
        )
        .unwrap();
        assert_eq!(gql.ref_, json!(7));
        let reply = Message::reply_to(&gql, Value::Null, "ok", json!({}));
        assert_eq!(
            encode(Vsn::V1, &reply),
            r#"{"topic":"phoenix","event":"phx_reply","payload":{"status":"ok","response":{}},"ref":7}"#
        );
    }

    #[test]
    fn v1_never_sends_join_ref() {
        let m = Message {
            join_ref: json!("5"),
            ..Message::push("t", "e", json!({}))
        };
        assert!(!encode(Vsn::V1, &m).contains("join_ref"));
    }

    #[test]
    fn v2_round_trip_phoenix_js_frames() {
        let m = decode(Vsn::V2, r#"["3","3","__absinthe__:control","phx_join",{}]"#).unwrap();
        assert_eq!(
            (m.join_ref.clone(), m.ref_.clone()),
            (json!("3"), json!("3"))
        );
        let reply = Message::reply_to(&m, m.join_ref.clone(), "ok", json!({}));
        assert_eq!(
            encode(Vsn::V2, &reply),
            r#"["3","3","__absinthe__:control","phx_reply",{"status":"ok","response":{}}]"#
        );
        let hb = decode(Vsn::V2, r#"[null,"8","phoenix","heartbeat",{}]"#).unwrap();
        assert_eq!(hb.join_ref, Value::Null);
        let push = Message::push("__absinthe__:doc:1:AB", "subscription:data", json!({"a":1}));
        assert_eq!(
            encode(Vsn::V2, &push),
            r#"[null,null,"__absinthe__:doc:1:AB","subscription:data",{"a":1}]"#
        );
    }

    #[test]
    fn wrong_shapes_and_foreign_protocols_are_named() {
        let e = decode(Vsn::V1, r#"["1","1","t","e",{}]"#).unwrap_err();
        assert!(e.reason().contains("vsn=2.0.0"), "{e:?}");
        let e = decode(Vsn::V1, r#"{"type":"connection_init","payload":{}}"#).unwrap_err();
        assert!(matches!(e, DecodeError::ForeignProtocol(_)), "{e:?}");
        let e = decode(Vsn::V2, r#"{"type":"connection_init"}"#).unwrap_err();
        assert!(matches!(e, DecodeError::ForeignProtocol(_)), "{e:?}");
        let e = decode(Vsn::V1, r#"{"event":"phx_join","payload":{},"ref":1}"#).unwrap_err();
        assert!(e.reason().contains("topic"), "{e:?}");
        assert!(decode(Vsn::V1, "not json").is_err());
        assert!(decode(Vsn::V2, r#"["1","1"]"#).is_err());
        assert!(decode(Vsn::V1, "42").is_err());
    }

    #[test]
    fn binary_push_header() {
        let mut b = vec![0u8, 1, 1, 5, 3];
        b.extend_from_slice(b"12topicevt");
        b.extend_from_slice(b"\x00\x01payload");
        let m = decode_binary_push_header(&b).unwrap();
        assert_eq!(
            (m.topic.as_str(), m.event.as_str(), m.ref_.clone()),
            ("topic", "evt", json!("2"))
        );
        assert!(decode_binary_push_header(&[0, 9, 9, 9, 9]).is_none());
        assert!(decode_binary_push_header(&[]).is_none());
    }
}
