//! DomainError → GraphQL error, in one place: the message a person reads plus
//! `extensions.code` (`UNAUTHENTICATED`, `FORBIDDEN`, `NOT_FOUND`, `BAD_USER_INPUT`, ...).

use async_graphql::ErrorExtensions;
use ekko_core::DomainError;

pub fn to_graphql(e: DomainError) -> async_graphql::Error {
    let code = e.code();
    let field = match &e {
        DomainError::Invalid { field, .. } => Some(field.clone()),
        _ => None,
    };
    async_graphql::Error::new(e.to_string()).extend_with(|_, ext| {
        ext.set("code", code);
        if let Some(f) = &field {
            ext.set("field", f.as_str());
        }
    })
}

/// `extensions.code` of the last item of a subscription whose subscriber fell so far behind
/// that its bounded queue filled. Socket transports close the socket when they see it.
pub const SLOW_SUBSCRIBER_CODE: &str = "SLOW_SUBSCRIBER";

/// The error a subscription yields (last) when its bounded queue overflowed.
pub fn slow_subscriber() -> async_graphql::Error {
    async_graphql::Error::new(
        "this subscription fell too far behind its devices' data (its queue filled) and was stopped; subscribe again",
    )
    .extend_with(|_, ext| ext.set("code", SLOW_SUBSCRIBER_CODE))
}

/// The last result of a subscription whose caller may no longer see one of its devices (the
/// device was given to another account). Only this subscription ends; the socket stays open.
pub fn access_withdrawn(imei: &ekko_core::Imei) -> async_graphql::Error {
    async_graphql::Error::new(format!(
        "device {imei} is no longer visible to you (it moved to a group you cannot see, or to another organization): this subscription has ended"
    ))
    .extend_with(|_, ext| ext.set("code", "FORBIDDEN"))
}

/// Whether a subscription result is the overflow error of [`slow_subscriber`].
pub fn is_slow_subscriber(response: &async_graphql::Response) -> bool {
    response.errors.iter().any(|e| {
        e.extensions
            .as_ref()
            .and_then(|x| x.get("code"))
            .is_some_and(|c| *c == async_graphql::Value::from(SLOW_SUBSCRIBER_CODE))
    })
}
