//! The GraphQL answer envelope, decoded straight from the body: `{"data": …, "errors": […]}`,
//! descending to the part of `data` the caller asked for (the connection of a paged query)
//! without building an intermediate JSON tree.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::GraphQlError;

/// A decoded GraphQL answer: the value at the requested path of `data`, and `errors`.
#[derive(Debug)]
pub(crate) struct Envelope<T> {
    pub data: Option<T>,
    pub errors: Vec<GraphQlError>,
}

/// Decode `{"data": …, "errors": […]}`, keeping only `data.<path>` as `T`.
pub(crate) fn parse_envelope<T: DeserializeOwned>(
    body: &[u8],
    path: &[&str],
) -> Result<Envelope<T>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let envelope = EnvelopeSeed::<T> {
        path,
        _t: PhantomData,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(envelope)
}

struct EnvelopeSeed<'p, T> {
    path: &'p [&'p str],
    _t: PhantomData<fn() -> T>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum EnvelopeKey {
    Data,
    Errors,
    #[serde(other)]
    Other,
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for EnvelopeSeed<'_, T> {
    type Value = Envelope<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Envelope<T>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for EnvelopeSeed<'_, T> {
    type Value = Envelope<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a GraphQL response object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Envelope<T>, A::Error> {
        let mut data = None;
        let mut errors = Vec::new();
        while let Some(key) = map.next_key::<EnvelopeKey>()? {
            match key {
                EnvelopeKey::Data => {
                    data = map.next_value_seed(At::<T> {
                        path: self.path,
                        _t: PhantomData,
                    })?;
                }
                EnvelopeKey::Errors => {
                    errors = map
                        .next_value::<Option<Vec<GraphQlError>>>()?
                        .unwrap_or_default();
                }
                EnvelopeKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Envelope { data, errors })
    }
}

/// Decodes the value at `path` below the current one, skipping everything else.
struct At<'p, T> {
    path: &'p [&'p str],
    _t: PhantomData<fn() -> T>,
}

impl<'de, T: Deserialize<'de>> DeserializeSeed<'de> for At<'_, T> {
    type Value = Option<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        if self.path.is_empty() {
            Option::<T>::deserialize(d)
        } else {
            d.deserialize_option(self)
        }
    }
}

impl<'de, T: Deserialize<'de>> Visitor<'de> for At<'_, T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object with `{}`", self.path[0])
    }
    fn visit_none<E: serde::de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let (head, rest) = self.path.split_first().expect("visited only with a path");
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            if key == *head {
                found = map.next_value_seed(At::<T> {
                    path: rest,
                    _t: PhantomData,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Conn {
        count: u64,
    }

    #[test]
    fn envelope_descends_to_the_path_and_keeps_errors() {
        let body = br#"{"errors":[{"message":"boom","path":["group","users"]}],
            "data":{"other":[1,2,{"x":null}],"group":{"name":"g","users":{"count":3}}},
            "extensions":{}}"#;
        let env = parse_envelope::<Conn>(body, &["group", "users"]).unwrap();
        assert_eq!(env.data, Some(Conn { count: 3 }));
        assert_eq!(env.errors.len(), 1);
        assert_eq!(env.errors[0].message, "boom");
    }

    #[test]
    fn envelope_null_on_the_path_is_none() {
        let env = parse_envelope::<Conn>(br#"{"data":{"group":null}}"#, &["group", "users"]);
        assert!(env.unwrap().data.is_none());
        let env = parse_envelope::<Conn>(br#"{"data":null,"errors":[]}"#, &["group"]);
        assert!(env.unwrap().data.is_none());
        let env = parse_envelope::<Conn>(br#"{"data":{}}"#, &["group"]);
        assert!(env.unwrap().data.is_none());
    }

    #[test]
    fn truncated_bodies_are_syntax_errors_and_shape_errors_are_data_errors() {
        let cut =
            parse_envelope::<Conn>(br#"{"data":{"group":{"users":{"cou"#, &["group"]).unwrap_err();
        assert!(cut.is_eof() || cut.is_syntax(), "{cut}");
        let trailing = parse_envelope::<Conn>(br#"{"data":null} x"#, &[]).unwrap_err();
        assert!(trailing.is_syntax(), "{trailing}");
        let shape = parse_envelope::<Conn>(br#"{"data":{"count":"three"}}"#, &[]).unwrap_err();
        assert!(shape.is_data(), "{shape}");
    }
}
