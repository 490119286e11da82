//! The common case of `POST /v1/score`, read straight from the body's bytes.
//!
//! A well-formed request with `features` is parsed in one pass into the model's row,
//! without building a JSON tree (which cost a third of a request's CPU). Anything
//! unusual (a missing or null feature the model needs, a wrong type, a duplicate key,
//! `activity`, `explain`, a bad `customer_id` or `as_of` (unparseable, or in the future), malformed JSON) makes [`prepare`] return
//! `None`, and the route falls back to the tree walk that names the offending field.
//! So the fast path never decides an error; a property test checks that whenever it
//! answers, it answers exactly what the tree walk does.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

use super::routes::{future_as_of, valid_customer_id};
use crate::features::Transform;
use crate::scoring::Scorer;
use crate::time::{parse_ts, Ts};

/// What the fast path read: the pieces of a validated score request.
#[derive(Debug, Clone, PartialEq)]
pub struct FastRequest {
    /// The customer scored.
    pub customer_id: String,
    /// `as_of`, or `now` when absent or null.
    pub as_of: Ts,
    /// The model's row, in feature order (NaN where a feature may be missing).
    pub row: Vec<f64>,
    /// Unknown fields, sorted: top-level ones, then `features.<name>` ones.
    pub ignored: Vec<String>,
}

/// Reads a single-customer request with `features`; `None` when the request needs the
/// careful path (see the module doc).
pub fn prepare(scorer: &Scorer, body: &[u8], now: Ts) -> Option<FastRequest> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = BodySeed { scorer }.deserialize(&mut de).ok()?;
    de.end().ok()?;
    let Parsed {
        customer_id,
        as_of,
        row,
        mut ignored,
        mut ignored_features,
    } = parsed;
    let customer_id = customer_id?;
    if !valid_customer_id(&customer_id) {
        return None;
    }
    let as_of = match as_of {
        Some(s) => parse_ts(&s)?,
        None => now,
    };
    if future_as_of(as_of, now).is_some() {
        return None;
    }
    let row = row?;
    let defs = scorer.artifact.spec.defs();
    if defs
        .iter()
        .zip(&row)
        .any(|(d, x)| x.is_none() && !d.may_be_missing)
    {
        return None;
    }
    ignored.sort_unstable();
    ignored.dedup();
    ignored_features.sort_unstable();
    ignored_features.dedup();
    ignored.extend(
        ignored_features
            .into_iter()
            .map(|k| format!("features.{k}")),
    );
    Some(FastRequest {
        customer_id,
        as_of,
        row: row.into_iter().map(|x| x.unwrap_or(f64::NAN)).collect(),
        ignored,
    })
}

/// A key or string value, borrowed from the body when it has no escapes.
struct Str<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

struct Parsed {
    customer_id: Option<String>,
    /// `Some` only for a string; a null `as_of` is `None`, like an absent one.
    as_of: Option<String>,
    /// `None` until `features` is read; then one slot per feature, `None` = absent/null.
    row: Option<Vec<Option<f64>>>,
    ignored: Vec<String>,
    ignored_features: Vec<String>,
}

struct BodySeed<'s> {
    scorer: &'s Scorer,
}

/// Refusals inside the fast path carry no message: the careful path writes it.
fn refuse<E: de::Error>() -> E {
    E::custom("needs the careful path")
}

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = Parsed;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Parsed, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = Parsed;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a score request object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Parsed, A::Error> {
        let mut p = Parsed {
            customer_id: None,
            as_of: None,
            row: None,
            ignored: Vec::new(),
            ignored_features: Vec::new(),
        };
        let mut seen_as_of = false;
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            match key.as_ref() {
                "customer_id" => {
                    if p.customer_id.is_some() {
                        return Err(refuse());
                    }
                    p.customer_id = Some(map.next_value::<Str<'de>>()?.0.into_owned());
                }
                "as_of" => {
                    if std::mem::replace(&mut seen_as_of, true) {
                        return Err(refuse());
                    }
                    p.as_of = map
                        .next_value::<Option<Str<'de>>>()?
                        .map(|s| s.0.into_owned());
                }
                "features" => {
                    if p.row.is_some() {
                        return Err(refuse());
                    }
                    let n = self.scorer.artifact.spec.defs().len();
                    let seed = FeaturesSeed {
                        scorer: self.scorer,
                        row: vec![None; n],
                        seen: vec![false; n],
                        ignored: &mut p.ignored_features,
                    };
                    p.row = Some(map.next_value_seed(seed)?);
                }
                // `explain` takes the careful path: the default needs no fast one.
                "explain" => return Err(refuse()),
                // A non-null `activity` takes the careful path (and is slower anyway).
                "activity" => {
                    if map.next_value::<Option<Ignored>>()?.is_some() {
                        return Err(refuse());
                    }
                }
                _ => {
                    map.next_value::<Ignored>()?;
                    p.ignored.push(key.into_owned());
                }
            }
        }
        Ok(p)
    }
}

struct FeaturesSeed<'s, 'i> {
    scorer: &'s Scorer,
    row: Vec<Option<f64>>,
    seen: Vec<bool>,
    ignored: &'i mut Vec<String>,
}

impl<'de> DeserializeSeed<'de> for FeaturesSeed<'_, '_> {
    type Value = Vec<Option<f64>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FeaturesSeed<'_, '_> {
    type Value = Vec<Option<f64>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a features object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let defs = self.scorer.artifact.spec.defs();
        // Clients usually send features in the model's order: try the next one first.
        let mut next = 0;
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            let position = match defs.get(next) {
                Some(d) if d.name == key.as_ref() => Some(next),
                _ => self.scorer.feature_position(&key),
            };
            let Some(i) = position else {
                map.next_value::<Ignored>()?;
                self.ignored.push(key.into_owned());
                continue;
            };
            if std::mem::replace(&mut self.seen[i], true) {
                return Err(refuse());
            }
            next = i + 1;
            self.row[i] = match map.next_value::<Scalar>()? {
                Scalar::Null => None,
                Scalar::Bool(b) if defs[i].transform == Transform::Binary => {
                    Some(f64::from(u8::from(b)))
                }
                Scalar::Number(x) if crate::scoring::acceptable_feature_value(x) => Some(x),
                _ => return Err(refuse()),
            };
        }
        Ok(self.row)
    }
}

/// A value the request does not use, parsed as strictly as the careful path's JSON
/// tree parses it (`serde::de::IgnoredAny` would let `1e999` through, which the tree
/// refuses as out of range).
struct Ignored;

impl<'de> de::Deserialize<'de> for Ignored {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(|_| Ignored)
    }
}

/// A feature value as JSON gives it; strings, arrays and objects are refused.
enum Scalar {
    Null,
    Bool(bool),
    Number(f64),
}

impl<'de> de::Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("null, a boolean or a number")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(v))
            }
            // The same conversions as `serde_json::Number::as_f64`.
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Number(v))
            }
        }
        d.deserialize_any(V)
    }
}
