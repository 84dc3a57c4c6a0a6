//! Reading a document's text into a JSON tree, for JSON and YAML alike.
//!
//! Builds the same `serde_json::Value` that `serde_json::from_str` or
//! `serde_yaml_ng::from_str` would, and also reports what those silently accept or
//! leave unplaced: a key given twice in one map (they keep the last value), a number
//! that is not finite (YAML's `.inf`, `.nan`; they become null), and the field the
//! parser was reading when it stopped.

use std::cell::RefCell;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::{Problem, SpecFormat, validate::join};

/// The document as a JSON tree with the problems found while reading it, or the one
/// problem that stopped the parser.
pub(crate) fn document(text: &str, format: SpecFormat) -> Result<(Value, Vec<Problem>), Problem> {
    // Editors on Windows may start a UTF-8 file with a byte-order mark; neither parser
    // accepts one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let state = State::default();
    let root = Node {
        state: &state,
        path: String::new(),
    };
    let read = match format {
        SpecFormat::Json => {
            let mut de = serde_json::Deserializer::from_str(text);
            root.deserialize(&mut de)
                .and_then(|value| de.end().map(|()| value))
                .map_err(|e| format!("not valid JSON: {e}"))
        }
        SpecFormat::Yaml => root
            .deserialize(serde_yaml_ng::Deserializer::from_str(text))
            .map_err(|e| format!("not valid YAML: {e}")),
    };
    match read {
        Ok(value) => Ok((value, state.problems.into_inner())),
        Err(message) => {
            let path = state.failed_at.into_inner().unwrap_or_default();
            // serde_yaml_ng starts its messages with the same path.
            let message = match message.split_once(": ") {
                Some((syntax, rest)) if !path.is_empty() => {
                    let rest = rest.strip_prefix(&format!("{path}: ")).unwrap_or(rest);
                    format!("{syntax}: {rest}")
                }
                _ => message,
            };
            Err(Problem::new(path, message))
        }
    }
}

#[derive(Default)]
struct State {
    problems: RefCell<Vec<Problem>>,
    /// The innermost value being read when the parser failed.
    failed_at: RefCell<Option<String>>,
}

/// The value at `path` (dotted, as validation problems write it).
struct Node<'s> {
    state: &'s State,
    path: String,
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        let read = deserializer.deserialize_any(NodeVisitor(&self));
        if read.is_err() {
            // Errors pass outward through every enclosing node; the first to see one is
            // the innermost.
            let mut failed_at = self.state.failed_at.borrow_mut();
            if failed_at.is_none() {
                *failed_at = Some(self.path);
            }
        }
        read
    }
}

struct NodeVisitor<'n, 's>(&'n Node<'s>);

impl NodeVisitor<'_, '_> {
    fn child(&self, path: String) -> Node<'_> {
        Node {
            state: self.0.state,
            path,
        }
    }
}

// The same mapping onto `Value` as serde_json's own visitor.
impl<'de> Visitor<'de> for NodeVisitor<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        serde::Deserialize::deserialize(de::value::I128Deserializer::<E>::new(v)).map(Value::Number)
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        serde::Deserialize::deserialize(de::value::U128Deserializer::<E>::new(v)).map(Value::Number)
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        match Number::from_f64(v) {
            Some(n) => Ok(Value::Number(n)),
            None => {
                // serde_json's visitor turns these into null, which validation would
                // then call a null; say what it was.
                self.0.state.problems.borrow_mut().push(Problem::new(
                    self.0.path.clone(),
                    format!("must be a finite number, found {v}"),
                ));
                Ok(Value::Null)
            }
        }
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.child(self.0.path.clone()).deserialize(deserializer)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) =
            seq.next_element_seed(self.child(format!("{}[{}]", self.0.path, items.len())))?
        {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some(key) = access.next_key_seed(Key)? {
            let path = join(&self.0.path, &key);
            let value = access.next_value_seed(self.child(path))?;
            if map.contains_key(&key) {
                self.0.state.problems.borrow_mut().push(Problem::new(
                    join(&self.0.path, &key),
                    format!(
                        "duplicate key: `{key}` is given more than once here, and only one value can count"
                    ),
                ));
            }
            map.insert(key, value);
        }
        Ok(Value::Object(map))
    }
}

/// A map key, read as serde_json reads keys (YAML's `1:` and `true:` become strings).
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for Key {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a string key")
    }

    fn visit_str<E>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
}
