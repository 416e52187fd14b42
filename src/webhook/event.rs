//! Decoding one verified delivery into the columns of `webhook_events`. Payloads are flat JSON
//! (`event`, `id`, `ref`, `sentDate` and the entity's fields); enrollment payloads use
//! snake_case keys, so every field is looked up in both styles. The raw body is kept as is.

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Why a body was refused (answered 400, nothing stored).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body is not a JSON object")]
    NotObject,
    #[error("the body has no `event` string")]
    NoEvent,
    #[error("`sentDate` is not an ISO 8601 date-time: `{0}`")]
    SentDate(String),
}

/// One decoded event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Hex SHA-256 of the raw body (Pluvo sends no delivery id: redeliveries repeat the body).
    pub body_sha256: String,
    pub event: String,
    pub sent_date: Option<DateTime<Utc>>,
    pub object_id: Option<String>,
    pub object_ref: Option<String>,
    /// The user the event is about: `user.ref`, or the object's `ref` for USER_* events.
    pub user_ref: Option<String>,
    /// `(related object type, completion day)` of a completed portfolio item or certificate.
    pub completed: Option<(String, NaiveDate)>,
    /// The body as received.
    pub payload: String,
}

/// Decode a verified body.
pub fn decode(body: &[u8]) -> Result<Event, Malformed> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Malformed::NotJson(e.to_string()))?;
    let Value::Object(map) = &value else {
        return Err(Malformed::NotObject);
    };
    let event = text(map.get("event")).ok_or(Malformed::NoEvent)?;
    let sent_date = match text(any(map, &["sentDate", "sent_date"])) {
        None => None,
        Some(s) => Some(
            DateTime::parse_from_rfc3339(&s)
                .map_err(|_| Malformed::SentDate(s.clone()))?
                .with_timezone(&Utc),
        ),
    };
    let object_ref = text(map.get("ref"));
    let user = map.get("user").and_then(Value::as_object);
    let user_ref = user
        .and_then(|u| text(u.get("ref")))
        .or_else(|| text(any(map, &["userRef", "user_ref"])))
        .or_else(|| {
            event
                .starts_with("USER_")
                .then(|| object_ref.clone())
                .flatten()
        });
    let completed = completion(&event, map);
    Ok(Event {
        body_sha256: hex::encode(Sha256::digest(body)),
        object_id: text(map.get("id")),
        object_ref,
        user_ref,
        completed,
        sent_date,
        event,
        // from_slice succeeded, so the body is UTF-8.
        payload: String::from_utf8_lossy(body).into_owned(),
    })
}

/// The first of `keys` present (camelCase and snake_case spellings of one field).
fn any<'a>(map: &'a Map<String, Value>, keys: &[&str]) -> Option<&'a Value> {
    keys.iter()
        .find_map(|k| map.get(*k).filter(|v| !v.is_null()))
}

/// A string, number or boolean as text; `None` for null, objects and arrays.
fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The day a certificate was achieved or a portfolio item completed, with its type.
fn completion(event: &str, map: &Map<String, Value>) -> Option<(String, NaiveDate)> {
    let (kind, date) = if event == "EVENT_CERTIFICATE_ACHIEVED" {
        (
            "CERTIFICATE".to_string(),
            any(map, &["creationDate", "creation_date"]),
        )
    } else if event.starts_with("PORTFOLIO_ITEM_") {
        let kind = text(any(map, &["relatedObjectType", "related_object_type"]))?;
        (kind, any(map, &["completionDate", "completion_date"]))
    } else {
        return None;
    };
    let date = text(date)?;
    let day = date.get(..10)?.parse().ok()?;
    Some((kind, day))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_event_names_its_user_and_day() {
        let body = br#"{"event":"EVENT_CERTIFICATE_ACHIEVED","id":"c1","ref":null,
            "sentDate":"2020-01-01T10:15:00.000Z","user":{"id":"u1","name":"Anna","ref":"emp-1"},
            "title":"First aid","training":{"id":"t1","title":"BHV"},
            "creationDate":"2020-01-01T00:00:00.000Z","expiryDate":"2022-01-01T00:00:00.000Z"}"#;
        let e = decode(body).unwrap();
        assert_eq!(e.event, "EVENT_CERTIFICATE_ACHIEVED");
        assert_eq!(e.object_id.as_deref(), Some("c1"));
        assert_eq!(e.object_ref, None);
        assert_eq!(e.user_ref.as_deref(), Some("emp-1"));
        assert_eq!(
            e.sent_date.unwrap().to_rfc3339(),
            "2020-01-01T10:15:00+00:00"
        );
        assert_eq!(
            e.completed,
            Some(("CERTIFICATE".into(), "2020-01-01".parse().unwrap()))
        );
        assert_eq!(e.body_sha256.len(), 64);
    }

    #[test]
    fn snake_case_and_user_events_are_read() {
        let e = decode(
            br#"{"event":"OFFER_EVENT_ENROLLED","id":7,"sent_date":"2020-01-01T10:15:00Z",
            "offer_event":{"id":"o1","ref":"oe-1"},"user_ref":"emp-2"}"#,
        )
        .unwrap();
        assert_eq!(
            (e.object_id.as_deref(), e.user_ref.as_deref()),
            (Some("7"), Some("emp-2"))
        );
        assert!(e.sent_date.is_some());
        let e = decode(br#"{"event":"USER_UPDATED","id":"u3","ref":"emp-3"}"#).unwrap();
        assert_eq!(e.user_ref.as_deref(), Some("emp-3"));
        assert_eq!(e.sent_date, None);
    }

    #[test]
    fn malformed_bodies_are_named() {
        assert!(matches!(decode(b"{\"event\":"), Err(Malformed::NotJson(_))));
        assert_eq!(decode(b"[1]"), Err(Malformed::NotObject));
        assert_eq!(decode(br#"{"id":"x"}"#), Err(Malformed::NoEvent));
        assert_eq!(
            decode(br#"{"event":"USER_CREATED","sentDate":"yesterday"}"#),
            Err(Malformed::SentDate("yesterday".into()))
        );
    }
}
