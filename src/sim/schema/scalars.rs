//! The contract's scalars (`UUID`, `DateTime`, `Date`, `JSONString`) and enums.

use super::*;

/// `UUID` scalar.
#[derive(Debug, Clone, Copy)]
pub struct Uuid(pub Id);

#[Scalar(name = "UUID")]
impl ScalarType for Uuid {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => Id::parse(s)
                .map(Uuid)
                .ok_or_else(|| InputValueError::custom(format!("`{s}` is not a valid UUID"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }
    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

/// `DateTime` scalar: ISO 8601, UTC, `Z` suffix.
#[derive(Debug, Clone, Copy)]
pub struct Timestamp(pub DateTime<Utc>);

#[Scalar(name = "DateTime")]
impl ScalarType for Timestamp {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => DateTime::parse_from_rfc3339(s)
                .map(|t| Timestamp(t.with_timezone(&Utc)))
                .map_err(|_| InputValueError::custom(format!("`{s}` is not an ISO 8601 DateTime"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }
    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    }
}

/// `Date` scalar: `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy)]
pub struct Date(pub NaiveDate);

#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Date)
                .map_err(|_| InputValueError::custom(format!("`{s}` is not a YYYY-MM-DD Date"))),
            _ => Err(InputValueError::expected_type(value)),
        }
    }
    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%d").to_string())
    }
}

/// `JSONString` scalar: a JSON document encoded as a string.
#[derive(Debug, Clone)]
pub struct JsonString(pub String);

#[Scalar(name = "JSONString")]
impl ScalarType for JsonString {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) => Ok(JsonString(s)),
            other => Err(InputValueError::expected_type(other)),
        }
    }
    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

// ---------------------------------------------------------------------------------------------
// Enums

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Role {
    Owner,
    Manager,
    Author,
    Trainer,
    User,
}

impl Role {
    pub(in crate::sim) fn bit(self) -> u8 {
        1 << (self as u8)
    }
    pub(in crate::sim) fn from_name(name: &str) -> Option<Role> {
        [
            Role::Owner,
            Role::Manager,
            Role::Author,
            Role::Trainer,
            Role::User,
        ]
        .into_iter()
        .zip(ROLES)
        .find(|(_, n)| *n == name)
        .map(|(r, _)| r)
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum RelatedObjectType {
    Training,
    Certificate,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TrainingRole {
    Participant,
    Trainer,
    Mentor,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ContentType {
    User,
}
